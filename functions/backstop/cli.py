"""The `backstop` command: manual backups, listing, verification, download and local restores.

Every command exits 0 on success and 1 with one sentence on stderr on failure; ``--json`` prints
machine-readable output on stdout. Progress bars go to stderr, only on a terminal. ``--bucket``
points the reading commands at the vault's replica; the commands that write refuse it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console
from rich.markup import escape

from backstop.config import Config, Replica, load_config, resolve_config_path
from backstop.errors import BackstopError, ConfigError, ReadOnlyReplicaError, RestoreError
from backstop.manifest import Manifest, Trigger
from backstop.names import check_database_name, parse_backup_id

if TYPE_CHECKING:
    from rich.progress import Progress

    from backstop.services.restore import RestorePlan
    from backstop.services.server_restore import ServerRestorePlan

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class BarProgress:
    """A rich progress bar on stderr, shown only when stderr is a terminal and output is not JSON."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled and err.is_terminal
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        if not self._enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.finish()
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


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


@contextmanager
def _failures() -> Iterator[None]:
    """Turn every expected failure into one sentence and exit status 1."""
    try:
        yield
    except BackstopError as exc:
        _fail(str(exc))
    except NoCredentialsError:
        _fail("No AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        _fail(f"AWS refused the request ({code}): {exc.response.get('Error', {}).get('Message', '')}".rstrip() + ".")
    except BotoCoreError as exc:
        _fail(f"AWS could not be reached: {exc}.")
    except OSError as exc:  # the local disk: a missing work_dir, a full disk, a permission
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(f"A local file operation failed: {exc.strerror or exc}{where}.")


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(1)


def _database(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_database_name(value)
    except BackstopError as exc:
        raise click.BadParameter(str(exc)) from None


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _manifest_json(manifest: Manifest) -> dict[str, Any]:
    return manifest.model_dump(mode="json")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


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
        with _failures():
            obj.refuse_replica(name)
        return command(*args, **kwargs)

    return cast(F, guarded)


def vault_or_replica(command: F) -> F:
    """Run ``command`` against the vault or its replica: ``--bucket`` naming any other bucket is refused first."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        obj, _ = _invoked()
        with _failures():
            obj.replica()
        return command(*args, **kwargs)

    return cast(F, checked)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
database_argument = click.argument("database", callback=_database)


@main.command()
@vault_only
@database_argument
@click.option("--type", "backup_type", type=click.Choice(["manual", "scheduled"]), default="manual", show_default=True)
@click.option(
    "--at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"]),
    help="Scheduled time (UTC) the backup stands for; a repeated run for the same time returns the same backup.",
)
@json_option
@click.pass_obj
def backup(obj: Context, database: str, backup_type: str, at: datetime | None, as_json: bool) -> None:
    """Take a backup of DATABASE now and print its id."""
    from backstop.services.backup import BackupRequest, BackupService

    with _failures():
        user = _user()
        service = BackupService(obj.config, obj.store(), notifier=obj.notifier(), progress=BarProgress(not as_json))
        when = at.replace(tzinfo=UTC) if at else datetime.now(UTC)
        outcome = service.run(
            BackupRequest(
                database=database,
                at=when,
                type="scheduled" if backup_type == "scheduled" else "manual",
                trigger=Trigger(kind="schedule" if backup_type == "scheduled" else "user", by=user),
            )
        )
        if as_json:
            _print_json(_manifest_json(outcome.manifest))
            return
        click.echo(outcome.manifest.backup_id)
        if not outcome.created:
            err.print(f"{outcome.manifest.backup_id} already existed; nothing new was written.")


@main.command(name="list")
@vault_or_replica
@database_argument
@click.option(
    "--pre-restore",
    "pre_restore",
    is_flag=True,
    help="List instead the pre-restore copies kept beside each declared restore target (connects to servers).",
)
@json_option
@click.pass_obj
def list_backups(obj: Context, database: str, pre_restore: bool, as_json: bool) -> None:
    """List the committed backups of DATABASE, oldest first (--pre-restore: the copies restores kept)."""
    from rich.table import Table

    from backstop.services.catalog import CatalogService

    if pre_restore:
        _list_pre_restore(obj, database, as_json)
        return
    with _failures():
        store = obj.store()
        manifests = CatalogService(obj.config, store).backups(database)
        drilled = store.sidecar_times(database, "drill")  # one listing; the records of drilled backups only
        drills = {backup_id: store.get_sidecar(backup_id, "drill") for backup_id in drilled}
        if as_json:
            _print_json([{**_manifest_json(m), "drill": drills.get(m.backup_id)} for m in manifests])
            return
        if not manifests:
            out.print(f"No backups of {database} yet.")
            return
        table = Table("backup id", "type", "tier", "stored", "raw", "check", "drill", "sha256")
        for m in manifests:
            table.add_row(
                m.backup_id,
                m.type,
                m.retention_tier,
                _human_bytes(m.object.size),
                _human_bytes(m.raw.size),
                "ok" if m.integrity.passed else "FAILED",
                _drill_word(drills.get(m.backup_id)),
                m.object.sha256[:12],
            )
        out.print(table)


def _list_pre_restore(obj: Context, database: str, as_json: bool) -> None:
    """The pre-restore copies of DATABASE's declared targets, oldest first, and whether each one's restore completed."""
    from rich.table import Table

    from backstop.config.targets import target_for
    from backstop.services.pre_restore import target_copies

    with _failures():
        db = obj.config.database(database)
        work_dir = obj.config.work_dir
        copies = [(t, c) for t in sorted(db.restore_targets) for c in target_copies(target_for(db, t), work_dir)]
        if as_json:
            _print_json(
                [
                    {
                        "target": t,
                        "copy": c.name,
                        "taken_at": c.taken_at.isoformat(),
                        "kind": c.kind,
                        "completed": c.completed,
                    }
                    for t, c in copies
                ]
            )
            return
        if not copies:
            out.print(f"No pre-restore copies beside the restore targets of {database}.")
            return
        table = Table("target", "copy", "taken at", "restore")
        for t, c in copies:
            state = "completed" if c.completed else "not completed (running or failed: never pruned)"
            table.add_row(t, escape(c.name), c.taken_at.isoformat()[:19], state)
        out.print(table)


def _drill_word(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    return f"{'passed' if record.get('passed') else 'FAILED'} {str(record.get('started_at', ''))[:10]}"


@main.command()
@vault_or_replica
@database_argument
@click.argument("backup_id")
@json_option
@click.pass_obj
def show(obj: Context, database: str, backup_id: str, as_json: bool) -> None:
    """Show the manifest of BACKUP_ID (or `latest`)."""
    from backstop.services.catalog import CatalogService

    with _failures():
        store = obj.store()
        manifest = CatalogService(obj.config, store).show(database, backup_id)
        drill = store.get_sidecar(manifest.backup_id, "drill")
        if as_json:
            _print_json({**_manifest_json(manifest), "drill": drill})
            return
        _print_manifest(manifest, drill)


def _print_manifest(m: Manifest, drill: dict[str, Any] | None = None) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("backup id", m.backup_id),
        ("database", f"{m.database} ({m.engine})"),
        ("type", f"{m.type} by {m.trigger.by}"),
        ("scheduled for", m.scheduled_for.isoformat()),
        ("took", str(m.finished_at - m.started_at)),
        ("object", f"s3://{m.object.bucket}/{m.object.key}"),
        ("version", str(m.object.version_id)),
        ("stored", f"{_human_bytes(m.object.size)} ({m.object.size} bytes, {m.object.parts} parts)"),
        ("raw", f"{_human_bytes(m.raw.size)} ({m.raw.size} bytes)"),
        ("compression", f"{m.compression.algorithm} level {m.compression.level}"),
        ("sha256", m.object.sha256),
        ("encryption", f"{m.object.encryption or 'bucket default'} {m.object.kms_key_id or ''}"),
        ("integrity", f"{m.integrity.check}: {m.integrity.detail}"),
        ("tier", m.retention_tier),
        ("schema version", m.schema_version or "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for name, stat in m.tables.items():
        table.add_row(f"table {name}", f"{stat.rows} rows")
    for warning in m.warnings:
        table.add_row("warning", warning)
    if drill is None:
        table.add_row("drill", "never drilled")
    else:
        rto = drill.get("rto_seconds")
        timing = f"{drill.get('seconds')} s" + (f" (RTO {rto} s)" if rto else "")
        table.add_row("drill", f"{_drill_word(drill)}, {timing}: {drill.get('detail')}")
    out.print(table)


@main.command()
@vault_only
@database_argument
@click.option("--backup", "backup_id", help="Drill this backup instead of the one the drill configuration picks.")
@json_option
@click.pass_obj
def drill(obj: Context, database: str, backup_id: str | None, as_json: bool) -> None:
    """Restore a backup of DATABASE into scratch space, validate it, clean up: exit 1 if the drill fails."""
    import os

    from backstop.bootstrap import restore_ledger
    from backstop.services.drill import DrillService

    with _failures():
        table_name = os.environ.get("BACKSTOP_RESTORE_TABLE")
        table = restore_ledger(table_name) if table_name else None
        result = DrillService(obj.config, obj.store(), obj.notifier(), table=table).run(database, backup_id)
        if as_json:
            _print_json(result.record())
        else:
            word = "[green]passed[/]" if result.passed else "[bold red]FAILED[/]"
            rto = f" (RTO {result.rto_seconds:.0f} s)" if result.rto_seconds else ""
            out.print(f"Drill of {result.backup_id}: {word} in {result.seconds:.1f} s{rto}: {escape(result.detail)}")
        if not result.passed:
            sys.exit(1)


@main.command()
@vault_only
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="Bytes to re-read in this run (default: the configured sweep budget).",
)
@json_option
@click.pass_obj
def sweep(obj: Context, budget: int | None, as_json: bool) -> None:
    """Re-read stored backups, least recently verified first, within a byte budget: exit 1 on any finding."""
    from backstop.services.sweep import SweepService

    with _failures():
        report = SweepService(obj.config, obj.store(), obj.notifier()).run(budget)
        found = [*report.corrupt, *report.unreadable, *report.overwritten]
        if as_json:
            _print_json(report.to_dict())
        else:
            total = report.tally()
            out.print(
                f"Swept {total.checked} backups ({_human_bytes(total.bytes_read)} of a {_human_bytes(report.budget)} "
                f"budget): {total.passed} intact, {total.corrupt} corrupt, {total.unreadable} unreadable, "
                f"{total.overwritten} overwritten; {report.covered} of {report.committed} backups verified at least "
                "once."
            )
            for swept in report.swept:
                if swept.verdict in ("corrupt", "unreadable", "overwritten"):
                    out.print(f"  [bold red]{swept.verdict}[/] {swept.backup_id}: {escape(str(swept.reason))}")
        if found:
            sys.exit(1)


@main.command()
@vault_or_replica
@click.argument("database", required=False, callback=_database)
@json_option
@click.pass_obj
def stats(obj: Context, database: str | None, as_json: bool) -> None:
    """Count, total size, oldest, newest and failed runs per database."""
    from rich.table import Table

    from backstop.services.catalog import CatalogService

    with _failures():
        rows = CatalogService(obj.config, obj.store()).stats(database)
        if as_json:
            _print_json([r.__dict__ for r in rows])
            return
        table = Table("database", "backups", "total", "oldest", "newest", "failed")
        for r in rows:
            table.add_row(
                r.database,
                str(r.count),
                _human_bytes(r.total_bytes),
                str(r.oldest or "-"),
                str(r.newest or "-"),
                str(r.failed),
            )
        out.print(table)


@main.command()
@vault_or_replica
@database_argument
@click.argument("backup_id", default="latest")
@json_option
@click.pass_obj
def verify(obj: Context, database: str, backup_id: str, as_json: bool) -> None:
    """Re-read BACKUP_ID (default latest) and check size, SHA-256, manifest, decompression and the engine check."""
    from backstop.services.verify import VerifyService

    with _failures():
        report = VerifyService(obj.config, obj.store(), progress=BarProgress(not as_json)).verify(database, backup_id)
        if as_json:
            _print_json({"backup_id": report.manifest.backup_id, "ok": True, "checks": dict(report.checks)})
            return
        for name, detail in report.checks:
            out.print(f"[green]ok[/] {name}: {detail}")
        out.print(f"{report.manifest.backup_id} verified.")


@main.command()
@vault_only
@database_argument
@click.argument("backup_id")
@json_option
@click.pass_obj
def repair(obj: Context, database: str, backup_id: str, as_json: bool) -> None:
    """Make BACKUP_ID's pinned versions current again where its keys were overwritten (administrators only).

    Checks the pinned bytes first, copies each intruding version to <prefix>/_quarantine/, deletes the
    intruding versions and delete markers, and puts back the tier tags; says so when there is nothing to do.
    """
    from backstop.services.repair import RepairService

    with _failures():
        obj.config.database(database)
        report = RepairService(obj.store()).repair(database, backup_id)
        if as_json:
            _print_json(report.to_dict())
            return
        out.print(escape(report.sentence()))


@main.command()
@vault_or_replica
@database_argument
@click.argument("backup_id")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option(
    "--decompress", is_flag=True, help="Write the decompressed, checked artifact instead of the stored bytes."
)
@click.pass_obj
def download(obj: Context, database: str, backup_id: str, out_path: Path, decompress: bool) -> None:
    """Download BACKUP_ID to --out, checked against its manifest."""
    from backstop.services.download import download as run_download

    with _failures():
        manifest = run_download(
            obj.store(), database, backup_id, out_path, decompress=decompress, progress=BarProgress(True)
        )
        err.print(f"{manifest.backup_id} written to {out_path} (checked against its manifest).")


@main.command()
@vault_or_replica
@database_argument
@click.argument("backup_id", default="latest")
@click.option(
    "--to",
    "target",
    required=True,
    help="Path to restore into, or postgresql:// or mysql://[user@]host[:port]/dbname (never with a password).",
)
@click.option("--dry-run", is_flag=True, help="Verify the backup and show the plan; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def restore(obj: Context, database: str, backup_id: str, target: str, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Restore BACKUP_ID (default latest) of DATABASE into the path or database URL --to, atomically."""
    from backstop.services.restore import RestoreService
    from backstop.services.server_restore import is_server_url

    if is_server_url(target):
        _restore_into_server(obj, database, backup_id, target, dry_run=dry_run, yes=yes, as_json=as_json)
        return

    def confirm(plan: RestorePlan) -> bool:
        _print_plan(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise BackstopError("Refusing to restore without confirmation: pass --yes when not at a terminal.")
        return click.confirm(f"Replace {plan.target} with {plan.manifest.backup_id}?", default=False, err=True)

    with _failures():
        service = RestoreService(obj.config, obj.store(), progress=BarProgress(not as_json))
        if backup_id != "latest":
            parse_backup_id(backup_id, database)
        outcome = service.restore(database, backup_id, Path(target), dry_run=dry_run, confirm=confirm)
        if dry_run:
            _print_plan(outcome.plan)
        if as_json:
            _print_json(
                {
                    "backup_id": outcome.plan.manifest.backup_id,
                    "target": str(outcome.plan.target),
                    "restored": outcome.restored,
                    "pre_restore": str(outcome.plan.pre_restore) if outcome.restored else None,
                    "pruned": list(outcome.pruned),
                    "warnings": list(outcome.warnings),
                    "dry_run": dry_run,
                }
            )
        elif outcome.restored:
            out.print(f"Restored {outcome.plan.manifest.backup_id} into {outcome.plan.target}; validated.")
            if outcome.plan.pre_restore:
                out.print(f"The previous version is kept at {outcome.plan.pre_restore}.")
            _print_pruning(outcome.pruned, outcome.warnings)
        elif not dry_run:
            _fail("Restore cancelled; the target was not touched.")


def _restore_into_server(
    obj: Context, database: str, backup_id: str, url: str, *, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """`restore --to postgresql://... | mysql://...`: a fresh database, validated, then swapped in by renames."""
    from backstop.services.server_restore import ServerRestoreService

    def confirm(plan: ServerRestorePlan) -> bool:
        _print_server_plan(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise BackstopError("Refusing to restore without confirmation: pass --yes when not at a terminal.")
        return click.confirm(f"Replace {plan.target.display} with {plan.manifest.backup_id}?", default=False, err=True)

    with _failures():
        if backup_id != "latest":
            parse_backup_id(backup_id, database)
        service = ServerRestoreService(obj.config, obj.store(), progress=BarProgress(not as_json))
        outcome = service.restore(database, backup_id, url, dry_run=dry_run, confirm=confirm)
        if dry_run:
            _print_server_plan(outcome.plan)
        if as_json:
            _print_json(
                {
                    "backup_id": outcome.plan.manifest.backup_id,
                    "target": outcome.plan.target.display,
                    "restored": outcome.restored,
                    "pre_restore": outcome.pre_restore,
                    "pruned": list(outcome.pruned),
                    "warnings": list(outcome.warnings),
                    "dry_run": dry_run,
                }
            )
        elif outcome.restored:
            out.print(f"Restored {outcome.plan.manifest.backup_id} into {outcome.plan.target.display}; validated.")
            if outcome.pre_restore:
                out.print(f"The previous database is kept as {outcome.pre_restore}.")
            _print_pruning(outcome.pruned, outcome.warnings)
        elif not dry_run:
            _fail("Restore cancelled; the target was not touched.")


def _print_pruning(pruned: tuple[str, ...], warnings: tuple[str, ...]) -> None:
    """What restore.keep_pre_restore removed after the restore, and any warning."""
    for name in pruned:
        out.print(f"Pruned the older pre-restore copy {escape(name)} (restore.keep_pre_restore).")
    for warning in warnings:
        err.print(f"warning: {escape(warning)}")


def _print_server_plan(plan: ServerRestorePlan) -> None:
    m = plan.manifest
    err.print(
        f"Restore plan: {m.backup_id} ({m.type}, {m.scheduled_for.isoformat()}, {_human_bytes(m.object.size)}, "
        f"sha256 {m.object.sha256[:16]}..., verified) -> {plan.target.display} via the fresh database {plan.fresh}"
    )
    if plan.target_exists:
        err.print(f"  current database kept as {plan.pre_restore}")
        if plan.sessions:
            err.print(f"  {plan.sessions} other session(s) on {plan.target.dbname} will be disconnected")
        for name, stat in m.tables.items():
            now = (plan.current or {}).get(name, "absent")
            err.print(f"  {name}: {now} rows now, {stat.rows} in the backup")
    else:
        err.print("  target database does not exist yet")
    for note in plan.notes:
        err.print(f"  {escape(note)}")


def _print_plan(plan: RestorePlan) -> None:
    m = plan.manifest
    err.print(
        f"Restore plan: {m.backup_id} ({m.type}, {m.scheduled_for.isoformat()}, {_human_bytes(m.object.size)}, "
        f"sha256 {m.object.sha256[:16]}..., verified) -> {plan.target}"
    )
    if plan.target_exists:
        err.print(f"  current target kept as {plan.pre_restore}")
        for name, stat in m.tables.items():
            now = (plan.current or {}).get(name, "absent")
            err.print(f"  {name}: {now} rows now, {stat.rows} in the backup")
    else:
        err.print("  target does not exist yet")


FRESHNESS_TROUBLE = {
    "stale": "stale",
    "missing": "no backup",
    "future-dated": "newest backup dated in the future: a clock is wrong",
    "unknown": "could not be checked",
}
"""What ``backstop freshness`` says of a database per status that needs a look."""


@main.command()
@vault_or_replica
@json_option
@click.pass_obj
def freshness(obj: Context, as_json: bool) -> None:
    """Age of each database's newest backup against its stale_after; exit 1 if any is stale, missing,
    dated in the future or not checkable.

    On the replica (--bucket): against stale_after plus the replica's allowed_lag, and nothing is published to the
    alerts topic, whose alerts would not say they concern the replica.
    """
    from rich.table import Table

    from backstop.ports import NoNotifier
    from backstop.services.catalog import CatalogService

    with _failures():
        replica = obj.replica()
        notifier = obj.notifier() if replica is None else NoNotifier()
        lag = timedelta(0) if replica is None else replica.allowed_lag
        report = CatalogService(obj.config, obj.store(), notifier=notifier).freshness(lag=lag)
        if as_json:
            _print_json(
                [
                    {
                        "database": f.database,
                        "status": f.status,
                        "newest_backup": f.newest_backup,
                        "age_seconds": int(f.age.total_seconds()) if f.age else None,
                        "stale_after_seconds": int(f.stale_after.total_seconds()),
                    }
                    for f in report
                ]
            )
        else:
            table = Table("database", "status", "newest backup", "age", "stale after")
            for f in report:
                colour = "green" if f.status == "fresh" else "red"
                table.add_row(
                    f.database,
                    f"[{colour}]{f.status}[/]",
                    f.newest_backup or "-",
                    str(f.age).split(".")[0] if f.age else "-",
                    str(f.stale_after),
                )
            out.print(table)
        needs_a_look = [f"{f.database} ({FRESHNESS_TROUBLE[f.status]})" for f in report if f.is_stale]
        if needs_a_look:
            _fail(f"Backups need a look: {', '.join(needs_a_look)}.")


# -- the restore workflow ------------------------------------------------------------------------

table_option = click.option(
    "--table",
    envvar="BACKSTOP_RESTORE_TABLE",
    required=True,
    help="The restore table (stack output RestoreTableName; env BACKSTOP_RESTORE_TABLE).",
)
machine_option = click.option(
    "--state-machine",
    "state_machine",
    envvar="BACKSTOP_STATE_MACHINE_ARN",
    required=True,
    help="The restore state machine's ARN (stack output; env BACKSTOP_STATE_MACHINE_ARN).",
)


approval_option = click.option(
    "--approval-function",
    "approval_function",
    envvar="BACKSTOP_APPROVAL_FUNCTION",
    required=True,
    help="The approval function (stack output ApprovalFunctionName; env BACKSTOP_APPROVAL_FUNCTION).",
)


EXECUTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _ask_approval(function: str, request: dict[str, Any]) -> dict[str, Any]:
    """Invoke the approval component; its refusal (class name and sentence) becomes ours."""
    from backstop.bootstrap import approval_component

    return approval_component(function).ask(request)


def _caller() -> str:
    """Who is acting, as AWS knows them (the approver or requester recorded in the audit trail)."""
    from backstop.bootstrap import caller

    return caller()


def _execution_arn(state_machine: str, execution: str) -> str:
    if execution.startswith("arn:"):
        return execution
    return state_machine.replace(":stateMachine:", ":execution:", 1) + f":{execution}"


def _execution_name(execution: str) -> str:
    return execution.rsplit(":", 1)[-1]


@main.command(name="restore-request")
@vault_only
@database_argument
@click.option("--target", required=True, help="A restore target declared for DATABASE in backstop.yaml.")
@click.option("--backup", "backup_ref", default="latest", show_default=True, help="Backup id, or latest.")
@click.option("--before", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%SZ"]), help="Newest backup at or before.")
@click.option("--reason", required=True, help="Why (recorded in the audit trail and sent with the plan).")
@click.option("--dry-run", is_flag=True, help="Validate, lock and plan, then stop without asking for approval.")
@click.option("--name", "name", help="The execution's name (for example an incident id); default: generated.")
@machine_option
@json_option
def restore_request(
    database: str,
    target: str,
    backup_ref: str,
    before: datetime | None,
    reason: str,
    dry_run: bool,
    name: str | None,
    state_machine: str,
    as_json: bool,
) -> None:
    """Start a restore execution of DATABASE into TARGET (as the console would) and print its name."""
    import secrets

    from backstop.bootstrap import executions, identity_proof
    from backstop.services.restore_workflow import parse_input

    with _failures():
        backup: Any = {"before": before.replace(tzinfo=UTC).isoformat()} if before else backup_ref
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = name or f"restore-{database}-{target}-{stamp}-{secrets.token_hex(2)}"[:80]
        if not EXECUTION_NAME.fullmatch(name):
            raise RestoreError(f"{name[:80]!r} is not an execution name: 1 to 80 letters, digits, '-' or '_'.")
        proof = identity_proof("request", _execution_arn(state_machine, name))
        data = {
            "database": database,
            "backup": backup,
            "target": target,
            "dry_run": dry_run,
            "requested_by": _caller(),
            "reason": reason,
            "identity": proof.model_dump(),
        }
        parse_input(data)
        execution_arn = executions().start(state_machine, name, data)
        if as_json:
            shown = {k: v for k, v in data.items() if k != "identity"}
            _print_json({"execution": name, "execution_arn": execution_arn, "input": shown})
            return
        click.echo(name)
        err.print(f"Started; the plan arrives on the alerts topic. Follow it with `backstop restore-status {name}`.")


@main.command(name="restore-status")
@vault_or_replica
@click.argument("execution")
@machine_option
@table_option
@json_option
def restore_status(execution: str, state_machine: str, table: str, as_json: bool) -> None:
    """Where the restore EXECUTION stands: its status, its last step, and its audit record."""
    from backstop.bootstrap import executions, restore_ledger

    with _failures():
        arn = _execution_arn(state_machine, execution)
        described = executions().describe(arn)
        # The whole history, oldest first (a restore's is a few dozen events).
        entered = [e for e in executions().history(arn) if "stateEnteredEventDetails" in e]
        step = entered[-1]["stateEnteredEventDetails"]["name"] if entered else None
        audit = restore_ledger(table).audit(_execution_name(execution)) or {}
        status = {
            "execution": _execution_name(execution),
            "status": described["status"],
            "step": step,
            "error": described.get("error"),
            "outcome": audit.get("outcome"),
            "database": audit.get("database"),
            "target": audit.get("target"),
            "backup_id": audit.get("backup_id"),
            "requested_by": audit.get("requested_by"),
            "requester": _who(audit.get("requester")),
            "approver": audit.get("approver"),
            "plan": audit.get("plan"),
        }
        if as_json:
            _print_json(status)
            return
        for key, value in status.items():
            if value is not None and key != "plan":
                out.print(f"{key:>13}: {escape(str(value))}")
        plan = status["plan"]
        if plan:
            out.print(
                f"{'plan':>13}: {escape(plan['backup_id'])} ({_human_bytes(plan['size'])}, sha256 {plan['sha256']})"
            )
            into = escape(str(plan["target_identity"]))
            out.print(f"{'':>13}  into {into}, safety snapshot {escape(plan['safety_snapshot'])}")
            out.print(f"{'':>13}  confirm with: {escape(plan['confirmation'])}")


def _who(record: Any) -> str | None:
    """A requester or approver record as one line: the verified ARN, or what an unverified one claimed."""
    if not isinstance(record, dict):
        return None
    if record.get("verified"):
        return f"{record.get('arn')} (verified by AWS)"
    return f"{record.get('claimed')!r} (unverified: started without an identity proof)"


@main.command()
@vault_only
@click.argument("execution")
@click.option("--confirm", "phrase", required=True, help='The phrase "RESTORE <backup_id>" from the plan.')
@machine_option
@approval_option
def approve(execution: str, phrase: str, state_machine: str, approval_function: str) -> None:
    """Approve the pending restore EXECUTION with its confirmation phrase, as the AWS identity you are."""
    from backstop.bootstrap import identity_proof

    with _failures():
        arn = _execution_arn(state_machine, execution)
        request = {
            "action": "approve",
            "execution": arn,
            "phrase": phrase,
            "identity": identity_proof("approve", arn).model_dump(),
        }
        grant = _ask_approval(approval_function, request)["approved"]
        out.print(f"Approved: {escape(_execution_name(execution))} restores {escape(grant['backup_id'])} now.")
        for key in ("database", "target", "sha256", "object_version", "approver", "expires_at"):
            out.print(f"{key:>15}: {escape(str(grant[key]))}")


@main.command()
@vault_only
@click.argument("execution")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@machine_option
@approval_option
def reject(execution: str, reason: str, state_machine: str, approval_function: str) -> None:
    """Reject the pending restore EXECUTION; the target is not touched."""
    from backstop.bootstrap import identity_proof

    with _failures():
        arn = _execution_arn(state_machine, execution)
        request = {
            "action": "reject",
            "execution": arn,
            "reason": reason,
            "identity": identity_proof("reject", arn).model_dump(),
        }
        rejected = _ask_approval(approval_function, request)["rejected"]
        out.print(
            f"Rejected by {escape(rejected['by'])}: {escape(_execution_name(execution))}; the target was not touched."
        )


@main.command()
@vault_or_replica
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@table_option
@json_option
def restores(limit: int, table: str, as_json: bool) -> None:
    """The most recent restores from the audit trail, newest first."""
    from rich.table import Table

    from backstop.bootstrap import restore_ledger

    with _failures():
        records = restore_ledger(table).audits(limit)
        if as_json:
            _print_json(records)
            return
        listing = Table("started", "execution", "database", "target", "backup", "requested by", "approver", "outcome")
        for r in records:
            listing.add_row(
                *(
                    escape(str(r.get(k) or "-"))
                    for k in ("started_at", "execution", "database", "target", "backup_id", "requested_by", "approver")
                ),
                escape(str(r.get("outcome") or "-")),
            )
        out.print(listing)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


if __name__ == "__main__":  # pragma: no cover
    main()
