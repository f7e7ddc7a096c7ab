"""Taking, listing, showing, verifying and downloading backups, and their statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from backstop.cli import output
from backstop.cli.group import (
    Context,
    check_database,
    database_argument,
    json_option,
    main,
    vault_only,
    vault_or_replica,
)
from backstop.cli.output import BarProgress, failures, human_bytes, manifest_json, print_json
from backstop.cli.restore import list_pre_restore
from backstop.manifest import Manifest, Trigger


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

    with failures():
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
            print_json(manifest_json(outcome.manifest))
            return
        click.echo(outcome.manifest.backup_id)
        if not outcome.created:
            output.err.print(f"{outcome.manifest.backup_id} already existed; nothing new was written.")


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
        list_pre_restore(obj, database, as_json)
        return
    with failures():
        store = obj.store()
        manifests = CatalogService(obj.config, store).backups(database)
        drilled = store.sidecar_times(database, "drill")  # one listing; the records of drilled backups only
        drills = {backup_id: store.get_sidecar(backup_id, "drill") for backup_id in drilled}
        if as_json:
            print_json([{**manifest_json(m), "drill": drills.get(m.backup_id)} for m in manifests])
            return
        if not manifests:
            output.out.print(f"No backups of {database} yet.")
            return
        table = Table("backup id", "type", "tier", "stored", "raw", "check", "drill", "sha256")
        for m in manifests:
            table.add_row(
                m.backup_id,
                m.type,
                m.retention_tier,
                human_bytes(m.object.size),
                human_bytes(m.raw.size),
                "ok" if m.integrity.passed else "FAILED",
                _drill_word(drills.get(m.backup_id)),
                m.object.sha256[:12],
            )
        output.out.print(table)


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

    with failures():
        store = obj.store()
        manifest = CatalogService(obj.config, store).show(database, backup_id)
        drill = store.get_sidecar(manifest.backup_id, "drill")
        if as_json:
            print_json({**manifest_json(manifest), "drill": drill})
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
        ("stored", f"{human_bytes(m.object.size)} ({m.object.size} bytes, {m.object.parts} parts)"),
        ("raw", f"{human_bytes(m.raw.size)} ({m.raw.size} bytes)"),
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
    output.out.print(table)


@main.command()
@vault_or_replica
@click.argument("database", required=False, callback=check_database)
@json_option
@click.pass_obj
def stats(obj: Context, database: str | None, as_json: bool) -> None:
    """Count, total size, oldest, newest and failed runs per database."""
    from rich.table import Table

    from backstop.services.catalog import CatalogService

    with failures():
        rows = CatalogService(obj.config, obj.store()).stats(database)
        if as_json:
            print_json([r.__dict__ for r in rows])
            return
        table = Table("database", "backups", "total", "oldest", "newest", "failed")
        for r in rows:
            table.add_row(
                r.database,
                str(r.count),
                human_bytes(r.total_bytes),
                str(r.oldest or "-"),
                str(r.newest or "-"),
                str(r.failed),
            )
        output.out.print(table)


@main.command()
@vault_or_replica
@database_argument
@click.argument("backup_id", default="latest")
@json_option
@click.pass_obj
def verify(obj: Context, database: str, backup_id: str, as_json: bool) -> None:
    """Re-read BACKUP_ID (default latest) and check size, SHA-256, manifest, decompression and the engine check."""
    from backstop.services.verify import VerifyService

    with failures():
        report = VerifyService(obj.config, obj.store(), progress=BarProgress(not as_json)).verify(database, backup_id)
        if as_json:
            print_json({"backup_id": report.manifest.backup_id, "ok": True, "checks": dict(report.checks)})
            return
        for name, detail in report.checks:
            output.out.print(f"[green]ok[/] {name}: {detail}")
        output.out.print(f"{report.manifest.backup_id} verified.")


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

    with failures():
        manifest = run_download(
            obj.store(), database, backup_id, out_path, decompress=decompress, progress=BarProgress(True)
        )
        output.err.print(f"{manifest.backup_id} written to {out_path} (checked against its manifest).")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
