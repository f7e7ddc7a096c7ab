"""The VersionHistory contract: a key's versions and delete markers, the tags of each version, quarantine copies
and removals that respect Object Lock.

Every test runs against ``FakeBackups`` and ``S3Store`` on moto S3. What the services rely on: the sweep's
``find_overwrites`` compares ``current_version`` with the pinned versions (a delete marker included);
repair reads ``versions`` (current first, object versions newest first, so the last is the first ever
written), copies the intruder to its ``quarantine_key`` and removes it until the pinned version is
current; the keep-last-good guard and repair read and replace the tier tag of exactly one version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import StorageError
from backstop.ports import LockUntil, ObjectVersion
from tests.contract.test_backups import PART, Store, Vault, open_vault, read
from tests.fakes.vault import FakeBackups

KEY = "backups/orders/2026/11/21/orders-20261121T020000Z.0badc0de.sqlite.zst"
LOCKED_BUCKET = "backstop-locked"


@pytest.fixture(params=["fake", "real"])
def vault(request: pytest.FixtureRequest) -> Vault:
    return open_vault(request)


@pytest.fixture(params=["fake", "real"])
def locked_store(request: pytest.FixtureRequest) -> Store:
    """A vault whose bucket has Object Lock enabled (as ``storage.object_lock`` creates it), no default retention."""
    if request.param == "fake":
        return FakeBackups(bucket=LOCKED_BUCKET, part_size=PART)
    s3: Any = request.getfixturevalue("s3")
    s3.create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
    return S3Store(s3, bucket=LOCKED_BUCKET, prefix="backups", part_size=PART, concurrency=2)


def test_versions_are_every_version_and_delete_marker_of_exactly_the_key_current_first(vault: Vault) -> None:
    # given a key written, deleted and written twice again, and another key that starts with its name
    first = vault.put(KEY, b"one")
    marker = vault.delete(KEY)
    second = vault.put(KEY, b"two")
    third = vault.put(KEY, b"three")
    vault.put(KEY + ".sweep.json", b"{}")

    # when its versions are listed
    versions = vault.store.versions(KEY)

    # then all four entries of that key are there, the current one first, the object versions newest first
    assert (versions[0].version_id, versions[0].is_latest) == (third, True)
    assert [v.version_id for v in versions if not v.is_delete_marker] == [third, second, first]
    assert {(v.version_id, v.is_delete_marker) for v in versions} == {
        (first, False),
        (marker, True),
        (second, False),
        (third, False),
    }
    assert [v.is_latest for v in versions] == [True, False, False, False]
    assert {v.key for v in versions} == {KEY}
    assert all(v.last_modified is not None for v in versions)
    assert vault.store.versions(KEY + ".never") == []


def test_the_current_version_is_what_a_plain_read_gets_a_delete_marker_included(vault: Vault) -> None:
    # given a written key, then a delete marker on top of it
    written = vault.put(KEY, b"one")
    before = vault.store.current_version(KEY)
    marker = vault.delete(KEY)

    # when its current version is asked for, and that of a key never written
    current = vault.store.current_version(KEY)
    never = vault.store.current_version(KEY + ".never")

    # then the version (with its time), then the marker (S3 gives no time for it), are reported; the other has none
    assert before is not None
    assert (before.version_id, before.is_latest, before.is_delete_marker) == (written, True, False)
    assert before.last_modified is not None
    assert current == ObjectVersion(KEY, marker, is_latest=True, is_delete_marker=True, last_modified=None)
    assert never is None


def test_tags_are_read_and_replaced_on_exactly_one_version(vault: Vault) -> None:
    # given two versions of a key with their own tags
    first = vault.put(KEY, b"one", {"backstop:tier": "weekly", "backstop:database": "orders"})
    second = vault.put(KEY, b"two", {"backstop:tier": "daily"})

    # when the first version's tags are replaced
    vault.store.put_object_tags(KEY, first, {"backstop:tier": "held-weekly"})

    # then that version has exactly the new tags (a replacement, not a merge), the other keeps its own
    assert vault.store.object_tags(KEY, first) == {"backstop:tier": "held-weekly"}
    assert vault.store.object_tags(KEY, second) == {"backstop:tier": "daily"}


def test_the_tags_of_a_version_not_in_the_bucket_are_a_storage_error(vault: Vault) -> None:
    # given a version that was removed
    vault.put(KEY, b"one")
    gone = vault.put(KEY, b"two")
    vault.store.remove_version(ObjectVersion(KEY, gone, True, False))

    # then its tags can be neither read nor written
    with pytest.raises(StorageError, match="tags of"):
        vault.store.object_tags(KEY, gone)
    with pytest.raises(StorageError, match="Tagging"):
        vault.store.put_object_tags(KEY, gone, {"backstop:tier": "daily"})


def test_a_version_is_copied_to_its_quarantine_key_not_the_current_one(vault: Vault) -> None:
    # given a key with two versions
    first = vault.put(KEY, b"one")
    vault.put(KEY, b"two")

    # when the first is copied to its quarantine key
    destination = vault.store.quarantine_key(KEY, first)
    vault.store.copy_version(KEY, first, destination)

    # then the quarantine key, under the prefix's own quarantine folder, holds the first version's bytes
    assert destination == f"backups/_quarantine/orders/2026/11/21/orders-20261121T020000Z.0badc0de.sqlite.zst/{first}"
    assert read(vault.store, destination) == b"one"
    assert read(vault.store, KEY) == b"two"


def test_removing_a_version_takes_exactly_it_off_and_one_already_gone_is_no_error(vault: Vault) -> None:
    # given a key written, then overwritten, then deleted
    first = vault.put(KEY, b"one")
    vault.put(KEY, b"two")
    vault.delete(KEY)
    [marker, overwrite, _] = vault.store.versions(KEY)

    # when the delete marker, then the overwrite, are removed, the overwrite twice
    vault.store.remove_version(marker)
    vault.store.remove_version(overwrite)
    vault.store.remove_version(overwrite)

    # then the first version is current again, and no delete marker was added
    assert [v.version_id for v in vault.store.versions(KEY)] == [first]
    assert read(vault.store, KEY) == b"one"


@pytest.mark.parametrize(("mode", "removable"), [("GOVERNANCE", True), ("COMPLIANCE", False)])
def test_a_locked_version_is_removed_under_a_governance_lock_and_never_under_a_compliance_lock(
    locked_store: Store, mode: Literal["GOVERNANCE", "COMPLIANCE"], removable: bool
) -> None:
    # given an artifact uploaded with an Object Lock until tomorrow
    key = locked_store.object_key("orders-20261121T020000Z", "sqlite.zst", "0badc0de")
    with locked_store.upload(key, {}, LockUntil(mode, datetime.now(UTC) + timedelta(days=1))) as stream:
        stream.write(b"the backup")
        stored = stream.complete()
    [version] = locked_store.versions(key)

    # when repair removes it
    if removable:
        locked_store.remove_version(version)
    else:
        with pytest.raises(StorageError, match="compliance-mode Object Lock"):
            locked_store.remove_version(version)

    # then a governance lock was bypassed; a compliance lock kept the version
    assert [v.version_id for v in locked_store.versions(key)] == ([] if removable else [stored.version_id])


# -- the fake's faults -------------------------------------------------------------------------


def test_a_removal_armed_to_fail_changes_nothing_and_the_next_one_works() -> None:
    # given an overwritten key and the next removal armed to be refused
    fake = FakeBackups()
    first = fake.put_object(KEY, b"one")
    fake.put_object(KEY, b"two")
    fake.fail_next("remove_version", StorageError("Removing it failed: S3 answered AccessDenied."))
    [overwrite, _] = fake.versions(KEY)

    # when repair removes the overwrite, then it is refused and both versions stay; tried again, it works
    with pytest.raises(StorageError, match="AccessDenied"):
        fake.remove_version(overwrite)
    assert len(fake.versions(KEY)) == 2
    fake.remove_version(overwrite)
    assert [v.version_id for v in fake.versions(KEY)] == [first]
