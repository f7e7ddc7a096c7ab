"""MySQL and MariaDB: a logical dump with ``mariadb-dump`` (or ``mysqldump``) in one consistent transaction.

The dump tool runs with ``--single-transaction``: every InnoDB table is read in one consistent
snapshot while writers go on committing. Other engines (MyISAM, Aria, MEMORY) are not transactional,
so each such table is named in the manifest's warnings.

The tool's stdout is the snapshot's raw stream, read in bounded memory. A dump that dies, exits
non-zero or lacks the ``-- Dump completed`` trailer raises SourceError from ``read()`` before the
stream reports its end, so the upload is aborted and no manifest is written.

Row counts are exact for the dump itself, not for the database at some other instant: a COUNT(*)
in a separate transaction would see rows committed after the dump's snapshot was taken. Instead
``DumpScanner`` counts the row tuples of every ``INSERT INTO `t` VALUES (...),(...);`` statement as
the bytes stream past. It follows the dump's layout: data statements are recognised only at the
start of a line inside a table's ``-- Dumping data for table `t``` section (so trigger, event and
routine bodies, which come elsewhere, are never counted), and inside a statement it skips string
literals with their backslash escapes and doubled quotes, so a value holding ``),(``, ``;``, quotes
or newlines counts as one value. ``--hex-blob`` keeps binary data out of string literals. The same
scanner recounts a downloaded artifact for ``verify`` and before a restore.

A downloaded artifact is untrusted: the mariadb/mysql client runs some lines of its input itself
(``\\!`` and ``system`` run a shell). ``ClientCommandScanner`` reads it as the client would and
``inspect_artifact`` refuses one holding any such command before anything runs; the restore's
client also runs sandboxed (``engines/mysql_restore.py``).

The password reaches the tool only through a 0600 option file in the run directory, named by
``--defaults-extra-file`` (the first argument, as the tool requires); the child's environment
carries neither ``MYSQL_PWD`` nor the variable the password came from. Identity and statistics are
read through PyMySQL, with the password passed in process. Both connections carry the database's TLS
(``engines/tls.py``): PyMySQL's first, so a server that cannot prove itself is refused before the tool runs.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pymysql

from backstop.adapters.secrets import mysql_option_file, private_file, resolve_password
from backstop.config import MysqlDatabase
from backstop.engines.base import Inspection, compare_with_manifest
from backstop.engines.tls import client_flavor, connect_mysql, mysql_tool_options, tls_hint, trust_file
from backstop.errors import IntegrityError, SourceError, UnsafeArchiveError
from backstop.manifest import IntegrityCheck, Manifest, TableStat

log = logging.getLogger(__name__)

CHECK = "dump-trailer"
TRAILER = b"-- Dump completed"
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
DUMP_OPTIONS = (
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",  # MySQL 8 otherwise needs the PROCESS privilege; nothing restorable is lost
    "--protocol=TCP",  # like PyMySQL: "localhost" must not silently mean a socket with other credentials
)
CHUNK = 1024 * 1024
_DATA_SECTION = b"-- Dumping data for table "
_LINE_LIMIT = 4096  # top-level lines are classified by their start; a longer one is kept truncated
_SPECIAL = re.compile(rb"[();']")
_STRING_BODY = re.compile(rb"[^'\\]*+(?:\\.[^'\\]*+)*+", re.DOTALL)
_QUOTE, _BACKSLASH, _OPEN, _CLOSE = ord("'"), ord("\\"), ord("("), ord(")")
_ACCESS_DENIED = 1045
_TABLE_ACCESS_DENIED = 1142


def quote_identifier(name: str) -> str:
    """A MySQL identifier in backticks, as the dump tool writes it."""
    return "`" + name.replace("`", "``") + "`"


def _parse_identifier(text: bytes) -> str | None:
    """The backtick-quoted identifier at the start of ``text``, or None."""
    match = re.match(rb"`((?:[^`]|``)*)`", text)
    return match.group(1).replace(b"``", b"`").decode("utf-8", errors="replace") if match else None


class DumpScanner:
    """Counts the row tuples per table of a dump's data statements, and whether it ends with the trailer.

    Feed it the dump in chunks of any size; memory stays bounded by one top-level line start and a
    one-byte carry between chunks.
    """

    _LINE, _VALUES, _STRING = range(3)

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self.trailer_at_end = False
        self.unterminated: str | None = None  # a data statement the stream ended inside
        self._state = self._LINE
        self._line = bytearray()
        self._section: str | None = None
        self._prefix = b""
        self._depth = 0
        self._carry = b""

    def feed(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos, end = 0, len(buf)
        while pos < end:
            if self._state == self._LINE:
                pos = self._scan_line(buf, pos)
            elif self._state == self._VALUES:
                match = _SPECIAL.search(buf, pos)
                if match is None:
                    break
                pos = match.end()
                self._values_token(buf[match.start()])
            else:
                pos = self._scan_string(buf, pos)

    def _scan_line(self, buf: bytes, pos: int) -> int:
        newline = buf.find(b"\n", pos)
        stop = len(buf) if newline < 0 else newline
        if self._section is not None:
            start = bytes(self._line[: len(self._prefix)]) + buf[pos : pos + len(self._prefix)]
            if start.startswith(self._prefix):
                consumed = len(self._prefix) - len(self._line)
                self._line.clear()
                self._state, self._depth = self._VALUES, 0
                self.trailer_at_end = False
                return pos + consumed
            if newline < 0 and len(start) < len(self._prefix) and self._prefix.startswith(start):
                self._line += buf[pos:stop]  # maybe the start of a data statement: wait for more
                return stop
        if len(self._line) < _LINE_LIMIT:
            self._line += buf[pos : min(stop, pos + _LINE_LIMIT - len(self._line))]
        if newline < 0:
            return stop
        self._end_line(bytes(self._line))
        self._line.clear()
        return newline + 1

    def _end_line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if line.strip():
            self.trailer_at_end = line.startswith(TRAILER)
        if line.startswith(_DATA_SECTION):
            name = _parse_identifier(line[len(_DATA_SECTION) :])
            if name is not None:
                self._section = name
                self.tables.setdefault(name, 0)
                self._prefix = b"INSERT INTO " + quote_identifier(name).encode() + b" VALUES"
        elif self._section is not None and line.startswith((b"UNLOCK TABLES", b"-- ", b"DELIMITER")):
            self._section = None

    def _values_token(self, token: int) -> None:
        if token == _QUOTE:
            self._state = self._STRING
        elif token == _OPEN:
            if self._depth == 0 and self._section is not None:
                self.tables[self._section] += 1
            self._depth += 1
        elif token == _CLOSE:
            self._depth -= 1
        elif self._depth == 0:  # the statement's terminating ';'
            self._state = self._LINE

    def _scan_string(self, buf: bytes, pos: int) -> int:
        match = _STRING_BODY.match(buf, pos)
        pos = match.end() if match else pos
        if pos >= len(buf):
            return pos
        if buf[pos] == _BACKSLASH or pos + 1 == len(buf):  # an escape or a quote split across chunks
            self._carry = buf[pos:]
            return len(buf)
        if buf[pos + 1] == _QUOTE:  # '' is a quote inside the string
            return pos + 2
        self._state = self._VALUES
        return pos + 1

    def finish(self) -> None:
        """The stream ended: classify its last line and note a data statement left open."""
        if self._carry == b"'" and self._state == self._STRING:
            self._state, self._carry = self._VALUES, b""
        if self._state != self._LINE:
            self.unterminated = self._section or "?"
        elif self._line:
            self._end_line(bytes(self._line))
            self._line.clear()

    def problem(self) -> str | None:
        """Why the scanned dump is not complete, or None."""
        if self.unterminated is not None:
            return f"the dump ends inside the data of table {self.unterminated}"
        if not self.trailer_at_end:
            return "the dump does not end with its '-- Dump completed' trailer"
        return None


# -- what the client would run itself -----------------------------------------------------------

# Every command of the mariadb and mysql clients, by name. The client runs one itself, on the host it
# runs on, when a statement (or, for most, a line) starts with its name, or as \<letter> anywhere
# outside a string: `system` and `\!` run a shell, `source` reads a file, `tee` writes one, `connect`
# sends the password to another host, `use` switches to another database. Only DELIMITER on its own
# line and the `\-` (sandbox mode on) that mariadb-dump writes first are let through.
CLIENT_COMMANDS = frozenset(
    b"? charset clear connect delimiter edit ego exit go help nopager notee nowarning pager print prompt quit "
    b"rehash resetconnection query_attributes sandbox source ssl_session_data_print status system tee use "
    b"warnings".split()
)
_SERVER_SIDE = frozenset({b"USE", b"LOAD"})  # SQL no dump of one database holds: another database, a client file
_HEAD = 4096  # bytes of a statement kept to classify it (a longer one by its start)
_LINE_PEEK = 256  # how far a line's start is read for a command (a DELIMITER line must fit)
_SPACE = b" \t\n\r\x0b\x0c"
_DELIMITER = re.compile(rb"[;/$|!%&+,.:<=>?^~]{1,16}")
_MARKED = re.compile(rb"/\*(M?)!(\d*)(.*?)\*/", re.DOTALL)
_ALWAYS_RUN = 50700  # every supported server (MySQL 5.7+, MariaDB 10+) runs /*!NNNNN ... */ up to this version
_NEVER_RUN = 999999  # and none runs one from this version on (mariadb-dump's sandbox line)
_ANSI_MODES = frozenset({b"ANSI_QUOTES", b"ANSI", b"DB2", b"MAXDB", b"MSSQL", b"ORACLE", b"POSTGRESQL"})
_QUOTED = rb"`[^`]*`|'[^']*'|\"[^\"]*\""
_INERT = re.compile(  # statements that run no code in the session (no function, trigger or prepared statement)
    rb"\s*(?:DROP\s|LOCK\s|UNLOCK\s|ALTER\s+TABLE\s+\S+\s+(?:DISABLE|ENABLE)\s+KEYS\s*$|CREATE\s+(?:OR\s+REPLACE\s+)?"
    rb"(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*(?:CURRENT_USER(?:\s*\(\s*\))?|(?:" + _QUOTED + rb"|[\w.%-]+)"
    rb"(?:\s*@\s*(?:" + _QUOTED + rb"|[\w.%:-]+))?)\s+)?(?:SQL\s+SECURITY\s+\w+\s+)?(?:AGGREGATE\s+)?"
    rb"(?:TRIGGER|PROCEDURE|FUNCTION|EVENT|VIEW)\s)",
    re.IGNORECASE,
)
_MODE_KEEPING = frozenset(  # statements that leave the session's sql_mode as it was (routines restore their own),
    # unless they name it or EXECUTE a prepared statement
    b"SET INSERT REPLACE UPDATE DELETE CREATE DROP ALTER LOCK UNLOCK SELECT DO CALL TRUNCATE RENAME ANALYZE "
    b"OPTIMIZE COMMIT ROLLBACK START SHOW FLUSH".split()
)
_MODE_CHANGING = re.compile(rb"SQL_MODE|EXECUTE", re.IGNORECASE)
_ASSIGNMENT = re.compile(  # one assignment of a plain SET: to a variable, from a literal or a variable
    rb"\s*(?P<lhs>@@(?:(?:session|local|global)\.)?\w+|@(?:\w+|" + _QUOTED + rb")|(?:(?:session|local|global)\s+)?\w+)"
    rb"\s*:?=\s*(?P<rhs>'[^'\\]*'|\"[^\"\\]*\"|@@(?:(?:session|local|global)\.)?\w+|@(?:\w+|`[^`]*`)|[\w.+-]+)\s*(?:,|$)",
    re.IGNORECASE,
)
_SESSION_MODE = re.compile(rb"(?:@@(?:session\.|local\.)?|(?:session|local)\s+)?sql_mode", re.IGNORECASE)
_MODE_NAME = re.compile(rb"[A-Z_0-9]*[A-Z_][A-Z_0-9]*")
_STRING_BODIES = {
    quote: re.compile(rb"[^" + bytes([quote]) + rb"\\]*+(?:\\.[^" + bytes([quote]) + rb"\\]*+)*+", re.DOTALL)
    for quote in b"'\"`"
}


@dataclass(frozen=True)
class _SqlMode:
    """The two parts of a session's sql_mode that change how the client reads a backslash in a string."""

    ansi_quotes: bool
    no_backslash_escapes: bool


