"""The store's view of a key's history on moto: what repair and the overwrite checks rely on."""

from __future__ import annotations

from typing import Any

from backstop.adapters.s3_store import S3Store
from tests.conftest import BUCKET

KEY = "backups/orders/2026/11/21/orders-20261121T020000Z.0badc0de.sqlite.zst"


def test_versions_lists_every_version_and_delete_marker_of_exactly_the_key_current_first(
    store: S3Store, s3: Any
) -> None:
    # given a key written, deleted and written again, and another key that starts with its name
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"one")["VersionId"]
    marker = s3.delete_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    second = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"two")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY + ".sweep.json", Body=b"{}")

    # when its versions are listed
    versions = store.versions(KEY)

    # then all three entries of that key are there, the current one first, the other key left out
    assert versions[0].version_id == second
    assert [v.is_latest for v in versions] == [True, False, False]
    assert {(v.version_id, v.is_delete_marker) for v in versions} == {(first, False), (marker, True), (second, False)}
    assert {v.key for v in versions} == {KEY}


def test_current_version_names_a_delete_marker_and_is_none_for_a_key_never_written(store: S3Store, s3: Any) -> None:
    # given a written key with a delete marker on top
    written = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"one")["VersionId"]
    before = store.current_version(KEY)
    marker = s3.delete_object(Bucket=BUCKET, Key=KEY)["VersionId"]

    # when its current version is asked for, and that of a key never written
    current = store.current_version(KEY)
    never = store.current_version(KEY + ".missing")

    # then the version, then the delete marker, are reported; the other key has none
    assert before is not None and (before.version_id, before.is_delete_marker) == (written, False)
    assert current is not None and (current.version_id, current.is_delete_marker) == (marker, True)
    assert never is None


def test_copy_version_copies_the_named_version_not_the_current_one(store: S3Store, s3: Any) -> None:
    # given a key with two versions
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"one")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"two")

    # when the first is copied to its quarantine key
    destination = store.quarantine_key(KEY, first)
    store.copy_version(KEY, first, destination)

    # then the quarantine key holds the first version's bytes, under the prefix's own quarantine folder
    assert destination == f"backups/_quarantine/orders/2026/11/21/orders-20261121T020000Z.0badc0de.sqlite.zst/{first}"
    assert s3.get_object(Bucket=BUCKET, Key=destination)["Body"].read() == b"one"


def test_remove_version_deletes_exactly_that_version_and_tolerates_one_already_gone(store: S3Store, s3: Any) -> None:
    # given a key with two versions
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"one")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"two")
    [latest, _] = store.versions(KEY)

    # when the current one is removed, twice
    store.remove_version(latest)
    store.remove_version(latest)

    # then the first version is current again, and no delete marker was added
    current = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert (current["Body"].read(), current["VersionId"]) == (b"one", first)
    assert [v.version_id for v in store.versions(KEY)] == [first]
