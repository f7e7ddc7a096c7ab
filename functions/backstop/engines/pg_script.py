"""A restore into a PostgreSQL server older than the client tools: ``pg_restore`` writes SQL, ``psql`` runs it.

``pg_restore`` connected to a server sends the session settings of its own version first, whatever the
server's: pg_restore 17 sends ``SET transaction_timeout = 0``, which PostgreSQL 16 and older refuse
("unrecognized configuration parameter"), and with ``--exit-on-error`` the restore stops there. Its
output as a script is the same statements, so here it writes the script and Backstop passes it on to
``psql``, leaving out of the script's header (its fixed session settings, before the first object)
only the ``SET`` of a parameter the server does not have. Everything after the header (every object
and every row) passes unchanged.

A script run by psql could carry psql meta-commands (``\\!`` runs a shell command) in an archive's
object definitions, which pg_restore connected to a server never runs. pg_restore 17.6, 16.10, 15.14
and later start the script with ``\\restrict <random key>``, after which psql refuses every
meta-command: a script whose header lacks it is refused before psql reads a line of it.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from backstop.errors import RestoreError

CHUNK = 1024 * 1024
_SET = re.compile(rb"SET ([A-Za-z_][A-Za-z0-9_.]*) = .*;")
_HEADER = re.compile(rb"(--.*|\\restrict \S+|SELECT pg_catalog\.set_config\(.*\);|)")


class ScriptHeader:
    """The header of a pg_restore script with the settings ``known`` does not name left out.

    ``write`` is given the script as it streams and passes it on to ``out``: line by line up to the
    first line that is neither a comment, a ``\\restrict``, a setting nor blank, then unchanged.
    RestoreError if the header ends without a ``\\restrict`` line (nothing of the script was passed
    on then, but its lines before).
    """

    def __init__(self, known: frozenset[str], out: Callable[[bytes], None]) -> None:
        self._known = known
        self._out = out
        self._pending = b""
        self._in_header = True
        self._restricted = False
        self.left_out: list[str] = []

    def write(self, data: bytes) -> None:
        if not self._in_header:
            self._out(data)
            return
        self._pending += data
        kept: list[bytes] = []
        while self._in_header and b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            verdict = self._verdict(line)
            if verdict == "end":
                self._end_of_header()
                kept += [line, b"\n", self._pending]
                self._pending = b""
            elif verdict == "keep":
                kept += [line, b"\n"]
        if kept:
            self._out(b"".join(kept))

    def close(self) -> None:
        """The end of the script: a script that is all header still needs its ``\\restrict``."""
        if self._in_header:
            self._end_of_header()
            if self._pending:
                self._out(self._pending)
                self._pending = b""

    def _verdict(self, line: bytes) -> str:
        """``keep`` or ``drop`` a header line, or ``end``: the line is the first after the header."""
        setting = _SET.fullmatch(line)
        if setting is not None:
            name = setting.group(1).decode("ascii").lower()
            if name in self._known:
                return "keep"
            self.left_out.append(name)
            return "drop"
        if line.startswith(b"\\restrict "):
            self._restricted = True
        return "keep" if _HEADER.fullmatch(line) is not None else "end"

    def _end_of_header(self) -> None:
        self._in_header = False
        if not self._restricted:
            raise RestoreError(
                "pg_restore did not start its script with \\restrict, so psql would run meta-commands an archive "
                "carries: install PostgreSQL client tools 17.6, 16.10, 15.14 or later."
            )


def _copy(source: IO[bytes], header: ScriptHeader, failures: list[BaseException]) -> None:
    """The copying thread: pg_restore's script, through ``header``, into psql; stops at the first error."""
    try:
        while chunk := source.read1(CHUNK):  # type: ignore[attr-defined]
            header.write(chunk)
        header.close()
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
        failures.append(exc)
    finally:
        with suppress(OSError):
            source.close()


@contextmanager
def script_restore(
    pg_restore: list[str],
    psql: list[str],
    *,
    known: frozenset[str],
    reader_env: dict[str, str],
    psql_env: dict[str, str],
    run_dir: Path,
    excerpt: Callable[[Path], str],
    pipe_size: int,
) -> Iterator[tuple[Callable[[bytes], None], list[str]]]:
    """``pg_restore <pg_restore> --file=-`` reading the archive fed to it, its script run by ``psql <psql>``.

    Yields the function that feeds the archive and the list of settings left out (filled when the
    block has left). pg_restore connects to nothing: it gets ``reader_env``, no password. Leaving the
    block cleanly waits for both, RestoreError naming the first that failed; if the block fails, both
    are stopped and the block's own error is raised.
    """
    script_err = run_dir / "pg_restore-script.stderr"
    psql_err = run_dir / "psql-restore.stderr"
    with script_err.open("wb") as s_err, psql_err.open("wb") as p_err:
        try:
            runner = subprocess.Popen(
                psql, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=p_err, env=psql_env, pipesize=pipe_size
            )
        except OSError as exc:
            raise RestoreError(f"psql cannot be started: {exc.strerror}.") from None
        try:
            writer = subprocess.Popen(
                [*pg_restore, "--file=-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=s_err,
                env=reader_env,
                pipesize=pipe_size,
            )
        except OSError as exc:
            runner.kill()
            runner.wait()
            raise RestoreError(f"pg_restore cannot be started: {exc.strerror}.") from None
    assert writer.stdin is not None and writer.stdout is not None and runner.stdin is not None
    into_psql = runner.stdin

    def into(data: bytes) -> None:
        into_psql.write(data)

    header = ScriptHeader(known, into)
    failures: list[BaseException] = []
    copier = threading.Thread(target=_copy, args=(writer.stdout, header, failures), name="pg-script", daemon=True)
    copier.start()

    def feed(data: bytes) -> None:
        refused = next((f for f in failures if isinstance(f, RestoreError)), None)
        if refused is not None:
            raise refused
        with suppress(OSError, ValueError):  # pg_restore quit: its exit status tells
            writer.stdin.write(data)  # type: ignore[union-attr]

    def stop() -> None:
        for process in (writer, runner):
            if process.poll() is None:
                process.kill()
        copier.join()
        for pipe in (writer.stdin, into_psql):
            with suppress(OSError, ValueError):
                pipe.close()  # type: ignore[union-attr]
        writer.wait()
        runner.wait()

    try:
        yield feed, header.left_out
    except BaseException:
        stop()
        raise
    with suppress(OSError):
        writer.stdin.close()
    copier.join()  # no time limit: a large restore takes as long as it takes
    refused = next((f for f in failures if isinstance(f, RestoreError)), None)
    if refused is not None:
        stop()
        raise refused
    with suppress(OSError, ValueError):
        into_psql.close()  # psql quit early: its exit status tells
    written, ran = writer.wait(), runner.wait()
    if ran != 0:
        raise RestoreError(f"psql running the restore {_exit_text(ran)}: {excerpt(psql_err)}.")
    if written != 0:
        raise RestoreError(f"pg_restore writing the restore script {_exit_text(written)}: {excerpt(script_err)}.")


def _exit_text(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