def _parse_mode(value: bytes) -> _SqlMode | None:
    """The sql_mode a value sets, or None when it cannot be known here (a number is a bitmask, DEFAULT the global)."""
    names = {name.strip().upper() for name in value.split(b",") if name.strip()}
    if any(not _MODE_NAME.fullmatch(name) or name == b"DEFAULT" for name in names):
        return None
    return _SqlMode(bool(names & _ANSI_MODES), b"NO_BACKSLASH_ESCAPES" in names)


def _executed(head: bytes) -> tuple[bytes, bool]:
    """The statement as the server runs it: executable comments opened, those no server runs dropped.

    The flag says whether what is left is certain: a comment that only some servers run leaves it not.
    """
    certain = True

    def opened(match: re.Match[bytes]) -> bytes:
        nonlocal certain
        digits = match.group(2)
        if digits and int(digits) >= _NEVER_RUN:
            return b" "
        if match.group(1) or len(digits) not in (0, 5, 6) or (digits and int(digits) > _ALWAYS_RUN):
            certain = False
        return b" " + match.group(3) + b" "

    return _MARKED.sub(opened, head), certain


def _shown(command: bytes) -> str:
    """A command's name for a message, in printable ASCII only."""
    return "`" + "".join(chr(c) if 32 < c < 127 else "?" for c in command[:24]) + "`"


