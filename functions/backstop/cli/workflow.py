"""The deployed restore workflow: request a restore, follow it, approve or reject it, and list past restores."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

import click
from rich.markup import escape

from backstop.cli import output
from backstop.cli.group import database_argument, json_option, main, vault_only, vault_or_replica
from backstop.cli.output import failures, human_bytes, print_json
from backstop.errors import RestoreError

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

    with failures():
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
            print_json({"execution": name, "execution_arn": execution_arn, "input": shown})
            return
        click.echo(name)
        output.err.print(
            f"Started; the plan arrives on the alerts topic. Follow it with `backstop restore-status {name}`."
        )


@main.command(name="restore-status")
@vault_or_replica
@click.argument("execution")
@machine_option
@table_option
@json_option
def restore_status(execution: str, state_machine: str, table: str, as_json: bool) -> None:
    """Where the restore EXECUTION stands: its status, its last step, and its audit record."""
    from backstop.bootstrap import executions, restore_ledger

    with failures():
        arn = _execution_arn(state_machine, execution)
        steps = executions()
        described = steps.describe(arn)
        # The whole history, oldest first (a restore's is a few dozen events).
        entered = [e for e in steps.history(arn) if "stateEnteredEventDetails" in e]
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
            print_json(status)
            return
        for key, value in status.items():
            if value is not None and key != "plan":
                output.out.print(f"{key:>13}: {escape(str(value))}")
        plan = status["plan"]
        if plan:
            output.out.print(
                f"{'plan':>13}: {escape(plan['backup_id'])} ({human_bytes(plan['size'])}, sha256 {plan['sha256']})"
            )
            into = escape(str(plan["target_identity"]))
            output.out.print(f"{'':>13}  into {into}, safety snapshot {escape(plan['safety_snapshot'])}")
            output.out.print(f"{'':>13}  confirm with: {escape(plan['confirmation'])}")


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
    with failures():
        grant = _answer("approve", execution, state_machine, approval_function, phrase=phrase)["approved"]
        output.out.print(f"Approved: {escape(_execution_name(execution))} restores {escape(grant['backup_id'])} now.")
        for key in ("database", "target", "sha256", "object_version", "approver", "expires_at"):
            output.out.print(f"{key:>15}: {escape(str(grant[key]))}")


@main.command()
@vault_only
@click.argument("execution")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@machine_option
@approval_option
def reject(execution: str, reason: str, state_machine: str, approval_function: str) -> None:
    """Reject the pending restore EXECUTION; the target is not touched."""
    with failures():
        rejected = _answer("reject", execution, state_machine, approval_function, reason=reason)["rejected"]
        output.out.print(
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

    with failures():
        records = restore_ledger(table).audits(limit)
        if as_json:
            print_json(records)
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
        output.out.print(listing)


def _answer(
    action: Literal["approve", "reject"], execution: str, state_machine: str, approval_function: str, **fields: str
) -> dict[str, Any]:
    """The approval component's answer to ``action`` on ``execution``, with a proof of who is asking."""
    from backstop.bootstrap import identity_proof

    arn = _execution_arn(state_machine, execution)
    request = {"action": action, "execution": arn, **fields, "identity": identity_proof(action, arn).model_dump()}
    return _ask_approval(approval_function, request)
