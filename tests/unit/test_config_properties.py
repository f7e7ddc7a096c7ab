"""Generated backstop.yaml files: each one loads into a configuration that works, or is refused in one sentence.

Never a traceback: whatever the file holds (wrong types, huge numbers, odd strings, missing or unknown
keys), ``parse_config`` returns a Config or raises ConfigError. And what loads does not break later:
every declared target resolves, safety-snapshot names belong to one target each, the durations and
the budget are usable, paths are absolute, and the configuration survives the JSON round trip the
deployed functions make.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Callable
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backstop.config import LONGEST_DURATION, Config, MysqlDatabase, PostgresDatabase, parse_config
from backstop.config.targets import RESERVED_DATABASES, kept_prefix, safety_database, system_directory, target_for
from backstop.errors import ConfigError

LONG_DBNAME = "billing_" + "s" * 25  # 33 characters
LONG_NAME = "a" * 62  # with one more character, the longest database name
BASE: dict[str, Any] = {
    "bucket": "backstop-prod",
    "prefix": "backups",
    "work_dir": "/var/tmp/backstop",
    "upload": {"part_size_mb": 16, "concurrency": 4},
    "storage": {"cold_after_days": 30, "object_lock": {"mode": "governance", "days": 7}},
    "freshness": {"every": "1h"},
    "runner": {"architecture": "arm64", "log_retention_days": 90},
    "restore": {
        "approval_timeout": "24h",
        "distinct_approver": True,
        "safety_snapshot_days": 30,
        "keep_pre_restore": {"count": 3, "days": 14},
    },
    "sweep": {"every": "1d", "budget": "10GiB", "repair": False},
    "databases": [
        {
            "name": "orders",
            "engine": "sqlite",
            "path": "/srv/data/orders.db",
            "stale_after": "26h",
            "busy_timeout": "5s",
            "retention": {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 3, "keep_last": 3},
            "restore_targets": {"staging": {"path": "/srv/staging/orders.db"}, "in-place": {}},
            "drill": {"path": "/srv/drills", "every": "7d", "rto": "15m"},
        },
        {
            "name": "uploads",
            "engine": "files",
            "path": "/srv/uploads",
            "compression": "gzip",
            "compression_level": 6,
            "exclude": ["*.tmp"],
            "restore_targets": {"staging": {"path": "/srv/uploads-staging"}},
        },
        {
            "name": "billing",
            "engine": "postgres",
            "host": "db.internal",
            "port": 5432,
            "dbname": "billing",
            "user": "backup",
            "password_env": "BILLING_PW",
            "connect_timeout": "10s",
            "lock_wait_timeout": "30s",
            "exact_count_limit": 1000000,
            "restore_targets": {
                "staging": {"dbname": "billing_staging", "port": 5433},
                # 34 characters each: a pre-restore name keeps them whole, one more and they would meet
                "long-a": {"dbname": LONG_DBNAME + "a"},
                "long-b": {"dbname": LONG_DBNAME + "b"},
            },
        },
        {
            "name": "shop",
            "engine": "mysql",
            "host": "mysql.internal",
            "dbname": "shop",
            "user": "backup",
            "restore_targets": {"reporting": {"host": "replica.internal", "dbname": "shop_reporting"}},
        },
        {
            "name": LONG_NAME + "1",
            "engine": "sqlite",
            "path": "/srv/long.db",
            "restore_targets": {"staging": {"path": "/srv/long-staging.db"}},
        },
    ],
}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``node`` a value sits (mapping keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(BASE)
KEYS = sorted({part for path in PATHS for part in path if isinstance(part, str)})

ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "/",
        "/etc",
        "//etc/x",
        "relative/path",
        "/srv/../etc",
        "..",
        "a\x00b",
        "a\nb",
        "99999999999d",
        "9" * 40 + "s",
        "0s",
        "-5h",
        "1.5h",
        "0GiB",
        "99999PiB",
        "true",
        "yes",
        "5432",
        "x" * 300,
        "orders-pre-restore-staging",
        "billing_pre_restore_20260101t020000z",
        "a" * 63,
        "postgres",
        "in-place",
        "staging",
        "arn:aws:iam::123456789012:role/x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=string.ascii_lowercase + string.digits + "_-./", max_size=70),
    ODD_TEXT,
    st.sampled_from(KEYS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner)
    ),
    max_leaves=6,
)


UNITS = st.sampled_from(list("smhdw"))
DURATIONS = st.one_of(
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=0, max_value=10**13), UNITS),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=0, max_value=500), UNITS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["99999999999d", "9" * 5000 + "s", "0s", "1d12h", "-1h", 0]),
)
NUMBERS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=70_000),
    st.floats(),
    st.sampled_from(["5432", "7", "1e3"]),
)
SEGMENT = st.sampled_from(["srv", "etc", "usr", "var", "lib", "home", "data", "..", ".", "", "orders.db", "tmp", "dev"])
PATHS_LIKE = st.one_of(
    st.lists(SEGMENT, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.lists(SEGMENT, min_size=1, max_size=3).map("/".join),
    st.sampled_from(["/", "//etc", "/srv/data/orders.db", "/srv/uploads/inner", "/srv", "/mnt/data"]),
)
NAMES = st.one_of(  # database names: some of them another database's safety-snapshot name, in full or cut
    st.text(alphabet="ab_-9", min_size=1, max_size=70),
    st.sampled_from(
        [
            "orders",
            "orders-pre-restore-staging",
            "orders-pre-restore-in-place",
            "uploads-pre-restore-staging",
            LONG_NAME + "1",
            LONG_NAME + "2",
            LONG_NAME[:43] + "-pre-restore-staging",
        ]
    ),
)
DBNAMES = st.one_of(  # server database names: some meet another target's once cut, or look derived or reserved
    st.sampled_from(
        [
            LONG_DBNAME + "a" + "zz",
            LONG_DBNAME + "b" + "zz",
            LONG_DBNAME + "ab",
            LONG_DBNAME + "ba",
            LONG_DBNAME + "a_x",
            LONG_DBNAME + "b_x",
            "billing_pre_restore_20260101t020000z",
            "billing_restore_20260101t020000z",
            "postgres",
            "mysql",
        ]
    ),
    st.text(alphabet="ab_-9", min_size=1, max_size=70),
)
ODD_KEYS = st.sampled_from(["\n", "a\nb", "'", '"', "x" * 80, " ", "in-place\n"])
HOSTS = st.sampled_from(["db.internal", "DB.internal", "replica.internal", "mysql.internal", "-bad", ""])
SIZES = st.one_of(
    NUMBERS,
    st.builds(
        lambda n, unit: f"{n}{unit}", st.integers(-5, 10**9), st.sampled_from(["B", "KiB", "GiB", "PiB", "TB", ""])
    ),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(
        ["stale_after", "busy_timeout", "connect_timeout", "lock_wait_timeout", "rto", "every", "approval_timeout"],
        DURATIONS,
    ),
    **dict.fromkeys(
        [
            "part_size_mb",
            "concurrency",
            "cold_after_days",
            "days",
            "log_retention_days",
            "safety_snapshot_days",
            "count",
            "daily",
            "weekly",
            "monthly",
            "yearly",
            "keep_last",
            "compression_level",
            "port",
            "exact_count_limit",
            "distinct_approver",
            "repair",
        ],
        NUMBERS,
    ),
    **dict.fromkeys(["path", "work_dir"], PATHS_LIKE),
    "name": NAMES,
    "dbname": DBNAMES,
    "host": HOSTS,
    "budget": SIZES,
}


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        tree = tree[part]
    return tree


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """BASE with a few of its values replaced, removed, or joined by new keys and entries.

    Each change is aimed at one kind of place, drawn evenly (a uniform pick among all places would
    seldom reach the few that matter most: a target's path or database name, a database's name).
    """
    tree = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(tree)
        kind = draw(st.sampled_from(sorted(PLACES)))
        chosen = [p for p in paths if PLACES[kind](p)]
        if not chosen:
            continue
        path = draw(st.sampled_from(chosen))
        try:
            parent = _parent(tree, path)
            key = path[-1]
            actions = ["replace", "remove", "add", "copy"] if kind == "anywhere" else ["replace"] * 5 + ["remove"]
            action = draw(st.sampled_from(actions))
            if action == "replace":
                near = FIELD_VALUES.get(key) if isinstance(key, str) else None  # a value of about the right kind
                parent[key] = draw(near if near is not None and draw(st.integers(0, 4)) else VALUES)
            elif action == "remove":
                del parent[key]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.one_of(st.sampled_from(KEYS), ODD_KEYS, st.text(max_size=8)))] = draw(VALUES)
            elif action == "copy":  # a value moved where another kind of value belongs
                source = draw(st.sampled_from(_paths(BASE)))
                parent[key] = copy.deepcopy(_parent(BASE, source)[source[-1]])
        except (KeyError, IndexError, TypeError):
            continue  # the path went away with an earlier change
    if draw(st.booleans()) and isinstance(tree.get("databases"), list) and tree["databases"]:
        entry = copy.deepcopy(draw(st.sampled_from(tree["databases"])))  # a near-duplicate entry
        if isinstance(entry, dict):
            entry["name"] = draw(st.one_of(NAMES, ODD_TEXT))
        tree["databases"].append(entry)
    return tree


FLAGS = ("distinct_approver", "repair")


def _in_targets(path: tuple[Any, ...], field: str) -> bool:
    return "restore_targets" in path and path[-1] == field


PLACES: dict[str, Callable[[tuple[Any, ...]], bool]] = {
    "anywhere": lambda p: True,
    "a target's path": lambda p: _in_targets(p, "path"),
    "a target's database": lambda p: _in_targets(p, "dbname"),
    "a database's name": lambda p: len(p) == 3 and p[0] == "databases" and p[-1] == "name",
    "a number": lambda p: FIELD_VALUES.get(p[-1]) is NUMBERS and p[-1] not in FLAGS,
    "a flag": lambda p: p[-1] in FLAGS,
    "a duration": lambda p: FIELD_VALUES.get(p[-1]) is DURATIONS,
    "a source path or the work directory": lambda p: p[-1] in ("path", "work_dir") and "restore_targets" not in p,
    "a host": lambda p: p[-1] == "host",
    "the sweep budget": lambda p: p[-1] == "budget",
}


def _assert_works(config: Config) -> None:
    """What a loaded configuration promises the code that runs later."""
    assert config.sweep.budget >= 1
    names = {db.name for db in config.databases}
    safety: set[str] = set()
    servers: dict[tuple[str, str, int, str], str] = {}
    for db in config.databases:
        assert timedelta(0) < db.stale_after <= LONGEST_DURATION
        if isinstance(db, PostgresDatabase | MysqlDatabase):
            assert not re.fullmatch(r".*_(pre_)?restore_\d{8}t\d{6}z", db.dbname)  # restores derive such names
        else:
            assert PurePosixPath(db.path).is_absolute() and ".." not in PurePosixPath(db.path).parts
        for name in db.restore_targets:
            target = target_for(db, name)  # never raises for a loaded configuration
            kept = safety_database(db.name, name)
            assert kept not in names and kept not in safety
            safety.add(kept)
            if isinstance(target, PostgresDatabase | MysqlDatabase):
                assert not re.fullmatch(r".*_(pre_)?restore_\d{8}t\d{6}z", target.dbname)
                assert target.dbname not in RESERVED_DATABASES[target.engine]
                key = (target.engine, target.host.lower(), target.port, kept_prefix(target))
                assert servers.setdefault(key, target.dbname) == target.dbname
            else:
                assert system_directory(target.path) is None
    again = Config.model_validate(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert again == config


def _assert_read_as_written(written: Any, loaded: Any) -> None:
    """No value changed kind on the way in: ``true`` did not become 1, nor ``4.0`` 4, nor ``"12"`` 12."""
    if isinstance(written, dict) and isinstance(loaded, dict):
        for key, value in written.items():
            if key in loaded and key != "budget":  # a size is a number of bytes or a text (10GiB, "5432")
                _assert_read_as_written(value, loaded[key])
    elif isinstance(written, list) and isinstance(loaded, list | tuple) and len(written) == len(loaded):
        for value, read in zip(written, loaded, strict=True):
            _assert_read_as_written(value, read)
    elif isinstance(written, bool):
        assert isinstance(loaded, bool), (written, loaded)
    elif isinstance(loaded, bool):
        assert isinstance(written, bool), (written, loaded)
    elif isinstance(written, float | str) and type(loaded) is int:
        assert isinstance(written, str) and not written.strip().lstrip("-").isdigit(), (written, loaded)


def _assert_one_sentence(error: ConfigError) -> None:
    message = str(error)
    assert message.startswith("backstop.yaml")
    assert "\n" not in message and "Traceback" not in message
    assert error.__cause__ is None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_a_generated_configuration_loads_and_works_or_is_refused_in_one_sentence(tree: dict[str, Any]) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
    try:
        config = parse_config(text)
    except ConfigError as error:
        _assert_one_sentence(error)
    else:
        _assert_works(config)
        _assert_read_as_written(tree, config.model_dump(mode="python"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}\n #'\"0123456789.&*!|>?%@`/,")), max_size=200))
def test_arbitrary_text_is_a_configuration_or_one_sentence(text: str) -> None:
    try:
        config = parse_config(text)
    except ConfigError as error:
        _assert_one_sentence(error)
    else:
        _assert_works(config)


def test_the_base_of_the_generated_configurations_is_itself_valid() -> None:
    # the mutations start from a configuration that loads, so each refusal comes from what was changed
    _assert_works(parse_config(yaml.safe_dump(BASE)))