class ClientCommandScanner:
    """Finds, before anything runs, what the mariadb/mysql client would do itself instead of sending it to the server.

    It reads the dump the way the client's own parser does (``read_and_execute`` and ``add_line``
    in client/mysql.cc): while no statement is under way, a line's first word is checked against
    the commands; then byte by byte through ``'``, ``"`` and backtick strings, ``/* */``, ``#`` and
    ``-- `` comments (``/*!`` and ``/*M!`` comments are code to the client), backslashes and the
    current DELIMITER; and at each delimiter the statement's first word is checked again. How the
    client reads a backslash inside a string depends on the session's sql_mode (ANSI_QUOTES,
    NO_BACKSLASH_ESCAPES, which the server reports after each statement): the scanner follows the
    ``SET sql_mode`` statements a dump holds, and a mode saved in a user variable as long as
    nothing that can run code came between; wherever the mode is not known (at first, the server's
    default), a backslash in a string is refused. A NUL byte, a DELIMITER line it does not read
    exactly as the client would, and USE or LOAD statements are refused too.

    Feed it the dump in chunks of any size; memory stays bounded (a few hundred bytes held between
    chunks and the first 4 KiB of the current statement). ``problem`` is the first thing found.
    """

    def __init__(self) -> None:
        self.problem: str | None = None
        self._line = 1
        self._delimiter = b";"
        self._token = self._tokens(self._delimiter)
        self._quote = 0  # the quote byte of the string we are in, or 0
        self._comment = False  # inside /* */
        self._line_comment = False  # inside # or --, until the end of the line
        self._started = False  # the client's statement buffer holds something
        self._head = bytearray()  # the statement's start, as the client buffers it
        self._at_line_start = True
        self._mode: _SqlMode | None = None  # the server's default is not known
        self._saved: dict[bytes, _SqlMode | None] = {}  # user variables holding a known sql_mode
        self._carry = b""

    @staticmethod
    def _tokens(delimiter: bytes) -> re.Pattern[bytes]:
        return re.compile(re.escape(delimiter) + rb"|\n|\\|'|\"|`|#|--|/\*|[-/]\Z")

    @staticmethod
    @functools.cache
    def _plain_run(delimiter: bytes, escapes: bool) -> re.Pattern[bytes]:
        """Inside a statement, bytes that change nothing: code without tokens and whole '-strings (the rows of data)."""
        string = rb"'[^'\\]*+(?:\\.[^'\\]*+)*+'" if escapes else rb"'[^']*+'"
        plain = rb"[^\\'\"`#/\-" + re.escape(delimiter[:1]) + rb"]*+"
        return re.compile(plain + rb"(?:(?:" + string + rb"|-(?=[^-])|/(?=[^*]))" + plain + rb")*+", re.DOTALL)

    def _refuse(self, what: str) -> None:
        if self.problem is None:
            self.problem = f"line {self._line} holds {what}"

    def _refuse_command(self, command: bytes) -> None:
        self._refuse(f"the client command {_shown(command)}, which the client would run itself on the restoring host")

    def feed(self, data: bytes) -> None:
        if self.problem is None:
            self._scan(self._carry + data, final=False)

    def finish(self) -> None:
        """The dump ended: read what was held back, then the statement the client sends without a delimiter."""
        if self.problem is None:
            self._scan(self._carry, final=True)
        if self.problem is None and self._started:
            self._end_statement()

    def _scan(self, buf: bytes, *, final: bool) -> None:
        self._carry = b""
        if b"\x00" in buf:
            self._line += buf.count(b"\n", 0, buf.index(b"\x00"))
            self._refuse("a NUL byte, which the client reads differently in binary mode")
            return
        pos, end = 0, len(buf)
        while pos < end and self.problem is None:
            if self._line_comment:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    return
                self._line_comment, pos = False, newline  # the newline ends the line as in code
            elif self._comment:
                pos = self._scan_comment(buf, pos, final)
            elif self._quote:
                pos = self._scan_string(buf, pos, final)
            elif self._at_line_start and not self._started:
                pos = self._scan_line_start(buf, pos, final)
            else:
                pos = self._scan_code(buf, pos, final)

    def _hold(self, buf: bytes, pos: int, final: bool) -> int:
        """Keep ``buf[pos:]`` for the next chunk, where the token it starts goes on; at the end, drop it."""
        if not final:
            self._carry = buf[pos:]
        return len(buf)

    def _keep(self, code: bytes) -> None:
        if len(self._head) < _HEAD:
            self._head += code[: _HEAD - len(self._head)]

    def _scan_comment(self, buf: bytes, pos: int, final: bool) -> int:
        close = buf.find(b"*/", pos)
        if close < 0:
            self._line += buf.count(b"\n", pos, len(buf) - 1)
            return self._hold(buf, len(buf) - 1, final)  # maybe the '*' of '*/'
        self._line += buf.count(b"\n", pos, close)
        self._comment = False
        return close + 2

    def _scan_line_start(self, buf: bytes, pos: int, final: bool) -> int:
        """A line starts while no statement is under way: the client checks its first word for a command."""
        newline = buf.find(b"\n", pos, pos + _LINE_PEEK)
        if newline < 0 and len(buf) - pos < _LINE_PEEK and not final:
            return self._hold(buf, pos, final)
        whole = newline >= 0 or (final and len(buf) - pos < _LINE_PEEK)
        line = buf[pos : newline if newline >= 0 else pos + _LINE_PEEK]
        words = line.split(None, 1)
        word = words[0].lower().split(self._delimiter)[0] if words else b""
        self._at_line_start = False
        if word.startswith(b"delimiter"):  # in binary mode, any word starting so is DELIMITER
            argument = words[1].strip() if len(words) > 1 else b""
            if word != words[0].lower() or word != b"delimiter" or not whole or not _DELIMITER.fullmatch(argument):
                self._refuse("a DELIMITER line the scanner does not read as the client would")
                return pos
            self._delimiter, self._token = argument, self._tokens(argument)
            self._at_line_start = True
            if newline < 0:
                return len(buf)
            self._line += 1
            return newline + 1
        if word in CLIENT_COMMANDS:
            self._refuse_command(word)
        return pos

    def _scan_code(self, buf: bytes, pos: int, final: bool) -> int:
        self._at_line_start = False  # until the next newline
        if self._started and self._mode is not None:  # fast through the data: no line starts a command here
            run = self._plain_run(self._delimiter, not self._mode.no_backslash_escapes).match(buf, pos)
            if run is not None and run.end() > pos:
                self._line += buf.count(b"\n", pos, run.end())
                self._keep(buf[pos : min(run.end(), pos + max(0, _HEAD - len(self._head)))])
                return run.end()
        match = self._token.search(buf, pos)
        stop = match.start() if match else max(pos, len(buf) - len(self._delimiter) + 1)
        code = buf[pos:stop]
        if not self._started:
            code = code.lstrip(_SPACE)
            self._started = bool(code)
        self._keep(code)
        if match is None:  # the delimiter may go on in the next chunk
            return self._hold(buf, stop, final)
        token, after = match.group(), match.end()
        if token in (b"-", b"/", b"\\", b"--", b"/*") and after + 2 > len(buf) and not final:
            return self._hold(buf, stop, final)  # what follows decides what it is
        if token == self._delimiter:
            self._end_statement()
            return after
        if token == b"\n":
            self._line += 1
            self._at_line_start = True
            if self._started:
                self._keep(token)
            return after
        following = buf[after : after + 2]
        if token == b"\\":
            return self._backslash(following, after)
        if token == b"#" or (token == b"--" and (not following[:1].strip() or not self._started)):
            self._line_comment = True
            return after
        if token == b"/*" and not following.startswith((b"!", b"M!")):
            self._comment = True
            return after
        if token[:1] in (b"-", b"/"):  # a minus, a division, or an executable comment the client reads as code
            self._started = True
            self._keep(token[:1])
            return stop + 1
        self._quote, self._started = token[0], True
        self._keep(token)
        return after

    def _backslash(self, following: bytes, after: int) -> int:
        command = following[:1]
        if command in (b"", b"\n"):  # a backslash ending the line: the client drops it
            return after
        if command == b"N":  # \N is NULL, not a command
            self._started = True
            self._keep(b"\\N")
            return after + 1
        if command == b"-":  # sandbox mode on, as mariadb-dump's first line asks
            return after + 1
        self._refuse_command(b"\\" + command)
        return after

    def _escapes(self) -> bool | None:
        """Whether a backslash escapes the next byte in the current string; None where the sql_mode is not known."""
        if self._quote == ord("`"):
            return False
        if self._mode is None:
            return None
        if self._mode.no_backslash_escapes:
            return False
        return not (self._quote == ord('"') and self._mode.ansi_quotes)

    def _scan_string(self, buf: bytes, pos: int, final: bool) -> int:
        escapes = self._escapes()
        if escapes:
            body = _STRING_BODIES[self._quote].match(buf, pos)
            close = body.end() if body else pos
        else:
            found = buf.find(bytes([self._quote]), pos)
            close = len(buf) if found < 0 else found
            backslash = buf.find(b"\\", pos, close)
            if escapes is None and backslash >= 0:
                self._line += buf.count(b"\n", pos, backslash)
                self._refuse("a backslash in a string where the session's sql_mode is not known")
                return len(buf)
        self._line += buf.count(b"\n", pos, close)
        self._keep(buf[pos:close])
        if close >= len(buf):
            return close
        if buf[close] == ord("\\"):  # an escape whose second byte is in the next chunk
            return self._hold(buf, close, final)
        self._keep(buf[close : close + 1])
        self._quote = 0
        return close + 1

    def _end_statement(self) -> None:
        """A statement is complete: the client checks its first word for a command, else sends it."""
        head = bytes(self._head)
        self._head.clear()
        self._started = False
        words = head.split(None, 1)
        if words and words[0].lower() in CLIENT_COMMANDS:
            self._refuse_command(words[0].lower())
            return
        text, certain = _executed(head)
        words = text.split(None, 1)
        first = words[0].upper() if words else b""
        if first in _SERVER_SIDE:
            self._refuse(f"a {first.decode()} statement, which a dump of one database never holds")
            return
        if first == b"SET" and len(head) < _HEAD and self._plain_set(words[1] if len(words) > 1 else b"", certain):
            return
        if not _INERT.match(text):
            self._saved.clear()  # a function, trigger or procedure may have set any user variable
        if first not in _MODE_KEEPING or _MODE_CHANGING.search(text):
            self._mode = None

    def _plain_set(self, body: bytes, certain: bool) -> bool:
        """Follow a SET that only assigns literals and variables; False if it is not one (nothing followed)."""
        if re.match(rb"\s*(?:NAMES|CHARACTER\s+SET|CHARSET)\s", body, re.IGNORECASE):
            return True
        assignments, pos, body = [], 0, body.rstrip()
        while pos < len(body):
            assignment = _ASSIGNMENT.match(body, pos)
            if assignment is None or assignment.end() == pos:
                return False
            assignments.append(assignment)
            pos = assignment.end()
        for assignment in assignments:
            value = self._value(assignment.group("rhs")) if certain else None
            target = assignment.group("lhs").lower()
            if target.startswith(b"@") and not target.startswith(b"@@"):
                self._saved[target[1:].strip(b"`'\"")] = value
            elif _SESSION_MODE.fullmatch(target):
                self._mode = value
        return bool(assignments)

    def _value(self, rhs: bytes) -> _SqlMode | None:
        lower = rhs.lower()
        if lower.startswith(b"@@"):
            return self._mode if _SESSION_MODE.fullmatch(lower) else None
        if lower.startswith(b"@"):
            return self._saved.get(lower[1:].strip(b"`"))
        return _parse_mode(rhs[1:-1] if rhs[:1] in (b"'", b'"') else rhs)


