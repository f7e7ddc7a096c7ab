"""The Backups contract: artifacts uploaded whole or not at all, manifests written once and last, read back bound
to their place, listed newest first.

Every test runs against ``FakeBackups`` and ``S3Store`` on moto S3. What the services rely on:
``BackupService`` uploads under a fresh key per attempt and commits with ``put_manifest`` (False: another
delivery won); ``artifacts`` resolves ``latest`` with ``newest_backup_id`` and ``recent_backup_ids`` and
reads exactly the pinned version (a version gone is ChecksumMismatchError); the sweep reads
``pinned_manifest`` and ``inventory``; the guard and the catalog read ``manifests``; ``tier_for`` counts
``earliest_backup_since``. The fault tests at the end show each fault the fake can play.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pytest

from backstop.adapters.s3_store import MIB, S3Store
from backstop.errors import (
    BackupNotFoundError,
    ChecksumMismatchError,
    InvalidNameError,
    ManifestError,
    StorageError,
    UploadError,
)
from backstop.manifest import Manifest, Tier
from backstop.names import parse_backup_id
from backstop.ports import Backups, UploadResult, VersionHistory
from tests.fakes.vault import FakeBackups
from tests.unit.test_manifest import sample_manifest

PART = 5 * MIB
TONIGHT = "orders-20261121T020000Z"


class Store(Backups, VersionHistory, Protocol):
    """Both ports, as both implementations provide them (set-up and checks use one to see the other)."""


@dataclass(frozen=True)
class Vault:
    """An implementation under test, and what any other writer with access to its bucket can do to it."""

    store: Store
    put: Callable[..., str]
    """``put(key, body, tags=None)``: a new version of ``key``, written unconditionally; its id."""
    delete: Callable[[str], str]
    """``delete(key)``: a delete marker on ``key``; its id."""


def real_vault(store: S3Store) -> Vault:
    def put(key: str, body: bytes, tags: dict[str, str] | None = None) -> str:
        tagging = {"Tagging": S3Store.tagging(tags)} if tags else {}
        return str(store.client.put_object(Bucket=store.bucket, Key=key, Body=body, **tagging)["VersionId"])  # type: ignore[arg-type]  # Tagging only when given

    def delete(key: str) -> str:
        return str(store.client.delete_object(Bucket=store.bucket, Key=key)["VersionId"])

    return Vault(store, put, delete)


def fake_vault(fake: FakeBackups) -> Vault:
    return Vault(fake, lambda key, body, tags=None: fake.put_object(key, body, tags=tags), fake.delete_object)


def open_vault(request: pytest.FixtureRequest) -> Vault:
    """The implementation ``request.param`` names ("fake" or "real"), on an empty versioned bucket."""
    if request.param == "fake":
        return fake_vault(FakeBackups(part_size=PART))
    return real_vault(request.getfixturevalue("store"))


@pytest.fixture(params=["fake", "real"])
def vault(request: pytest.FixtureRequest) -> Vault:
    return open_vault(request)


@pytest.fixture
def fake() -> FakeBackups:
    """The fake alone, for the faults only it can play."""
    return FakeBackups(part_size=PART)


def upload(store: Backups, key: str, body: bytes, tags: dict[str, str] | None = None) -> UploadResult:
    with store.upload(key, tags or {}) as stream:
        stream.write(body)
        return stream.complete()


def commit(store: Backups, backup_id: str, body: bytes = b"stored bytes", *, tier: Tier = "daily") -> Manifest:
    """A committed backup, as ``BackupService`` makes one: the artifact uploaded, then a manifest pinning it."""
    database, _ = parse_backup_id(backup_id)
    tags = store.tags_for(database, "sqlite", tier)
    stored = upload(store, store.object_key(backup_id, "sqlite.zst", "0badc0de"), body, tags)
    manifest = sample_manifest(backup_id, tier=tier, bucket=store.bucket)
    pinned = manifest.object.model_copy(
        update={
            "key": stored.key,
            "version_id": stored.version_id,
            "size": stored.size,
            "sha256": hashlib.sha256(body).hexdigest(),
            "s3_checksum_sha256": stored.s3_checksum_sha256,
            "parts": stored.parts,
        }
    )
    manifest = manifest.model_copy(update={"object": pinned}).sealed()
    assert store.put_manifest(manifest, tags)
    return manifest


def read(store: Backups, key: str, version_id: str | None = None) -> bytes:
    return b"".join(store.read_object(key, version_id))


# -- keys and tags ---------------------------------------------------------------------------


def test_keys_follow_the_storage_layout_and_tags_name_tier_engine_and_database(vault: Vault) -> None:
    # when the keys and tags of tonight's backup are asked for
    store = vault.store
    day = "backups/orders/2026/11/21/"

    # then they are the documented layout (DESIGN.md "Storage contract"), one key per attempt
    assert store.object_key(TONIGHT, "sqlite.zst") == f"{day}{TONIGHT}.sqlite.zst"
    assert store.object_key(TONIGHT, "pgdump.zst", "0badc0de") == f"{day}{TONIGHT}.0badc0de.pgdump.zst"
    assert store.manifest_key(TONIGHT) == f"{day}{TONIGHT}.manifest.json"
    assert store.tags_for("orders", "sqlite", "weekly") == {
        "backstop:tier": "weekly",
        "backstop:engine": "sqlite",
        "backstop:database": "orders",
    }
    with pytest.raises(ValueError, match="8 hex digits"):
        store.object_key(TONIGHT, "sqlite.zst", "attempt1")
    with pytest.raises(InvalidNameError):
        store.manifest_key("Orders-20261121T020000Z")


# -- uploads ---------------------------------------------------------------------------------


def test_a_completed_upload_is_the_current_version_and_reads_back_byte_for_byte(vault: Vault) -> None:
    # given a stream of a part and a bit, written in uneven pieces
    store = vault.store
    key = store.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    data = bytes(range(256)) * (PART // 256) + b"tail" * 1000

    # when it is uploaded and completed
    with store.upload(key, store.tags_for("orders", "sqlite", "daily")) as stream:
        for start in range(0, len(data), 1_000_003):
            stream.write(data[start : start + 1_000_003])
        stream.submit_tail()
        result = stream.complete()

    # then S3 holds exactly that, in two parts with their composite SHA-256, as the current version
    digests = b"".join(hashlib.sha256(part).digest() for part in (data[:PART], data[PART:]))
    composite = hashlib.sha256(digests).digest()
    assert (result.key, result.size, result.parts) == (key, len(data), 2)
    assert result.s3_checksum_sha256.partition("-")[0] == base64.b64encode(composite).decode()
    current = store.current_version(key)
    assert current is not None and current.version_id == result.version_id
    assert store.object_size(key, result.version_id) == len(data)
    assert read(store, key, result.version_id) == data


def test_an_upload_that_raises_or_is_never_completed_leaves_nothing_behind(vault: Vault) -> None:
    # given a run whose snapshot fails mid-stream, and another that never completes its upload
    store = vault.store
    failed, unfinished = (store.object_key(TONIGHT, "sqlite.zst", attempt) for attempt in ("0000000a", "0000000b"))
    with pytest.raises(RuntimeError), store.upload(failed, {}) as stream:
        stream.write(b"half a snapshot")
        raise RuntimeError("the snapshot failed")
    with store.upload(unfinished, {}) as stream:
        stream.write(b"a whole snapshot")

    # then neither key has a version, so nothing of either run can be read or listed
    for key in (failed, unfinished):
        assert store.object_size(key, None) is None
        assert store.current_version(key) is None
    assert store.newest_backup_id("orders") is None


def test_an_upload_never_completes_over_an_object_at_its_key(vault: Vault) -> None:
    # given a key that holds an artifact
    store = vault.store
    key = store.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    first = upload(store, key, b"first")

    # when another upload of the same key completes, then it is refused and the first is untouched
    with pytest.raises(UploadError, match="already exists in the vault"), store.upload(key, {}) as stream:
        stream.write(b"second")
        stream.complete()
    assert read(store, key) == b"first"
    assert [v.version_id for v in store.versions(key)] == [first.version_id]


def test_delete_version_removes_exactly_the_named_version(vault: Vault) -> None:
    # given a key written twice
    store = vault.store
    key = store.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    first = vault.put(key, b"first")
    second = vault.put(key, b"second")

    # when the second version is deleted
    store.delete_version(key, second)

    # then the first is current again and nothing else was added
    assert [v.version_id for v in store.versions(key)] == [first]
    assert read(store, key) == b"first"


def test_an_uploaded_artifact_and_its_manifest_carry_their_tags(vault: Vault) -> None:
    # when a weekly backup is committed
    store = vault.store
    manifest = commit(store, TONIGHT, tier="weekly")

    # then the artifact's version and the manifest's carry the tags lifecycle rules filter on
    tags = store.tags_for("orders", "sqlite", "weekly")
    assert manifest.object.version_id is not None
    assert store.object_tags(manifest.object.key, manifest.object.version_id) == tags
    manifest_version = store.current_version(store.manifest_key(TONIGHT))
    assert manifest_version is not None
    assert store.object_tags(manifest_version.key, manifest_version.version_id) == tags


# -- manifests -------------------------------------------------------------------------------


def test_a_manifest_is_committed_once_and_never_overwritten(vault: Vault) -> None:
    # given a committed backup
    store = vault.store
    manifest = commit(store, TONIGHT)

    # when another delivery of the same run commits its own manifest
    other = manifest.model_copy(update={"retention_tier": "monthly"}).sealed()
    written = store.put_manifest(other, {})

    # then it is told so, and the first manifest stands
    assert written is False
    assert store.manifest_exists(TONIGHT)
    assert store.get_manifest(TONIGHT) == manifest
    assert len(store.versions(store.manifest_key(TONIGHT))) == 1


def test_an_artifact_without_a_manifest_is_no_backup(vault: Vault) -> None:
    # given an artifact uploaded by a run that died before its manifest
    store = vault.store
    upload(store, store.object_key(TONIGHT, "sqlite.zst", "0badc0de"), b"orphan")

    # then there is no backup of that id, and no listing shows one
    assert not store.manifest_exists(TONIGHT)
    with pytest.raises(BackupNotFoundError, match="has no manifest, so it was never committed"):
        store.get_manifest(TONIGHT)
    with pytest.raises(BackupNotFoundError):
        store.pinned_manifest(TONIGHT)
    assert store.newest_backup_id("orders") is None
    assert store.manifests("orders") == []
    assert store.inventory("orders") == {}


def test_a_pinned_manifest_is_read_at_its_committed_version_whatever_the_key_holds_now(vault: Vault) -> None:
    # given a committed backup whose manifest someone overwrote with another sealed manifest
    store = vault.store
    manifest = commit(store, TONIGHT)
    _, committed = store.pinned_manifest(TONIGHT)
    forged = manifest.model_copy(update={"retention_tier": "yearly"}).sealed()
    overwritten = vault.put(store.manifest_key(TONIGHT), forged.to_json())

    # when the manifest is read without a version, and at the committed one
    current, current_version = store.pinned_manifest(TONIGHT)
    pinned, pinned_version = store.pinned_manifest(TONIGHT, committed)

    # then the key gives the overwrite, the pinned read the committed manifest
    assert (current.retention_tier, current_version) == ("yearly", overwritten)
    assert (pinned, pinned_version) == (manifest, committed)


FORGERIES: list[Any] = [
    pytest.param(
        lambda m: m.to_json().replace(b'"daily"', b'"yearly"'), "fails its own checksum", id="edited-in-the-bucket"
    ),
    pytest.param(lambda m: m.to_json()[:200], "not valid JSON", id="truncated"),
    pytest.param(
        lambda m: m.model_copy(update={"backup_id": "orders-20261120T020000Z"}).to_json(),
        "describes orders-20261120T020000Z",
        id="another-backup",
    ),
    pytest.param(
        lambda m: m.model_copy(update={"object": m.object.model_copy(update={"bucket": "elsewhere"})}).to_json(),
        "points at bucket elsewhere",
        id="another-bucket",
    ),
    pytest.param(
        lambda m: m.model_copy(
            update={"object": m.object.model_copy(update={"key": m.object.key.replace("/orders/", "/billing/")})}
        ).to_json(),
        "not at orders-20261121T020000Z's own artifact",
        id="another-database-artifact",
    ),
]


@pytest.mark.parametrize(("forge", "reason"), FORGERIES)
def test_a_manifest_that_is_damaged_or_points_elsewhere_is_refused(
    vault: Vault, forge: Callable[[Manifest], bytes], reason: str
) -> None:
    # given a manifest key holding a damaged manifest, or a sealed one bound to another place
    store = vault.store
    vault.put(store.manifest_key(TONIGHT), forge(sample_manifest(TONIGHT, bucket=store.bucket)))

    # when it is read, then it is refused, saying why
    with pytest.raises(ManifestError, match=reason):
        store.get_manifest(TONIGHT)


# -- reading artifacts -----------------------------------------------------------------------


def test_an_object_is_read_at_exactly_the_named_version(vault: Vault) -> None:
    # given an artifact key overwritten after the backup pinned its first version
    store = vault.store
    key = store.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    pinned = vault.put(key, b"the backup")
    vault.put(key, b"an overwrite, longer")

    # then the pinned version is what is read and sized, the key alone gives the overwrite
    assert read(store, key, pinned) == b"the backup"
    assert store.object_size(key, pinned) == len(b"the backup")
    assert read(store, key, None) == b"an overwrite, longer"


def test_a_version_that_is_gone_reads_as_a_checksum_mismatch_and_has_no_size(vault: Vault) -> None:
    # given a pinned version that was removed, and a key never written
    store = vault.store
    key = store.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    vault.put(key, b"newer")
    gone = vault.put(key, b"the backup")
    store.delete_version(key, gone)
    never = store.object_key(TONIGHT, "sqlite.gz")

    # then reading either fails at once (before any byte) with ChecksumMismatchError, and neither has a size
    with pytest.raises(ChecksumMismatchError, match="is missing from the bucket"):
        store.read_object(key, gone)
    with pytest.raises(ChecksumMismatchError):
        store.read_object(never, None)
    assert store.object_size(key, gone) is None
    assert store.object_size(never, None) is None


# -- listing ---------------------------------------------------------------------------------

HISTORY = ["orders-20261031T020000Z", "orders-20261120T020000Z", "orders-20261121T020000Z", "orders-20261121T140000Z"]


def commit_history(vault: Vault) -> None:
    """Four committed backups of orders over two months, a newer uncommitted one, and a newer one of billing."""
    for backup_id in HISTORY:
        commit(vault.store, backup_id)
    upload(vault.store, vault.store.object_key("orders-20261122T020000Z", "sqlite.zst", "0badc0de"), b"orphan")
    commit(vault.store, "billing-20261123T020000Z")


def test_the_newest_backup_is_the_newest_committed_one_of_that_database(vault: Vault) -> None:
    commit_history(vault)

    assert vault.store.newest_backup_id("orders") == "orders-20261121T140000Z"
    assert vault.store.newest_backup_id("inventory") is None


def test_recent_backups_are_those_before_the_given_one_newest_first(vault: Vault) -> None:
    commit_history(vault)

    assert vault.store.recent_backup_ids("orders", "orders-20261121T140000Z", 2) == [
        "orders-20261121T020000Z",
        "orders-20261120T020000Z",
    ]
    assert vault.store.recent_backup_ids("orders", "orders-20261130T000000Z", 10) == HISTORY[::-1]
    assert vault.store.recent_backup_ids("orders", HISTORY[0], 10) == []


def test_manifests_are_every_committed_one_oldest_first(vault: Vault) -> None:
    commit_history(vault)

    assert [m.backup_id for m in vault.store.manifests("orders")] == HISTORY
    assert [m.backup_id for m in vault.store.manifests("billing")] == ["billing-20261123T020000Z"]


def test_the_earliest_backup_since_a_time_counts_that_whole_day(vault: Vault) -> None:
    commit_history(vault)
    store = vault.store

    assert store.earliest_backup_since("orders", datetime(2026, 11, 1, tzinfo=UTC)) == datetime(
        2026, 11, 20, 2, tzinfo=UTC
    )
    # a backup earlier on the same day counts: tiers are decided per day
    assert store.earliest_backup_since("orders", datetime(2026, 11, 21, 15, tzinfo=UTC)) == datetime(
        2026, 11, 21, 2, tzinfo=UTC
    )
    assert store.earliest_backup_since("orders", datetime(2026, 11, 22, tzinfo=UTC)) is None


def test_the_inventory_gives_each_committed_backups_stored_size(vault: Vault) -> None:
    # given two committed backups (the second's artifact since removed), its sweep record, and an uncommitted one
    store = vault.store
    first = commit(store, "orders-20261120T020000Z", b"x" * 100)
    second = commit(store, TONIGHT, b"y" * 7)
    assert second.object.version_id is not None
    store.delete_version(second.object.key, second.object.version_id)
    vault.put(store.manifest_key(first.backup_id).replace(".manifest.json", ".sweep.json"), b"{}")
    upload(store, store.object_key("orders-20261122T020000Z", "sqlite.zst"), b"orphan")

    # then the inventory lists the committed ones with their artifact's size (none left: 0)
    assert store.inventory("orders") == {first.backup_id: 100, TONIGHT: 0}


# -- the fake's faults -------------------------------------------------------------------------


def test_an_upload_armed_to_fail_after_n_bytes_fails_that_write_and_leaves_nothing(fake: FakeBackups) -> None:
    # given the next upload armed to fail past 10 bytes
    key = fake.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    fake.fail_upload_after(10)

    # when a stream writes 8 bytes, then 8 more, then the second write fails as S3Store's would
    with pytest.raises(UploadError, match="the upload was aborted"), fake.upload(key, {}) as stream:
        stream.write(b"8 bytes.")
        stream.write(b"8 bytes.")

    # then nothing is left, not even an open upload; the next upload is whole again
    assert fake.current_version(key) is None
    assert fake.open_uploads() == []
    assert upload(fake, key, b"16 bytes, intact").size == 16


def test_a_completion_armed_to_fail_after_writing_leaves_a_version_and_no_backup(fake: FakeBackups) -> None:
    # given the next completion armed to fail once the version is written (S3's read-back did not match)
    key = fake.object_key(TONIGHT, "sqlite.zst", "0badc0de")
    fake.fail_next("complete_upload", ChecksumMismatchError("the upload is not trusted"), after=True)

    # when an upload completes, then it raises, and the version is there without a manifest
    with pytest.raises(ChecksumMismatchError):
        upload(fake, key, b"bytes")
    assert read(fake, key) == b"bytes"
    assert not fake.manifest_exists(TONIGHT)


def test_a_read_armed_to_fail_after_n_bytes_yields_them_then_raises(fake: FakeBackups) -> None:
    # given an artifact of 3 MiB and the next read of it armed to drop after 1.5 MiB
    manifest = commit(fake, TONIGHT, b"z" * (3 * MIB))
    fake.fail_read_after(3 * MIB // 2, key=manifest.object.key)

    # when it is read, then 1.5 MiB arrive before the StorageError; the next read is whole
    received = bytearray()
    with pytest.raises(StorageError, match="Connection was closed"):
        for chunk in fake.read_object(manifest.object.key, manifest.object.version_id):
            received += chunk
    assert len(received) == 3 * MIB // 2
    assert len(read(fake, manifest.object.key, manifest.object.version_id)) == 3 * MIB


def test_a_corrupted_version_reads_other_bytes_under_the_same_id_and_size(fake: FakeBackups) -> None:
    # given a committed backup whose stored bytes rot
    manifest = commit(fake, TONIGHT, b"the stored bytes")
    version_id = manifest.object.version_id
    fake.corrupt(manifest.object.key, version_id)

    # then the same version reads other bytes of the same size: only the SHA-256 tells
    stored = read(fake, manifest.object.key, version_id)
    assert len(stored) == manifest.object.size
    assert hashlib.sha256(stored).hexdigest() != manifest.object.sha256
    assert fake.get_manifest(TONIGHT) == manifest


def test_a_dropped_version_is_gone_without_a_delete_marker(fake: FakeBackups) -> None:
    # given a committed backup whose artifact expires
    manifest = commit(fake, TONIGHT)
    fake.drop(manifest.object.key)

    # then its key has no history at all, and reading the pinned version is a checksum mismatch
    assert fake.versions(manifest.object.key) == []
    with pytest.raises(ChecksumMismatchError):
        fake.read_object(manifest.object.key, manifest.object.version_id)
    assert fake.inventory("orders") == {TONIGHT: 0}


def test_a_method_armed_with_fail_next_fails_once_then_answers(fake: FakeBackups) -> None:
    # given a committed backup and the next listing armed to be refused
    commit(fake, TONIGHT)
    fake.fail_next("newest_backup_id", StorageError("Listing backstop-test/backups/orders/ failed: AccessDenied."))

    # then the first call raises it, the next one answers
    with pytest.raises(StorageError, match="AccessDenied"):
        fake.newest_backup_id("orders")
    assert fake.newest_backup_id("orders") == TONIGHT
