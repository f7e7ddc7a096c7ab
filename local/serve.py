"""`make local`: the whole system on the embedded emulator, left running for another shell.

Stands the stack of ``.local/backstop.yaml`` up exactly as `make demo` does (created on first use
with sample databases in ``.local/data``; edit it to point at your own), writes ``.local/env``
with everything a shell needs (`source .local/env`, then the `aws` CLI and `backstop` talk to the
emulator), and runs in the foreground until interrupted. ``.local/env`` is removed on the way
out, so a stale file never points at a stopped emulator.

Schedules do not fire on the emulator: back up with `backstop backup DB`, or invoke a backup
function with its schedule's input (`python -m local.serve` prints how).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from backstop.config import load_config
from local.demo import create_sample_database, create_sample_directory
from local.system import LocalSystem, local_system

console = Console(file=sys.stdout, highlight=False)


def sample_config(workspace: Path) -> Path:
    """``workspace/backstop.yaml``, created with sample databases the first time."""
    config = workspace / "backstop.yaml"
    if config.exists():
        return config
    data = workspace / "data"
    (data / "staging").mkdir(parents=True, exist_ok=True)
    create_sample_database(data / "shop.db")
    create_sample_database(data / "staging" / "shop.db")
    create_sample_directory(data / "uploads")
    (workspace / "tmp").mkdir(exist_ok=True)
    config.write_text(
        "# make local: the emulator's stack is synthesized from this file. Edit it, then restart make local.\n"
        "bucket: backstop-local\n"
        "prefix: backups\n"
        f"work_dir: {workspace / 'tmp'}\n"
        "storage:\n"
        "  object_lock: {mode: governance}  # each backup locked until its tier expires\n"
        "databases:\n"
        "  - name: shop\n"
        "    engine: sqlite\n"
        f"    path: {data / 'shop.db'}\n"
        "    schedule: cron(0 2 * * ? *)\n"
        "    stale_after: 26h\n"
        "    restore_targets:\n"
        "      in-place: {}\n"
        f"      staging: {{path: {data / 'staging' / 'shop.db'}}}\n"
        "  - name: uploads\n"
        "    engine: files\n"
        f"    path: {data / 'uploads'}\n"
        "    schedule: cron(30 2 * * ? *)\n"
        "    stale_after: 26h\n"
    )
    return config


def write_env(system: LocalSystem, workspace: Path, config: Path) -> Path:
    """``workspace/env``: `export` lines for the emulator, the stack's names and the command line's config."""
    variables = {**system.environment(), "BACKSTOP_CONFIG": str(system.cli_config(config))}
    env = workspace / "env"
    temporary = env.with_suffix(".tmp")
    temporary.write_text(
        "# written by `make local`; valid while it runs: source it in another shell\n"
        + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(variables.items()))
    )
    temporary.replace(env)  # a reader never sees half a file
    return env


def serve(workspace: Path, stop: threading.Event) -> None:
    """Run the system until ``stop`` is set."""
    workspace.mkdir(parents=True, exist_ok=True)
    config_path = sample_config(workspace)
    config = load_config(config_path)
    console.print(f"Synthesizing the stack of {config_path} and standing it up on the emulator...")
    env = workspace / "env"
    with local_system(config, log_dir=workspace / "logs") as system:
        try:
            write_env(system, workspace, config_path)
            _describe(system, env)
            stop.wait()
        finally:
            env.unlink(missing_ok=True)
    console.print("Stopped; .local/env removed.")


def _describe(system: LocalSystem, env: Path) -> None:
    skipped = ", ".join(sorted(set(system.deployed.skipped.values())))
    console.print(f"Not emulated (listed, not created): {skipped}")
    table = Table("what", "where")
    table.add_row("emulator", system.emulator.endpoint)
    table.add_row("bucket", system.bucket)
    table.add_row("restore state machine", system.state_machine_arn)
    table.add_row("restore table", system.restore_table)
    table.add_row("alerts queue", system.alerts_queue_url)
    for schedule in system.schedules:
        table.add_row(f"schedule: {schedule.description.removeprefix('Backstop: ')}", schedule.function)
    console.print(table)
    example = {"database": "shop", "backup": "latest", "target": "staging", "requested_by": "you", "reason": "try"}
    console.print(
        f"Ready. In another shell:\n"
        f"  source {env}\n"
        "  backstop backup shop\n"
        "  aws stepfunctions start-execution --state-machine-arn $BACKSTOP_STATE_MACHINE_ARN --name try-1 \\\n"
        f"      --input '{json.dumps(example)}'\n"
        "  backstop restore-status try-1\n"
        '  backstop approve try-1 --confirm "RESTORE <backup id from the plan>"\n'
        "  aws --endpoint-url $AWS_ENDPOINT_URL sqs receive-message --queue-url $BACKSTOP_ALERTS_QUEUE_URL\n"
        "      # the alerts, the plan among them (AWS CLI v1 ignores AWS_ENDPOINT_URL for SQS in us-east-1)\n"
        "Ctrl-C stops the emulator."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workspace", type=Path, default=Path(".local"), help="where env, config, data and logs go")
    args = parser.parse_args()
    stop = threading.Event()

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    serve(args.workspace.resolve(), stop)


if __name__ == "__main__":
    main()