@dataclass
class _Server:
    """What PyMySQL reported about the source before the dump started."""

    source: dict[str, str | int | None]
    base_tables: list[str]
    warnings: list[str] = field(default_factory=list)


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _read_server(db: MysqlDatabase, password: str | None, ca: Path | None) -> _Server:
    """Identity, version and base tables of the source; SourceError (without the password) if unreachable.

    The connection carries ``db``'s TLS, verified against ``ca`` under verify-full (``engines/tls.py``).
    """
    where = f"{db.user}@{db.host}:{db.port}/{db.dbname}"
    try:
        conn = connect_mysql(db, password, ca, database=db.dbname, charset="utf8mb4")
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code == _ACCESS_DENIED:
            hint = f" (check ${db.password_env})" if db.password_env else " (check its password secret)"
            raise SourceError(f"MySQL database {db.name} refused {where}: access denied{hint}.") from None
        reason = " ".join(_scrub(str(exc.args[1] if len(exc.args) > 1 else exc), password).split())[:200]
        raise SourceError(
            f"MySQL database {db.name} cannot be reached as {where}: {reason.rstrip('.')}{tls_hint(db, reason)}."
        ) from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@server_id, @@hostname")
            version, server_id, hostname = cur.fetchone() or ("?", None, None)
            source: dict[str, str | int | None] = {
                "host": db.host,
                "port": db.port,
                "dbname": db.dbname,
                "user": db.user,
                "server_version": str(version),
            }
            if "mariadb" in str(version).lower():
                # MariaDB has no server_uuid: the replication server id and the host name identify it.
                source["flavor"] = "mariadb"
                source["server_id@hostname"] = f"{server_id}@{hostname}"
            else:
                cur.execute("SELECT @@server_uuid")
                row = cur.fetchone()
                source["flavor"] = "mysql"
                source["server_uuid"] = str(row[0]) if row else None
            cur.execute(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                (db.dbname,),
            )
            tables = [(str(name), str(engine)) for name, engine in cur.fetchall()]
            hidden_routines = source["flavor"] == "mariadb" and not _reads_routines(cur)
    except pymysql.MySQLError as exc:
        raise SourceError(
            f"MySQL database {db.name} cannot be described: {_scrub(str(exc), password)[:200]}."
        ) from None
    finally:
        conn.close()
    server = _Server(source=source, base_tables=[name for name, _ in tables])
    if hidden_routines:
        message = (
            f"{db.user} cannot read mysql.proc: the dump leaves out every stored procedure and function it does not "
            "own, without an error (grant SELECT ON mysql.proc, see docs/runbooks/restore.md)"
        )
        log.warning("%s: %s", db.name, message)
        server.warnings.append(message)
    for name, engine in tables:
        if engine.lower() != "innodb":
            message = (
                f"table {name} uses {engine}, not InnoDB: --single-transaction does not make it consistent "
                "with the rest of the dump"
            )
            log.warning("%s: %s", db.name, message)
            server.warnings.append(message)
    return server


