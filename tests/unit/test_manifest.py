"""The manifest: sealed with a checksum of itself, so an edited or truncated one is refused."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backstop.errors import ManifestError
from backstop.manifest import (
    Compression,
    IntegrityCheck,
    Manifest,
    RawStream,
    StoredObject,
    TableStat,
    Tier,
    Trigger,
)
from backstop.names import parse_backup_id

WHERE = "s3://backstop-test/backups/orders/2026/11/21/orders-20261121T020000Z.manifest.json"


def sample_manifest(
    backup_id: str = "orders-20261121T020000Z",
    *,
    size: int = 1234,
    tier: Tier = "daily",
    bucket: str = "backstop-test",
    prefix: str = "backups",
    **fields: Any,
) -> Manifest:
    """A sealed, realistic manifest of a SQLite backup (``fields`` replace top-level fields)."""
    database, at = parse_backup_id(backup_id)
    manifest = Manifest(
        backup_id=backup_id,
        database=database,
        engine="sqlite",
        type="scheduled",
        trigger=Trigger(kind="schedule", by="arn:aws:scheduler:::schedule/default/orders"),
        scheduled_for=at,
        started_at=at,
        finished_at=at + timedelta(seconds=3),
        source={"path": "/srv/orders.db", "page_size": 4096},
        tools={"backstop": "0.1.0", "sqlite": "3.46.1"},
        object=StoredObject(
            bucket=bucket,
            key=f"{prefix}/{database}/{at:%Y/%m/%d}/{backup_id}.sqlite.zst",
            version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
            size=size,
            sha256=hashlib.sha256(b"stored").hexdigest(),
            s3_checksum_sha256="hCYJZCKLpCF95ryM4nYFcWb1Kz4d3MTz1WEATPqdjgA=",
            parts=1,
        ),
        raw=RawStream(size=40960, sha256=hashlib.sha256(b"raw").hexdigest()),
        compression=Compression(algorithm="zstd", level=3),
        integrity=IntegrityCheck(check="integrity_check", passed=True, detail="ok"),
        tables={"customers": TableStat(rows=100), "orders": TableStat(rows=1000)},
        schema_version="schema_migrations:20260315120000",
        retention_tier=tier,
    )
    return manifest.model_copy(update=fields).sealed()


def stored_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as it lies in the bucket, parsed."""
    data: dict[str, Any] = json.loads(manifest.to_json())
    return data


def dump(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def test_sealed_manifest_round_trips_through_json() -> None:
    manifest = sample_manifest()

    parsed = Manifest.from_json(manifest.to_json(), where=WHERE)

    assert parsed == manifest
    assert parsed.manifest_sha256 == manifest.manifest_sha256 != ""
    assert parsed.to_json() == manifest.to_json()


def test_stored_manifest_has_one_field_per_line_for_grep() -> None:
    text = sample_manifest().to_json().decode()

    assert '  "backup_id": "orders-20261121T020000Z",\n' in text
    assert '    "sha256": "' in text
    assert text.endswith("}\n")


def test_sealing_does_not_depend_on_an_earlier_seal() -> None:
    manifest = sample_manifest()

    assert manifest.sealed() == manifest
    assert manifest.model_copy(update={"manifest_sha256": "f" * 64}).sealed() == manifest


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("object", "size"), 1235),
        (("object", "sha256"), hashlib.sha256(b"other").hexdigest()),
        (("object", "version_id"), "another-version"),
        (("object", "key"), "backups/orders/2026/11/21/other.sqlite.zst"),
        (("raw", "size"), 1),
        (("backup_id",), "orders-20261122T020000Z"),
        (("retention_tier",), "yearly"),
        (("tables", "orders", "rows"), 999),
        (("integrity", "passed"), False),
        (("warnings",), ["injected"]),
    ],
)
def test_edited_field_fails_its_own_checksum(path: tuple[str, ...], value: object) -> None:
    data = stored_json(sample_manifest())
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value

    with pytest.raises(ManifestError, match="fails its own checksum") as caught:
        Manifest.from_json(dump(data), where=WHERE)

    assert WHERE in str(caught.value)


def test_manifest_without_its_checksum_is_refused() -> None:
    data = stored_json(sample_manifest())
    del data["manifest_sha256"]

    with pytest.raises(ManifestError, match="fails its own checksum"):
        Manifest.from_json(dump(data), where=WHERE)


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.5, 0.99])
def test_truncated_manifest_is_refused(keep: float) -> None:
    text = sample_manifest().to_json()
    cut = text[: int(len(text) * keep)] if isinstance(keep, float) else text[:keep]

    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json(cut, where=WHERE)


def test_manifest_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json(b"\xff\xfe" + sample_manifest().to_json(), where=WHERE)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_format_version_is_refused_naming_both_versions(version: object) -> None:
    data = stored_json(sample_manifest())
    data["format_version"] = version

    with pytest.raises(ManifestError, match="reads version 1") as caught:
        Manifest.from_json(dump(data), where=WHERE)

    assert f"format version {version!r}" in str(caught.value)


@pytest.mark.parametrize("document", [b"[]", b'"manifest"', b"42", b"null"])
def test_json_that_is_not_an_object_is_refused(document: bytes) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(document, where=WHERE)


def test_resealed_manifest_with_an_invalid_field_is_refused_naming_the_field() -> None:
    # A writer bug (or a careful forger) that re-seals a broken manifest still cannot get it past the model.
    data = stored_json(sample_manifest())
    data["object"]["sha256"] = "not-hex"
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["manifest_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()

    with pytest.raises(ManifestError, match=r"malformed at object\.sha256"):
        Manifest.from_json(dump(data), where=WHERE)


_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)


@given(
    tables=st.dictionaries(_names, st.builds(TableStat, rows=st.integers(0, 2**62), exact=st.booleans()), max_size=8),
    source=st.dictionaries(_names, st.one_of(st.none(), st.integers(-(2**62), 2**62), _names), max_size=5),
    warnings=st.lists(_names, max_size=3).map(tuple),
    size=st.integers(0, 2**50),
)
def test_any_manifest_content_round_trips_and_keeps_its_seal(
    tables: dict[str, TableStat], source: dict[str, str | int | None], warnings: tuple[str, ...], size: int
) -> None:
    manifest = sample_manifest(size=size, tables=tables, source=source, warnings=warnings)

    parsed = Manifest.from_json(manifest.to_json(), where=WHERE)

    assert parsed == manifest
    assert parsed.sealed().manifest_sha256 == manifest.manifest_sha256
