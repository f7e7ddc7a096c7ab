"""The second copy (``storage.replica``): the replica's stack, the vault's replication rule, who may do what.

The replica is synthesized as ``cdk synth`` does (``app.build``), in another account and region than the
vault. Its bucket policy is played against requests with the evaluator in tests/infra (as test_vault_history
plays the vault's), extended with Allow statements (a principal of another account needs one), since neither
moto nor anything local evaluates cross-account policies.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from backstop.config import parse_config
from infra.backup_vault import GUARDED_ACTIONS, ObjectLockConflictError, vault_lifecycle_rules
from infra.replica import ReplicaStack
from tests.infra import (
    KNOWN_OPERATORS,
    SERVERS_CONFIG,
    Request,
    Synthesized,
    applies,
    aws_solutions_findings,
    cfn_lint,
    enforces_tls,
    flatten,
    listed,
    synthesize_text,
)

pytestmark = pytest.mark.xdist_group("infra")

VAULT_ACCOUNT = "123456789012"
REPLICA_ACCOUNT = "222222222222"
REPLICA_REGION = "eu-central-1"
REPLICA_BUCKET = "backstop-servers-replica"
REPLICA_ADMIN = f"arn:aws:iam::{REPLICA_ACCOUNT}:role/replica-admin"
REPLICA = (
    f"  replica: {{bucket: {REPLICA_BUCKET}, region: {REPLICA_REGION}, account: '{REPLICA_ACCOUNT}', "
    f"vault_account: '{VAULT_ACCOUNT}', allowed_lag: 2h, administrators: [{REPLICA_ADMIN}]}}\n"
)
REPLICA_CONFIG = SERVERS_CONFIG.replace("storage:\n", "storage:\n" + REPLICA, 1)
SAME_ACCOUNT_CONFIG = SERVERS_CONFIG.replace(
    "storage:\n", f"storage:\n  replica: {{bucket: {REPLICA_BUCKET}, region: {REPLICA_REGION}}}\n", 1
)

VAULT = f"arn:<AWS::Partition>:iam::{VAULT_ACCOUNT}"
REPLICATION_ROLE = f"{VAULT}:role/backstop-replica/Backstop/replication/VaultReplicationRoleF6150E33-AbC"
FRESHNESS_ROLE = f"{VAULT}:role/backstop-replica/Backstop/readers/MonitoringFreshnessRole-XyZ"
BACKUP_ROLE = f"{VAULT}:role/backstop/Backstop/BackupBillingRole"
VAULT_ADMIN = f"{VAULT}:role/vault-admin"
REPLICA_READER = f"arn:<AWS::Partition>:iam::{REPLICA_ACCOUNT}:role/oncall"
REPLICA_DEPLOY = f"arn:<AWS::Partition>:iam::<AWS::AccountId>:role/cdk-hnb659fds-cfn-exec-role-{REPLICA_ACCOUNT}-x"
ALIAS = "alias/backstop/Backstop-replica"
REPLICA_BUCKET_ARN = "<Bucket83908E77.Arn>"
ARTIFACT = "db/billing/2026/11/21/billing-20261121T030000Z.0a1b2c3d.pgdump.zst"
MANIFEST = "db/billing/2026/11/21/billing-20261121T030000Z.manifest.json"


@cache
def synthesized_with_replica(text: str, outdir: Path) -> tuple[Synthesized, Template, Stack]:
    vault = synthesize_text(text, outdir)
    replica = vault.app.node.find_child("BackstopReplica")
    assert isinstance(replica, ReplicaStack)
    return vault, Template.from_stack(replica), replica


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthesized, Template, Stack]:
    return synthesized_with_replica(REPLICA_CONFIG, tmp_path_factory.getbasetemp() / "replica")


@pytest.fixture(scope="module")
def vault(both: tuple[Synthesized, Template, Stack]) -> Synthesized:
    return both[0]


@pytest.fixture(scope="module")
def replica(both: tuple[Synthesized, Template, Stack]) -> dict[str, Any]:
    resources: dict[str, Any] = both[1].to_json()["Resources"]
    return resources


def one(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (found,) = [r for r in resources.values() if r["Type"] == resource_type]
    return found


def replica_bucket(replica: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = [r for r in replica.values() if r["Type"] == "AWS::S3::Bucket" and "BucketName" in r["Properties"]]
    return bucket


def replication(vault: Synthesized) -> dict[str, Any]:
    rules: dict[str, Any] = flatten(
        vault.one("AWS::S3::Bucket", "VaultBucket")[1]["Properties"]["ReplicationConfiguration"]
    )
    return rules


# -- the replica's stack ----------------------------------------------------------------------------


def test_the_replica_lives_in_its_own_account_and_region_and_is_deployed_first(
    both: tuple[Synthesized, Template, Stack],
) -> None:
    vault, _, stack = both
    assert (stack.account, stack.region) == (REPLICA_ACCOUNT, REPLICA_REGION)
    assert stack in vault.stack.dependencies


def test_the_replica_bucket_is_versioned_and_encrypted_with_its_own_rotating_key(replica: dict[str, Any]) -> None:
    bucket = replica_bucket(replica)["Properties"]
    (key_id,) = [k for k, r in replica.items() if r["Type"] == "AWS::KMS::Key"]

    assert bucket["BucketName"] == REPLICA_BUCKET
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert replica[key_id]["Properties"]["EnableKeyRotation"] is True
    assert replica[key_id]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert replica_bucket(replica)["DeletionPolicy"] == "RetainExceptOnCreate"
    alias = one(replica, "AWS::KMS::Alias")["Properties"]
    assert alias == {"AliasName": "alias/backstop/Backstop-replica", "TargetKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}


def test_the_replica_keeps_what_the_vault_keeps(vault: Synthesized, replica: dict[str, Any]) -> None:
    _, vault_bucket = vault.one("AWS::S3::Bucket", "VaultBucket")

    replica_rules = replica_bucket(replica)["Properties"]["LifecycleConfiguration"]["Rules"]
    assert replica_rules == vault_bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    config = parse_config(REPLICA_CONFIG)
    assert len(replica_rules) == len(vault_lifecycle_rules(config))
    assert {"billing-yearly", "shop-daily", "backstop-housekeeping"} <= {rule["Id"] for rule in replica_rules}


def test_the_replica_locks_every_version_as_long_as_lifecycle_keeps_the_shortest_lived(
    replica: dict[str, Any],
) -> None:
    lock = replica_bucket(replica)["Properties"]["ObjectLockConfiguration"]
    config = parse_config(REPLICA_CONFIG)
    shortest = min(db.retention.daily for db in config.databases) + config.storage.noncurrent_days

    assert replica_bucket(replica)["Properties"]["ObjectLockEnabled"] is True
    assert lock == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 37}}}
    assert shortest == 37


def test_synth_refuses_a_replica_lock_that_outlives_its_lifecycle(tmp_path: Path) -> None:
    config = REPLICA_CONFIG.replace("allowed_lag: 2h,", "allowed_lag: 2h, object_lock: {days: 38},")
    with pytest.raises(ObjectLockConflictError, match=r"storage.replica.object_lock.days \(38\) is longer than the 37"):
        synthesized_with_replica(config, tmp_path)


# -- the vault's replication rule ----------------------------------------------------------------------


def test_the_vault_replicates_its_history_into_the_replica_with_the_replica_key_and_never_a_delete(
    vault: Synthesized,
) -> None:
    config = replication(vault)
    (rule,) = config["Rules"]

    assert config["Role"].startswith("<VaultReplicationRole")
    assert (rule["Status"], rule["Filter"], rule["Id"]) == ("Enabled", {"Prefix": "db/"}, "backstop-replica")
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    assert rule["Destination"] == {
        "Bucket": f"arn:<AWS::Partition>:s3:::{REPLICA_BUCKET}",
        "Account": REPLICA_ACCOUNT,
        "AccessControlTranslation": {"Owner": "Destination"},
        "EncryptionConfiguration": {
            "ReplicaKmsKeyID": f"arn:<AWS::Partition>:kms:{REPLICA_REGION}:{REPLICA_ACCOUNT}:{ALIAS}"
        },
        "Metrics": {"Status": "Enabled"},
    }


def test_the_replication_role_reads_the_vault_and_only_adds_versions_to_the_replica(vault: Synthesized) -> None:
    role_id, role = vault.one("AWS::IAM::Role", "VaultReplicationRole")
    statements = {s.get("Sid"): s for s in vault.statements_of_role(role_id)}

    assert role["Properties"]["Path"] == "/backstop-replica/Backstop/replication/"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "s3.amazonaws.com"}
    actions = {a for s in statements.values() for a in listed(s["Action"])}
    assert not {a for a in actions if "Delete" in a or a in GUARDED_ACTIONS}
    assert statements["ReplicateIntoTheReplica"]["Action"] == [
        "s3:ReplicateObject",
        "s3:ReplicateTags",
        "s3:ObjectOwnerOverrideToBucketOwner",
    ]
    assert statements["ReplicateIntoTheReplica"]["Resource"] == f"arn:<AWS::Partition>:s3:::{REPLICA_BUCKET}/db/*"
    encrypt = statements["EncryptReplicasWithTheReplicaKey"]
    assert encrypt["Resource"] == f"arn:<AWS::Partition>:kms:{REPLICA_REGION}:{REPLICA_ACCOUNT}:key/*"
    assert encrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REPLICA_REGION}.amazonaws.com"},
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/backstop/Backstop-replica"]},
    }
    assert statements["DecryptWhatIsReplicated"]["Action"] == "kms:Decrypt"


def test_a_same_account_replica_needs_no_ownership_override(tmp_path: Path) -> None:
    vault, _, stack = synthesized_with_replica(SAME_ACCOUNT_CONFIG, tmp_path)
    (rule,) = replication(vault)["Rules"]
    role_id, _ = vault.one("AWS::IAM::Role", "VaultReplicationRole")

    assert "Account" not in rule["Destination"] and "AccessControlTranslation" not in rule["Destination"]
    assert rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == (
        f"arn:<AWS::Partition>:kms:{REPLICA_REGION}:<AWS::AccountId>:alias/backstop/Backstop-replica"
    )
    assert all(
        "s3:ObjectOwnerOverrideToBucketOwner" not in listed(s["Action"]) for s in vault.statements_of_role(role_id)
    )
    assert stack.region == REPLICA_REGION


# -- the replica's bucket policy, played ---------------------------------------------------------------


def replica_policy(replica: dict[str, Any]) -> list[dict[str, Any]]:
    (policy,) = [
        p
        for p in replica.values()
        if p["Type"] == "AWS::S3::BucketPolicy"
        and "Bucket" in str(p["Properties"]["Bucket"])
        and "AccessLogs" not in str(p["Properties"]["Bucket"])
    ]
    return [flatten(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def _principal(statement: dict[str, Any], request: Request) -> bool:
    principal = statement["Principal"]
    if principal == {"AWS": "*"} or principal == "*":
        return True
    accounts = [p.removesuffix(":root") for p in listed(principal["AWS"])]
    return any(request.principal.startswith(account + ":") for account in accounts)


def decide(replica: dict[str, Any], request: Request) -> str:
    """``deny`` (a Deny applies), ``allow`` (an Allow names the principal), or ``identity`` (the principal's own
    account must allow it: for another account's principal, that is a refusal)."""
    statements = [s for s in replica_policy(replica) if not enforces_tls(s)]
    if any(s["Effect"] == "Deny" and applies(s, request, REPLICA_BUCKET_ARN) for s in statements):
        return "deny"
    if any(
        s["Effect"] == "Allow" and _principal(s, request) and applies(s, request, REPLICA_BUCKET_ARN)
        for s in statements
    ):
        return "allow"
    return "identity"


@pytest.mark.parametrize("action", ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"])
def test_only_the_vaults_replication_role_replicates_into_the_replica(replica: dict[str, Any], action: str) -> None:
    assert decide(replica, Request(REPLICATION_ROLE, action, ARTIFACT)) == "allow"
    # another role of the vault's account, even an administrator or a backup role, gets nothing
    for principal in (BACKUP_ROLE, VAULT_ADMIN, FRESHNESS_ROLE):
        assert decide(replica, Request(principal, action, ARTIFACT)) in ("deny", "identity"), principal
    if action != "s3:ObjectOwnerOverrideToBucketOwner":
        # nor a principal of the replica's own account, whatever its own policy says
        assert decide(replica, Request(REPLICA_READER, action, ARTIFACT)) == "deny"


def test_no_delete_is_ever_replicated(replica: dict[str, Any]) -> None:
    assert decide(replica, Request(REPLICATION_ROLE, "s3:ReplicateDelete", ARTIFACT)) == "deny"


@pytest.mark.parametrize("action", GUARDED_ACTIONS)
@pytest.mark.parametrize("key", [ARTIFACT, MANIFEST])
def test_nobody_but_the_replicas_administrators_rewrites_deletes_or_unlocks_a_replica(
    replica: dict[str, Any], action: str, key: str
) -> None:
    for principal in (REPLICATION_ROLE, VAULT_ADMIN, REPLICA_READER, REPLICA_DEPLOY):
        assert decide(replica, Request(principal, action, key)) == "deny", principal
    assert decide(replica, Request(REPLICA_ADMIN, action, key)) != "deny"


@pytest.mark.parametrize("action", ["s3:PutLifecycleConfiguration", "s3:PutBucketPolicy", "s3:PutBucketVersioning"])
def test_only_the_replicas_administrators_and_its_deploy_role_configure_it(
    replica: dict[str, Any], action: str
) -> None:
    for principal in (REPLICATION_ROLE, VAULT_ADMIN, REPLICA_READER):
        assert decide(replica, Request(principal, action)) == "deny", principal
    assert decide(replica, Request(REPLICA_DEPLOY, action)) != "deny"


def test_the_vaults_freshness_check_reads_the_replicas_manifests_and_nothing_else(replica: dict[str, Any]) -> None:
    assert decide(replica, Request(FRESHNESS_ROLE, "s3:GetObject", MANIFEST)) == "allow"
    assert decide(replica, Request(FRESHNESS_ROLE, "s3:ListBucket", None, {"s3:prefix": "db/billing/"})) == "allow"
    # an artifact, or any other role of the vault's account, is not readable from the vault's account
    assert decide(replica, Request(FRESHNESS_ROLE, "s3:GetObject", ARTIFACT)) == "identity"
    assert decide(replica, Request(BACKUP_ROLE, "s3:GetObject", MANIFEST)) == "identity"


def test_the_replica_key_lets_the_vault_encrypt_replicas_and_its_check_decrypt_manifests(
    replica: dict[str, Any],
) -> None:
    key = one(replica, "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    statements = {s.get("Sid"): flatten(s) for s in key}

    replicate = statements["TheVaultReplicatesIntoTheReplica"]
    assert replicate["Principal"] == {"AWS": f"arn:<AWS::Partition>:iam::{VAULT_ACCOUNT}:root"}
    assert replicate["Action"] == ["kms:Encrypt", "kms:GenerateDataKey"]
    assert replicate["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": f"{VAULT}:role/backstop-replica/Backstop/replication/*"
    }
    check = statements["TheVaultChecksTheReplica"]
    assert check["Action"] == "kms:Decrypt"
    assert check["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REPLICA_REGION}.amazonaws.com"},
        "ArnLike": {"aws:PrincipalArn": f"{VAULT}:role/backstop-replica/Backstop/readers/*"},
    }


# -- freshness covers the replica ----------------------------------------------------------------------


def test_the_freshness_check_is_told_where_the_replica_is_and_may_read_its_manifests(vault: Synthesized) -> None:
    environment = vault.environment("MonitoringFreshness")
    role_id, role = vault.one("AWS::IAM::Role", "MonitoringFreshnessRole")
    statements = {s.get("Sid"): s for s in vault.statements_of_role(role_id)}

    assert json.loads(environment["BACKSTOP_REPLICA"]) == {
        "bucket": REPLICA_BUCKET,
        "region": REPLICA_REGION,
        "allowed_lag": "2h",
    }
    assert role["Properties"]["Path"] == "/backstop-replica/Backstop/readers/"
    assert statements["ReadReplicaManifests"]["Action"] == "s3:GetObject"
    assert statements["ReadReplicaManifests"]["Resource"] == [
        f"arn:<AWS::Partition>:s3:::{REPLICA_BUCKET}/db/{db}/*.manifest.json" for db in ("billing", "shop")
    ]
    assert statements["UseReplicaKeyThroughS3"]["Action"] == "kms:Decrypt"


def test_each_database_alarms_when_its_replica_trails_and_replication_failures_alarm(vault: Synthesized) -> None:
    alarms = {name: flatten(alarm) for name, alarm in vault.alarms().items()}

    billing = alarms["billing-replica-stale"]
    assert (billing["MetricName"], billing["Namespace"]) == ("ReplicaBackupAgeSeconds", "Backstop")
    assert billing["Threshold"] == (2 * 24 + 2) * 3600  # stale_after 2d + allowed_lag 2h
    assert billing["TreatMissingData"] == "breaching"
    assert alarms["shop-replica-stale"]["Threshold"] == (26 + 2) * 3600
    failed = alarms["replication-failed"]
    assert (failed["Namespace"], failed["MetricName"], failed["Statistic"]) == (
        "AWS/S3",
        "OperationsFailedReplication",
        "Sum",
    )
    assert {d["Name"]: d["Value"] for d in failed["Dimensions"]} == {
        "SourceBucket": "backstop-servers",
        "DestinationBucket": REPLICA_BUCKET,
        "RuleId": "backstop-replica",
    }


# -- compliance ---------------------------------------------------------------------------------------


def test_both_stacks_pass_aws_solutions_checks(both: tuple[Synthesized, Template, Stack]) -> None:
    vault, _, stack = both
    for scope in (vault.stack, stack):
        assert aws_solutions_findings(scope) == [], scope.stack_name


def test_both_templates_pass_cfn_lint(both: tuple[Synthesized, Template, Stack], tmp_path: Path) -> None:
    vault, replica, _ = both

    result = cfn_lint(tmp_path, Backstop=vault.template, BackstopReplica=replica)

    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def test_the_evaluator_knows_every_condition_operator_the_replica_policy_uses(replica: dict[str, Any]) -> None:
    for statement in replica_policy(replica):
        if not enforces_tls(statement):
            assert set(statement.get("Condition", {})) <= KNOWN_OPERATORS, statement.get("Sid")