def _reads_routines(cur: pymysql.cursors.Cursor) -> bool:
    """Whether the user can read every routine's definition (MariaDB keeps them in mysql.proc).

    The dump tool prints a routine only if it can read its body, and says nothing of those it cannot.
    """
    try:
        cur.execute("SELECT 1 FROM mysql.proc LIMIT 0")
    except pymysql.MySQLError as exc:
        if exc.args and exc.args[0] == _TABLE_ACCESS_DENIED:
            return False
        raise
    return True


def _dump_tool() -> tuple[str, str]:
    """The dump tool's name and absolute path (mariadb-dump preferred)."""
    for name in DUMP_TOOLS:
        path = shutil.which(name)
        if path is not None:
            return name, path
    raise SourceError("Neither mariadb-dump nor mysqldump is installed; install the MariaDB or MySQL client.")


def _tool_version(path: str, env: dict[str, str]) -> str:
    result = subprocess.run([path, "--version"], capture_output=True, env=env, check=False, timeout=30)
    return " ".join(result.stdout.decode(errors="replace").split()) or "unknown"


def child_env(db: MysqlDatabase, password: str | None) -> dict[str, str]:
    """The environment of the dump tool: no MYSQL_PWD, no variable holding the password."""
    return {
        name: value
        for name, value in os.environ.items()
        # Equality, not containment: a short password would otherwise strip PATH or HOME by accident.
        if name != "MYSQL_PWD" and name != db.password_env and not (password and value == password)
    }


