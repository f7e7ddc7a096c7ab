"""The runner image that `cdk deploy` ships, run as Lambda runs it: backups, a verification and restores.

`make image` builds functions/Dockerfile unchanged (image/build.sh). Here the stack is synthesized
as it would be deployed (not the emulator's variant), stood up on a loopback S3 emulator, and each
function runs in the image, through the image's own entry point (awslambdaric), as Lambda's
unprivileged user, with exactly the environment the template gives it plus the variables Lambda
adds; only ``AWS_ENDPOINT_URL`` (the emulator) is this test's. Invocations go through a Runtime API
served here, with the exact input each schedule's template gives. The sources are real: a SQLite
file on the function's EFS mount, the machine's PostgreSQL and MariaDB.

Skipped, with the reason, only where the image cannot be run (no podman, not root, no image built);
under `make test` (``BACKSTOP_IMAGE_TEST=required``) that is a failure instead.
"""

from __future__ import annotations

import os

# jsii reads this when aws_cdk is first imported (the synthesis below): Node 20 is what is here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml
from psycopg import sql

from backstop.config import parse_config
from local.emulator import ACCOUNT, REGION, Emulator, running
from local.stack import Deployed, stand_up
from local.system import Schedule, schedules_of
from tests.conftest import create_orders_db, table_rows
from tests.image.execution import LAMBDA_GID, LAMBDA_UID, ImageUnavailableError, MountedImage, function_process, mounted
from tests.image.runtime_api import Outcome, RuntimeApi

pytestmark = [pytest.mark.xdist_group("image"), pytest.mark.slow]

