"""The vault bucket, its key and its access-log bucket in the synthesized template of the example config."""

from __future__ import annotations

import pytest

from tests.infra import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

# Logical IDs are derived from construct IDs: if one changes, CloudFormation replaces the resource,
# and a replaced vault bucket or key means every backup is gone. Change these only with a migration.
VAULT_BUCKET = "VaultBucket0925C477"
VAULT_KEY = "VaultKeyCB88EF1A"
ACCESS_LOGS = "VaultAccessLogsC5E11DDC"


def test_construct_ids_keep_the_vault_in_place(example: Synthesized) -> None:
    assert example.resources[VAULT_BUCKET]["Type"] == "AWS::S3::Bucket"
    assert example.resources[VAULT_KEY]["Type"] == "AWS::KMS::Key"
    assert example.resources[ACCESS_LOGS]["Type"] == "AWS::S3::Bucket"
    example.template.resource_count_is("AWS::S3::Bucket", 2)
    example.template.resource_count_is("AWS::KMS::Key", 3)  # the vault's, the alerts topic's, the approval HMAC key


def test_vault_bucket_has_the_configured_name_and_keeps_versions(example: Synthesized) -> None:
    props = example.properties(VAULT_BUCKET)

    assert props["BucketName"] == "backstop-example-backups"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_vault_bucket_encrypts_with_its_own_key_and_a_bucket_key(example: Synthesized) -> None:
    (rule,) = example.properties(VAULT_BUCKET)["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [VAULT_KEY, "Arn"]},
    }
    assert rule["BucketKeyEnabled"] is True
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}


def test_key_is_customer_managed_and_rotates(example: Synthesized) -> None:
    example.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    assert "KeySpec" not in example.properties(VAULT_KEY)  # symmetric: the only kind S3 SSE-KMS accepts


@pytest.mark.parametrize("bucket_id", [VAULT_BUCKET, ACCESS_LOGS])
def test_buckets_block_public_access_and_acls(example: Synthesized, bucket_id: str) -> None:
    props = example.properties(bucket_id)

    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "AccessControl" not in props


@pytest.mark.parametrize("bucket_id", [VAULT_BUCKET, ACCESS_LOGS])
def test_buckets_refuse_requests_without_tls_1_2(example: Synthesized, bucket_id: str) -> None:
    denials = [s for s in example.bucket_policy(bucket_id) if s["Effect"] == "Deny"]
    resources = [
        {"Fn::GetAtt": [bucket_id, "Arn"]},
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]},
    ]

    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": resources,
    } in denials
    assert {
        "Action": "s3:*",
        "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": resources,
    } in denials


def test_vault_access_is_logged_to_the_separate_log_bucket(example: Synthesized) -> None:
    assert example.properties(VAULT_BUCKET)["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": ACCESS_LOGS},
        "LogFilePrefix": "vault/",
    }


def test_log_bucket_accepts_only_s3_log_delivery_for_the_vault(example: Synthesized) -> None:
    allows = [s for s in example.bucket_policy(ACCESS_LOGS) if s["Effect"] == "Allow"]

    assert allows == [
        {
            "Action": "s3:PutObject",
            "Condition": {
                "ArnLike": {"aws:SourceArn": {"Fn::GetAtt": [VAULT_BUCKET, "Arn"]}},
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            },
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [ACCESS_LOGS, "Arn"]}, "/vault/*"]]},
        }
    ]


def test_log_bucket_is_encrypted_and_expires_its_logs(example: Synthesized) -> None:
    props = example.properties(ACCESS_LOGS)

    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["LifecycleConfiguration"]["Rules"] == [
        {
            "Id": "expire-access-logs",
            "Status": "Enabled",
            "ExpirationInDays": 365,
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]


STATEFUL = ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup")


@pytest.mark.parametrize("logical_id", [VAULT_BUCKET, VAULT_KEY, ACCESS_LOGS])
def test_buckets_and_key_outlive_the_stack_but_not_a_failed_first_create(example: Synthesized, logical_id: str) -> None:
    resource = example.resources[logical_id]

    # A first create that rolls back deletes the (empty) bucket, so the retry does not fail on its fixed name.
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_every_stateful_resource_is_kept_on_update_and_delete_and_dropped_on_a_failed_create(
    example: Synthesized,
) -> None:
    # The approval key signs grants that live hours; it protects no stored data and has a deletion window.
    stateful = {
        k: r for k, r in example.resources.items() if r["Type"] in STATEFUL and not k.startswith("RestoreApprovalKey")
    }

    assert {r["Type"] for r in stateful.values()} == set(STATEFUL)
    assert {k: (r.get("DeletionPolicy"), r.get("UpdateReplacePolicy")) for k, r in stateful.items()} == dict.fromkeys(
        stateful, ("RetainExceptOnCreate", "Retain")
    )


def test_outputs_name_the_bucket_and_the_key(example: Synthesized) -> None:
    example.template.has_output("BucketName", {"Value": {"Ref": VAULT_BUCKET}})
    example.template.has_output("KeyArn", {"Value": {"Fn::GetAtt": [VAULT_KEY, "Arn"]}})
