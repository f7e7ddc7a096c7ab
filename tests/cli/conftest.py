"""The fixtures of test_commands (a config file, `backstop` in-process on moto), for every module here."""

from tests.cli.test_commands import cli, config_file  # noqa: F401 - fixtures