IMAGE = os.environ.get("BACKSTOP_IMAGE", "localhost/backstop-runner:local")
REQUIRED = os.environ.get("BACKSTOP_IMAGE_TEST") == "required"
BUCKET = "backstop-image-test"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
VPC = {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-0123456789abcdef0"]}
EFS = {"file_system_id": "fs-0123456789abcdef0", "access_point_id": "fsap-0123456789abcdef0", "mount_path": "/mnt/data"}
BACKUP = "backstop.handlers.backup.handler"
DRILL = "backstop.handlers.drill.handler"
SWEEP = "backstop.handlers.sweep.handler"


def unavailable(reason: str) -> None:
    """Skip with ``reason``; where `make test` requires this test, fail with it instead."""
    if REQUIRED:
        pytest.fail(f"The image test cannot run: {reason}. (BACKSTOP_IMAGE_TEST=required: make test must run it.)")
    pytest.skip(reason)


# -- the sources --------------------------------------------------------------------------------------


def pg_admin(dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(**PG, dbname=dbname, autocommit=True, connect_timeout=5)  # type: ignore[arg-type]


def my_admin(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(**MY, database=database, autocommit=True, connect_timeout=5)  # type: ignore[arg-type]


def pg_databases() -> set[str]:
    with pg_admin() as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def my_databases() -> set[str]:
    with my_admin() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return {row[0] for row in cur.fetchall()}


@dataclass
class Sources:
    """The three databases backed up: where they are, and the rows they hold."""

    efs: Path
    """Mounted at /mnt in the function: the access point's root is ``efs / "data"``."""
    sqlite_rows: dict[str, list[tuple[Any, ...]]]
    pg_dbname: str
    my_dbname: str
    my_user: str
    my_password: str
    pg_rows: int = 300
    my_rows: int = 250


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    try:
        pg_admin().close()
    except psycopg.Error as exc:
        unavailable(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    try:
        my_admin().close()
    except pymysql.MySQLError as exc:
        unavailable(f"no MariaDB at 127.0.0.1:3306 ({exc})")

    efs = tmp_path_factory.mktemp("efs")
    efs.chmod(0o755)  # /mnt in the function
    (efs / "data").mkdir()
    shop = create_orders_db(efs / "data" / "shop.db")
    # The access point's POSIX user is the function's: SQLite's backup API writes the -shm file in WAL mode.
    for path in [efs / "data", *(efs / "data").iterdir()]:
        os.chown(path, LAMBDA_UID, LAMBDA_GID)

    suffix = uuid.uuid4().hex[:10]
    pg_dbname, my_dbname = f"backstop_image_{suffix}", f"backstop_image_{suffix}"
    my_user, my_password = f"bsimg_{suffix}", f"pw-{uuid.uuid4().hex}"
    with pg_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg_dbname)))
    with pg_admin(pg_dbname) as conn:
        conn.execute(
            "CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL, balance_cents bigint NOT NULL);"
            "CREATE TABLE entries (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts(id),"
            " amount_cents bigint NOT NULL, memo jsonb);"
            "CREATE VIEW balances AS SELECT account_id, sum(amount_cents) AS total FROM entries GROUP BY account_id;"
        )
        conn.execute(
            "INSERT INTO accounts (owner, balance_cents) SELECT 'owner ' || i, i * 100 FROM generate_series(1, 30) i"
        )
        conn.execute(
            "INSERT INTO entries (account_id, amount_cents, memo) "
            "SELECT 1 + i % 30, i, jsonb_build_object('n', i) FROM generate_series(1, 300) i"
        )
    with my_admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{my_dbname}`")
        cur.execute(
            f"CREATE TABLE `{my_dbname}`.customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(60) NOT NULL) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.executemany(f"INSERT INTO `{my_dbname}`.customers (name) VALUES (%s)", [(f"c {i} é",) for i in range(250)])
        for host in ("%", "localhost"):
            cur.execute(f"CREATE USER '{my_user}'@'{host}' IDENTIFIED BY '{my_password}'")
            cur.execute(
                f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{my_dbname}`.* TO '{my_user}'@'{host}'"
            )
    try:
        yield Sources(efs, table_rows(shop), pg_dbname, my_dbname, my_user, my_password)
    finally:
        with pg_admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(pg_dbname)))
        with my_admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{my_dbname}`")
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{my_user}'@'{host}'")


# -- the deployment --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedFunction:
    """One function of the template, resolved against the emulator: what Lambda would run."""

    name: str
    arn: str
    command: tuple[str, ...]
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    mount_path: str | None

    @property
    def database(self) -> str | None:
        raw = self.environment.get("BACKSTOP_DATABASE")
        return str(json.loads(raw)["name"]) if raw else None


@dataclass
class Deployment:
    """The stack stood up on the emulator, its functions run in the image on demand (each kept warm)."""

    image: MountedImage
    emulator: Emulator
    functions: list[DeployedFunction]
    schedules: tuple[Schedule, ...]
    sources: Sources
    workspace: Path
    _running: dict[str, tuple[RuntimeApi, subprocess.Popen[bytes]]] = field(default_factory=dict)
    _stack: list[Any] = field(default_factory=list)

    def function(self, command: str, database: str | None = None) -> DeployedFunction:
        (found,) = [f for f in self.functions if f.command == (command,) and f.database == database]
        return found

    def log(self, fn: DeployedFunction) -> str:
        path = self.workspace / f"{fn.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def invoke(self, fn: DeployedFunction, event: Any) -> Outcome:
        """Invoke ``fn`` synchronously, starting its execution environment on first use."""
        if fn.name not in self._running:
            self._running[fn.name] = self._start(fn)
        api, process = self._running[fn.name]
        try:
            return api.invoke(event, alive=process)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{fn.name}: {exc}\n--- its log ---\n{self.log(fn)[-4000:]}") from None

    def scheduled(self, fn: DeployedFunction, at: datetime) -> dict[str, Any]:
        """The input the template's schedule for ``fn`` sends at ``at``."""
        (schedule,) = [s for s in self.schedules if s.function == fn.name]
        return schedule.payload(at)

    def _start(self, fn: DeployedFunction) -> tuple[RuntimeApi, subprocess.Popen[bytes]]:
        api = RuntimeApi(fn.arn, fn.timeout_s)
        api.__enter__()
        self._stack.append(api)
        tmp = self.workspace / f"{fn.name}-tmp"
        tmp.mkdir()
        # What Lambda sets (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html), then the
        # function's own variables, then the one this test adds: where AWS is.
        env = {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/01/01/[$LATEST]{uuid.uuid4().hex}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.emulator.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self.emulator.env["AWS_SECRET_ACCESS_KEY"],
            "AWS_SESSION_TOKEN": "session-token",
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "TZ": ":UTC",
            "_HANDLER": fn.command[0],
            **fn.environment,
            "AWS_ENDPOINT_URL": self.emulator.endpoint,
        }
        process_context = function_process(
            self.image,
            command=fn.command,
            env=env,
            tmp=tmp,
            efs=self.sources.efs if fn.mount_path else None,
            log=self.workspace / f"{fn.name}.log",
        )
        process = process_context.__enter__()
        self._stack.append(process_context)
        return api, process

    def close(self) -> None:
        for item in reversed(self._stack):
            item.__exit__(None, None, None)


def deployed_functions(template: dict[str, Any], deployed: Deployed) -> list[DeployedFunction]:
    found = []
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = deployed.resolve(resource["Properties"])
        mounts = props.get("FileSystemConfigs") or []
        found.append(
            DeployedFunction(
                name=deployed.refs[logical],
                arn=deployed.attributes[logical]["Arn"],
                command=tuple(props["ImageConfig"]["Command"]),
                environment={k: str(v) for k, v in props["Environment"]["Variables"].items()},
                memory_mb=int(props["MemorySize"]),
                timeout_s=int(props["Timeout"]),
                mount_path=mounts[0]["LocalMountPath"] if mounts else None,
            )
        )
    return found


def synthesize_for_aws(config_text: str) -> dict[str, Any]:
    """The template `cdk deploy` would deploy for this configuration (the deployable variant, not the emulator's)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.stack import BackstopStack

    stack = BackstopStack(App(), "Backstop", config=parse_config(config_text))
    return dict(Template.from_stack(stack).to_json())


@pytest.fixture(scope="module")
def image() -> Iterator[MountedImage]:
    try:
        with mounted(IMAGE) as image:
            yield image
    except ImageUnavailableError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def deployment(image: MountedImage, sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with running() as emulator:
        secrets = emulator.client("secretsmanager")
        pg_secret = secrets.create_secret(Name="backstop/ledger", SecretString="unused-under-trust")["ARN"]
        my_secret = secrets.create_secret(
            Name="backstop/orders", SecretString=json.dumps({"password": sources.my_password})
        )["ARN"]
        config = {
            "bucket": BUCKET,
            "databases": [
                {"name": "shop", "engine": "sqlite", "path": "/mnt/data/shop.db", "efs": EFS, "vpc": VPC},
                {
                    "name": "ledger",
                    "engine": "postgres",
                    "host": "127.0.0.1",
                    "dbname": sources.pg_dbname,
                    "user": "postgres",
                    "password_secret": pg_secret,
                    "vpc": VPC,
                    # The same server under another name: a uniquely named scratch database, always dropped.
                    "drill": {"server": {"host": "localhost", "user": "postgres"}},
                },
                {
                    "name": "orders",
                    "engine": "mysql",
                    "host": "127.0.0.1",
                    "dbname": sources.my_dbname,
                    "user": sources.my_user,
                    "password_secret": my_secret,
                    "vpc": VPC,
                    "drill": {"server": {"host": "localhost", "user": "root"}},
                },
            ],
        }
        template = synthesize_for_aws(yaml.safe_dump(config))
        deployed = stand_up(emulator, template)
        deployment = Deployment(
            image=image,
            emulator=emulator,
            functions=deployed_functions(template, deployed),
            schedules=schedules_of(template, deployed),
            sources=sources,
            workspace=tmp_path_factory.mktemp("functions"),
        )
        try:
            yield deployment
        finally:
            deployment.close()


@dataclass(frozen=True)
class Backups:
    at: datetime
    outcomes: dict[str, Outcome]
    manifests: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def backups(deployment: Deployment) -> Backups:
    """Each database's scheduled backup, run once in the image at the current minute."""
    at = datetime.now(UTC).replace(second=0, microsecond=0)
    outcomes = {}
    for database in ("shop", "ledger", "orders"):
        fn = deployment.function(BACKUP, database)
        outcomes[database] = deployment.invoke(fn, deployment.scheduled(fn, at))
    s3 = deployment.emulator.client("s3")
    manifests = {}
    for database, outcome in outcomes.items():
        assert not outcome.failed, f"{database}: {outcome.payload.get('errorMessage')}"
        key = re.sub(r"\.[^/]+$", ".manifest.json", outcome.payload["key"])  # the manifest beside the artifact
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"backups/{database}/")["Contents"]
        (manifest_key,) = [o["Key"] for o in listed if o["Key"].endswith(".manifest.json")]
        assert manifest_key.startswith(key.rsplit("/", 1)[0])
        manifests[database] = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    return Backups(at, outcomes, manifests)


# -- the tests ----------------------------------------------------------------------------------------


def test_scheduled_backups_run_in_the_image_and_store_each_database(deployment: Deployment, backups: Backups) -> None:
    # given the three backup functions, run in the image from their schedules' input (the backups fixture)
    s3 = deployment.emulator.client("s3")

    # then each committed a backup whose object is in the vault, as big as the function said
    for database, outcome in backups.outcomes.items():
        assert outcome.payload["created"] is True, database
        head = s3.head_object(Bucket=BUCKET, Key=outcome.payload["key"])
        assert head["ContentLength"] == outcome.payload["size"] > 0
        assert backups.manifests[database]["database"] == database
        assert backups.manifests[database]["trigger"]["by"] == deployment.function(BACKUP, database).arn

    # and each manifest counted the rows the source holds
    tables = {db: {name: t["rows"] for name, t in m["tables"].items()} for db, m in backups.manifests.items()}
    assert tables["shop"]["orders"] == len(deployment.sources.sqlite_rows["orders"])
    assert tables["ledger"]["public.entries"] == deployment.sources.pg_rows
    assert tables["orders"]["customers"] == deployment.sources.my_rows


def test_manifests_and_backstop_version_record_the_tools_the_image_carries(
    image: MountedImage, backups: Backups
) -> None:
    # given the versions the image's own tools report
    pg_dump = re.search(r"\(PostgreSQL\) (\d+)\.(\d+)", image.run("pg_dump", "--version").stdout)
    mariadb_dump = re.search(r" from (\S+-MariaDB)", image.run("mariadb-dump", "--version").stdout)
    sqlite = image.run("python3", "-c", "import sqlite3; print(sqlite3.sqlite_version)").stdout.strip()
    assert pg_dump is not None and mariadb_dump is not None and sqlite

    # when `backstop --version` runs in the image
    report = image.run("python3", "-c", "from backstop.cli import main; main()", "--version")

    # then it names each tool the engines run, with its version
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("backstop 0.1.0 (Python 3.13.")
    lines = dict(line.split(": ", 1) for line in report.stdout.splitlines()[1:])
    assert set(lines) == {"pg_dump", "pg_restore", "psql", "mariadb-dump", "mariadb"}
    assert f"(PostgreSQL) {pg_dump.group(1)}.{pg_dump.group(2)}" in lines["pg_dump"]
    assert f" from {mariadb_dump.group(1)}" in lines["mariadb-dump"]

    # and every manifest records the version of the tool that made its backup: the image's
    assert pg_dump.group(1) == "17"  # the Dockerfile's PG_MAJOR
    assert backups.manifests["ledger"]["tools"]["pg_dump"] == f"{pg_dump.group(1)}.{pg_dump.group(2)}"
    assert backups.manifests["orders"]["tools"]["mariadb-dump"] == lines["mariadb-dump"]
    assert backups.manifests["shop"]["tools"]["sqlite"] == sqlite


def test_a_second_delivery_to_the_warm_function_finds_the_committed_backup(
    deployment: Deployment, backups: Backups
) -> None:
    # given the shop's backup committed by its function, whose execution environment is still running
    fn = deployment.function(BACKUP, "shop")

    # when Scheduler delivers the same schedule's input again
    outcome = deployment.invoke(fn, deployment.scheduled(fn, backups.at))

    # then the same process answers, and it takes no second backup
    assert not outcome.failed, outcome.payload
    assert outcome.payload["created"] is False
    assert outcome.payload["key"] == backups.outcomes["shop"].payload["key"]


def test_the_verification_sweep_in_the_image_rereads_every_backup_and_finds_it_intact(
    deployment: Deployment, backups: Backups
) -> None:
    # given the three backups
    fn = deployment.function(SWEEP)

    # when the sweep function runs with its schedule's input
    outcome = deployment.invoke(fn, deployment.scheduled(fn, datetime.now(UTC)))

    # then it re-read all three and found each as its manifest describes it
    assert not outcome.failed, (outcome.payload, deployment.log(fn)[-3000:])
    report = outcome.payload
    swept = {b["database"]: b["verdict"] for b in report["backups"]}
    assert report["checked"] == 3
    assert report["corrupt"] == report["unreadable"] == report["overwritten"] == []
    assert set(swept) == {"shop", "ledger", "orders"}
    assert report["bytes_read"] == sum(m["object"]["size"] for m in backups.manifests.values())


@pytest.mark.parametrize("database", ["shop", "ledger", "orders"])
def test_the_drill_in_the_image_restores_the_backup_and_validates_it(
    deployment: Deployment, backups: Backups, database: str
) -> None:
    # given the database's backup
    fn = deployment.function(DRILL, database)

    # when its drill function runs with its schedule's input: a real restore with the image's tools
    outcome = deployment.invoke(fn, deployment.scheduled(fn, datetime.now(UTC)))

    # then the restore of that backup passed its validation
    assert not outcome.failed, (outcome.payload, deployment.log(fn)[-3000:])
    result = outcome.payload
    assert result["backup_id"] == backups.manifests[database]["backup_id"]
    # ledger is PostgreSQL: the image's pg_restore 17 into this machine's older server goes through psql
    assert result["passed"] is True, result["detail"]
    # and the scratch database or directory it restored into is gone again
    assert result["scratch"]
    assert result["scratch"] not in pg_databases() | my_databases()


def test_an_event_for_another_database_comes_back_through_the_runtime_api_as_its_error(
    deployment: Deployment, backups: Backups
) -> None:
    # given the shop's backup function
    fn = deployment.function(BACKUP, "shop")

    # when it is sent the ledger's schedule input
    outcome = deployment.invoke(fn, {"database": {"name": "ledger"}, "scheduled_time": backups.at.isoformat()})

    # then the runtime client reports the handler's error by its class name (what Step Functions and alerts see)
    assert outcome.error_type == "EventRefusedError"
    assert "serves shop only" in outcome.payload["errorMessage"]
    assert ACCOUNT in fn.arn
