"""What every command prints with: the two consoles, the progress bar, JSON and sizes, and one sentence per failure.

Commands print through ``output.out`` and ``output.err`` (the module's attributes), so a test widens the console
in one place.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console
from rich.markup import escape

from backstop.errors import BackstopError
from backstop.manifest import Manifest

if TYPE_CHECKING:
    from rich.progress import Progress

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


@contextmanager
def failures() -> Iterator[None]:
    """Turn every expected failure into one sentence and exit status 1."""
    try:
        yield
    except BackstopError as exc:
        fail(str(exc))
    except NoCredentialsError:
        fail("No AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        fail(f"AWS refused the request ({code}): {exc.response.get('Error', {}).get('Message', '')}".rstrip() + ".")
    except BotoCoreError as exc:
        fail(f"AWS could not be reached: {exc}.")
    except OSError as exc:  # the local disk: a missing work_dir, a full disk, a permission
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"A local file operation failed: {exc.strerror or exc}{where}.")


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(1)


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    return manifest.model_dump(mode="json")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
