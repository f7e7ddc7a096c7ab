"""The vault's health: drills, sweeps, repairs of overwritten backups, and freshness."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from rich.markup import escape

from backstop.cli import output
from backstop.cli.group import Context, database_argument, json_option, main, vault_only, vault_or_replica
from backstop.cli.output import fail, failures, human_bytes, print_json


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

    with failures():
        table_name = os.environ.get("BACKSTOP_RESTORE_TABLE")
        table = restore_ledger(table_name) if table_name else None
        result = DrillService(obj.config, obj.store(), obj.notifier(), table=table).run(database, backup_id)
        if as_json:
            print_json(result.record())
        else:
            word = "[green]passed[/]" if result.passed else "[bold red]FAILED[/]"
            rto = f" (RTO {result.rto_seconds:.0f} s)" if result.rto_seconds else ""
            output.out.print(
                f"Drill of {result.backup_id}: {word} in {result.seconds:.1f} s{rto}: {escape(result.detail)}"
            )
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

    with failures():
        report = SweepService(obj.config, obj.store(), obj.notifier()).run(budget)
        found = [*report.corrupt, *report.unreadable, *report.overwritten]
        if as_json:
            print_json(report.to_dict())
        else:
            total = report.tally()
            output.out.print(
                f"Swept {total.checked} backups ({human_bytes(total.bytes_read)} of a {human_bytes(report.budget)} "
                f"budget): {total.passed} intact, {total.corrupt} corrupt, {total.unreadable} unreadable, "
                f"{total.overwritten} overwritten; {report.covered} of {report.committed} backups verified at least "
                "once."
            )
            for swept in report.swept:
                if swept.verdict in ("corrupt", "unreadable", "overwritten"):
                    output.out.print(f"  [bold red]{swept.verdict}[/] {swept.backup_id}: {escape(str(swept.reason))}")
        if found:
            sys.exit(1)


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

    with failures():
        obj.config.database(database)
        report = RepairService(obj.store()).repair(database, backup_id)
        if as_json:
            print_json(report.to_dict())
            return
        output.out.print(escape(report.sentence()))


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

    with failures():
        replica = obj.replica()
        notifier = obj.notifier() if replica is None else NoNotifier()
        lag = timedelta(0) if replica is None else replica.allowed_lag
        report = CatalogService(obj.config, obj.store(), notifier=notifier).freshness(lag=lag)
        if as_json:
            print_json(
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
            output.out.print(table)
        needs_a_look = [f"{f.database} ({FRESHNESS_TROUBLE[f.status]})" for f in report if f.is_stale]
        if needs_a_look:
            fail(f"Backups need a look: {', '.join(needs_a_look)}.")
