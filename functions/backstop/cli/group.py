"""The `backstop` click group: global options, the per-run Context, the vault/replica guards, shared arguments."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from backstop.cli.output import failures
from backstop.config import Config, Replica, load_config, resolve_config_path
from backstop.errors import BackstopError, ConfigError, ReadOnlyReplicaError
from backstop.names import check_database_name

F = TypeVar("F", bound=Callable[..., Any])

RESTORE_WORKFLOW = frozenset({"restore-request", "approve", "reject"})
"""Commands that drive the deployed restore workflow, which restores from the vault only."""


class Context:
    """What every command needs, built lazily so `--help` and bad arguments never touch AWS."""

    def __init__(self, config_path: Path | None, bucket: str | None = None) -> None:
        self._config_path = config_path
        self._config: Config | None = None
        self._bucket = bucket

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(resolve_config_path(self._config_path))
        return self._config

    def replica(self) -> Replica | None:
        """The replica ``--bucket`` names, or None for the vault; ConfigError for any other bucket.

        Without ``--bucket`` the configuration is not read here (the restore workflow's commands need none).
        """
        if self._bucket is None:
            return None
        vault, replica = self.config.bucket, self.config.storage.replica
        if self._bucket == vault:
            return None
        if replica is not None and self._bucket == replica.bucket:
            return replica
        if replica is None:
            raise ConfigError(
                f"s3://{self._bucket} is not the vault (s3://{vault}) and backstop.yaml configures no replica "
                "(storage.replica)."
            )
        raise ConfigError(
            f"s3://{self._bucket} is neither the vault (s3://{vault}) nor its replica (s3://{replica.bucket}) in "
            "backstop.yaml."
        )

    def refuse_replica(self, command: str) -> None:
        """ReadOnlyReplicaError when ``--bucket`` names the replica: ``command`` writes to the vault or works on it."""
        replica = self.replica()
        if replica is None:
            return
        where = f"s3://{replica.bucket} is the replica of s3://{self.config.bucket}"
        if command in RESTORE_WORKFLOW:
            raise ReadOnlyReplicaError(
                f"{where}: the restore workflow restores from the vault only; restore from the replica with "
                f"`backstop --bucket {replica.bucket} restore`."
            )
        raise ReadOnlyReplicaError(f"{where}: it is read-only; run `backstop {command}` against the vault.")

    def store(self) -> Any:
        """The store ``--bucket`` names: the vault's (the default), or its replica's, read in the replica's region."""
        from backstop.bootstrap import build_replica_store, build_store

        if self.replica() is not None:
            return build_replica_store(self.config)
        return build_store(self.config)

    def notifier(self) -> Any:
        from backstop.bootstrap import build_notifier

        return build_notifier(self.config)


def check_database(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_database_name(value)
    except BackstopError as exc:
        raise click.BadParameter(str(exc)) from None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the package and the client tools it would run (the image's, when run there)."""
    if not value:
        return
    import platform

    import backstop
    from backstop.engines.tools import version_report

    click.echo(version_report(backstop.__version__, platform.python_version()))
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="backstop.yaml to use (default: $BACKSTOP_CONFIG, else ./backstop.yaml).",
)
@click.option(
    "--bucket",
    metavar="NAME",
    help="Read this bucket: the vault (bucket:, the default) or its replica (storage.replica.bucket), for when the "
    "vault's region or account is lost; commands that write refuse the replica.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens to stderr.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the database client tools on PATH (pg_dump, mariadb-dump ...) with theirs, and exit.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, bucket: str | None, verbose: bool) -> None:
    """Backstop: verified backups of SQLite databases and directories into S3, and safe restores."""
    # Without -v the command speaks for itself (one sentence on failure); -v shows what happens underneath.
    logging.basicConfig(level=logging.INFO if verbose else logging.CRITICAL, format="%(levelname)s %(message)s")
    ctx.obj = Context(config_path, bucket.removeprefix("s3://").rstrip("/") if bucket else None)


def _invoked() -> tuple[Context, str]:
    """The Context ``main`` made, and the name of the command being run."""
    ctx = click.get_current_context()
    obj = ctx.find_object(Context)
    assert obj is not None and ctx.info_name is not None  # main always runs first and click names every command
    return obj, ctx.info_name


def vault_only(command: F) -> F:
    """Run ``command`` only against the vault: on the replica it is refused in one sentence before anything runs."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        obj, name = _invoked()
        with failures():
            obj.refuse_replica(name)
        return command(*args, **kwargs)

    return cast(F, guarded)


def vault_or_replica(command: F) -> F:
    """Run ``command`` against the vault or its replica: ``--bucket`` naming any other bucket is refused first."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        obj, _ = _invoked()
        with failures():
            obj.replica()
        return command(*args, **kwargs)

    return cast(F, checked)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
database_argument = click.argument("database", callback=check_database)
