"""The `backstop` command: manual backups, listing, verification, download and local restores.

Every command exits 0 on success and 1 with one sentence on stderr on failure; ``--json`` prints
machine-readable output on stdout. Progress bars go to stderr, only on a terminal. ``--bucket``
points the reading commands at the vault's replica; the commands that write refuse it.

One module per command group (backups, restore, maintenance, workflow) registers its commands on the
group ``main`` (in ``group``); importing them here is what puts every command on ``backstop``.
"""

from backstop.cli import backups, maintenance, restore, workflow
from backstop.cli.group import main

__all__ = ["backups", "main", "maintenance", "restore", "workflow"]
