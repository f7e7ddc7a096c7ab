"""Restoring a backup into a path or a database server from the command line, and the copies restores keep."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from backstop.cli import output
from backstop.cli.group import Context, database_argument, json_option, main, vault_or_replica
from backstop.cli.output import BarProgress, fail, failures, human_bytes, print_json
from backstop.errors import BackstopError
from backstop.names import parse_backup_id

if TYPE_CHECKING:
    from backstop.services.restore import RestorePlan
    from backstop.services.server_restore import ServerRestorePlan


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

    with failures():
        service = RestoreService(obj.config, obj.store(), progress=BarProgress(not as_json))
        if backup_id != "latest":
            parse_backup_id(backup_id, database)
        outcome = service.restore(database, backup_id, Path(target), dry_run=dry_run, confirm=confirm)
        if dry_run:
            _print_plan(outcome.plan)
        if as_json:
            print_json(
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
            output.out.print(f"Restored {outcome.plan.manifest.backup_id} into {outcome.plan.target}; validated.")
            if outcome.plan.pre_restore:
                output.out.print(f"The previous version is kept at {outcome.plan.pre_restore}.")
            _print_pruning(outcome.pruned, outcome.warnings)
        elif not dry_run:
            fail("Restore cancelled; the target was not touched.")


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

    with failures():
        if backup_id != "latest":
            parse_backup_id(backup_id, database)
        service = ServerRestoreService(obj.config, obj.store(), progress=BarProgress(not as_json))
        outcome = service.restore(database, backup_id, url, dry_run=dry_run, confirm=confirm)
        if dry_run:
            _print_server_plan(outcome.plan)
        if as_json:
            print_json(
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
            output.out.print(
                f"Restored {outcome.plan.manifest.backup_id} into {outcome.plan.target.display}; validated."
            )
            if outcome.pre_restore:
                output.out.print(f"The previous database is kept as {outcome.pre_restore}.")
            _print_pruning(outcome.pruned, outcome.warnings)
        elif not dry_run:
            fail("Restore cancelled; the target was not touched.")


def _print_pruning(pruned: tuple[str, ...], warnings: tuple[str, ...]) -> None:
    """What restore.keep_pre_restore removed after the restore, and any warning."""
    for name in pruned:
        output.out.print(f"Pruned the older pre-restore copy {escape(name)} (restore.keep_pre_restore).")
    for warning in warnings:
        output.err.print(f"warning: {escape(warning)}")


def _print_server_plan(plan: ServerRestorePlan) -> None:
    m = plan.manifest
    output.err.print(
        f"Restore plan: {m.backup_id} ({m.type}, {m.scheduled_for.isoformat()}, {human_bytes(m.object.size)}, "
        f"sha256 {m.object.sha256[:16]}..., verified) -> {plan.target.display} via the fresh database {plan.fresh}"
    )
    if plan.target_exists:
        output.err.print(f"  current database kept as {plan.pre_restore}")
        if plan.sessions:
            output.err.print(f"  {plan.sessions} other session(s) on {plan.target.dbname} will be disconnected")
        for name, stat in m.tables.items():
            now = (plan.current or {}).get(name, "absent")
            output.err.print(f"  {name}: {now} rows now, {stat.rows} in the backup")
    else:
        output.err.print("  target database does not exist yet")
    for note in plan.notes:
        output.err.print(f"  {escape(note)}")


def _print_plan(plan: RestorePlan) -> None:
    m = plan.manifest
    output.err.print(
        f"Restore plan: {m.backup_id} ({m.type}, {m.scheduled_for.isoformat()}, {human_bytes(m.object.size)}, "
        f"sha256 {m.object.sha256[:16]}..., verified) -> {plan.target}"
    )
    if plan.target_exists:
        output.err.print(f"  current target kept as {plan.pre_restore}")
        for name, stat in m.tables.items():
            now = (plan.current or {}).get(name, "absent")
            output.err.print(f"  {name}: {now} rows now, {stat.rows} in the backup")
    else:
        output.err.print("  target does not exist yet")


def list_pre_restore(obj: Context, database: str, as_json: bool) -> None:
    """The pre-restore copies of DATABASE's declared targets, oldest first, and whether each one's restore completed."""
    from rich.table import Table

    from backstop.config.targets import target_for
    from backstop.services.pre_restore import target_copies

    with failures():
        db = obj.config.database(database)
        work_dir = obj.config.work_dir
        copies = [(t, c) for t in sorted(db.restore_targets) for c in target_copies(target_for(db, t), work_dir)]
        if as_json:
            print_json(
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
            output.out.print(f"No pre-restore copies beside the restore targets of {database}.")
            return
        table = Table("target", "copy", "taken at", "restore")
        for t, c in copies:
            state = "completed" if c.completed else "not completed (running or failed: never pruned)"
            table.add_row(t, escape(c.name), c.taken_at.isoformat()[:19], state)
        output.out.print(table)