class _DumpReader:
    """The dump tool's stdout; raises the dump's failure instead of a clean end of stream."""

    def __init__(self, snapshot: MysqlSnapshot, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._snapshot = snapshot
        self._process = process

    def read(self, size: int = -1) -> bytes:
        data = self._stdout.read(size)
        if data:
            self._snapshot.scanner.feed(data)
            return data
        error = self._snapshot.conclude(self._process.wait())
        if error is not None:
            raise SourceError(error)
        return data

    def close(self) -> None:
        if self._process.poll() is None:  # abandoned mid-stream (the upload failed): stop the dump
            self._process.kill()
        code = self._process.wait()
        self._stdout.close()
        self._snapshot.conclude(code, abandoned=True)


class MysqlSnapshot:
    """One run of the dump tool, streamed; its row counts and check are known once the stream is read."""

    # The dump is checked as it streams (row counts and the trailer).
    cpu_bound_check = False

    def __init__(
        self,
        db: MysqlDatabase,
        args: list[str],
        env: dict[str, str],
        run_dir: Path,
        server: _Server,
        password: str | None,
    ) -> None:
        self._db = db
        self._args = args
        self._env = env
        self._stderr = run_dir / "dump.stderr"
        self._base_tables = server.base_tables
        self._password = password
        self.source = server.source
        self.tools: dict[str, str] = {}
        self.warnings = list(server.warnings)
        self.scanner = DumpScanner()
        self._opened = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._error: str | None = None

    def open(self) -> AbstractContextManager[BinaryIO]:
        return self._stream()

    @contextmanager
    def _stream(self) -> Iterator[BinaryIO]:
        with self._stderr.open("wb") as stderr:
            process = subprocess.Popen(  # fixed arguments and a resolved tool path, no shell
                self._args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=self._env
            )
        self._opened = True
        reader = _DumpReader(self, process)
        try:
            yield reader  # type: ignore[misc]  # a minimal binary reader: read() and close()
        finally:
            reader.close()
            self._stderr.unlink(missing_ok=True)

    def conclude(self, code: int, *, abandoned: bool = False) -> str | None:
        """Record how the dump ended (once) and return why it failed, or None."""
        with self._lock:
            if self._done.is_set():
                return self._error
            self.scanner.finish()
            if abandoned and code != 0:
                problem: str | None = "the dump was stopped before it was read to the end"
            elif code != 0:
                problem = (
                    f"{Path(self._args[0]).name} exited with code {code}"
                    if code > 0
                    else (f"{Path(self._args[0]).name} was killed by signal {-code}")
                )
            else:
                problem = self.scanner.problem()
            if problem is not None:
                excerpt = self._stderr_excerpt()
                self._error = f"The dump of MySQL database {self._db.name} failed: {problem}" + (
                    f" ({excerpt})." if excerpt else "."
                )
                log.error("%s", self._error)
            else:
                for line in self._stderr_lines():
                    log.warning("%s: %s", self._db.name, line)
            self._done.set()
            return self._error

    def _stderr_lines(self) -> list[str]:
        try:
            with self._stderr.open("rb") as handle:
                handle.seek(max(0, self._stderr.stat().st_size - 4096))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return [_scrub(line.strip(), self._password) for line in text.splitlines() if line.strip()]

    def _stderr_excerpt(self) -> str:
        excerpt = " / ".join(self._stderr_lines()[-2:])
        return excerpt if len(excerpt) <= 300 else excerpt[:297] + "..."

    def raw_size(self) -> int | None:
        return None

    def inspect(self) -> Inspection:
        """Wait for the end of the stream, then check exit code, trailer, and that every base table was dumped."""
        if not self._opened:
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail="the dump was not started"))
        self._done.wait()
        if self._error is not None:
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail=self._error))
        counted = self.scanner.tables
        missing = sorted(set(self._base_tables) - set(counted))
        if missing:
            detail = f"base tables missing from the dump: {', '.join(missing[:10])}"
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail=detail))
        tables = {name: TableStat(rows=rows, exact=True) for name, rows in sorted(counted.items())}
        total = sum(counted.values())
        return Inspection(
            integrity=IntegrityCheck(
                check=CHECK, passed=True, detail=f"trailer present, exit 0, {len(tables)} tables, {total} rows"
            ),
            tables=tables,
            stats={"tables": len(tables), "rows": total},
        )


class MysqlEngine:
    """Dumps and checks of one configured MySQL or MariaDB database (restores come later)."""

    name = "mysql"
    artifact = "sql"

    def __init__(self, db: MysqlDatabase) -> None:
        self._db = db

    def snapshot(self, run_dir: Path) -> AbstractContextManager[MysqlSnapshot]:
        return self._snapshot(run_dir)

    @contextmanager
    def _snapshot(self, run_dir: Path) -> Iterator[MysqlSnapshot]:
        db = self._db
        password = resolve_password(db)
        tool, path = _dump_tool()
        env = child_env(db, password)
        version = _tool_version(path, env)
        with ExitStack() as stack:
            ca = stack.enter_context(trust_file(db, run_dir, SourceError))
            server = _read_server(db, password, ca)
            args = [path]
            if password is not None:
                options = stack.enter_context(private_file(run_dir, "client.cnf", mysql_option_file(db, password)))
                args.append(f"--defaults-extra-file={options}")  # must be the first option
            args += [*DUMP_OPTIONS, *mysql_tool_options(db, client_flavor(version), ca)]
            args += [f"--host={db.host}", f"--port={db.port}", f"--user={db.user}", db.dbname]
            snapshot = MysqlSnapshot(db, args, env, run_dir, server, password)
            snapshot.tools = {tool: version}
            yield snapshot

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        """Require the trailer and no client command, then recount every table's tuples against the manifest.

        UnsafeArchiveError when the dump holds anything the client would run itself (a shell command,
        a file read or written, another host or database): a restore reads the artifact here first.
        """
        scanner, commands = DumpScanner(), ClientCommandScanner()
        with raw.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                scanner.feed(chunk)
                commands.feed(chunk)
        scanner.finish()
        commands.finish()
        problem = scanner.problem()
        if problem is not None:
            raise IntegrityError(f"Backup {manifest.backup_id} is not a complete dump: {problem} (truncated?).")
        if commands.problem is not None:
            raise UnsafeArchiveError(
                f"Backup {manifest.backup_id} is refused before anything runs: {commands.problem}."
            )
        found = Inspection(
            integrity=IntegrityCheck(check=CHECK, passed=True, detail=f"trailer present, {len(scanner.tables)} tables"),
            tables={name: TableStat(rows=rows) for name, rows in scanner.tables.items()},
            stats={"tables": len(scanner.tables), "rows": sum(scanner.tables.values())},
        )
        compare_with_manifest(found, manifest, f"Backup {manifest.backup_id}")
        return found
