"""Overwritten keys: finding them (`backstop verify`, the sweep) and repairing them (`backstop repair`).

A backup pins exact object versions: its manifest names the artifact's version, and the manifest
itself is written once. A later version on either key (a stray ``aws s3 cp``, a compromised writer)
or a delete marker leaves every pinned byte intact, but the key now serves something else to whoever
reads it without a version (manual recovery), and lifecycle will expire the genuine version, now
noncurrent, ``storage.noncurrent_days`` later. So verify and the sweep compare each key's current
version with the pinned one:

- the artifact's key with the version its manifest pins;
- the manifest's key with the version the sweep verified and recorded in its ``sweep`` record
  (``manifest_version``), when a sweep has verified this backup before. A manifest rewritten before
  any sweep read it is not recognised as such.

A delete marker on the artifact of a backup that has reached its tier's lifecycle age is retention at
work (S3 expires the artifact and its manifest separately, hours apart), not an intrusion.

Repair makes the pinned versions current again: it checks the pinned artifact's bytes against the
manifest's SHA-256 first (it never makes damaged bytes current), copies each intruding version to
``<prefix>/_quarantine/<key below the prefix>/<version_id>`` for forensics, then deletes the
intruding versions and delete markers, newest first, until the pinned version is the current one
again. It deletes rather than copies the genuine bytes back on top: a copy would be a new version that
no manifest pins, while the pinned one stayed noncurrent and lifecycle expired it. Finally it puts
back the tags lifecycle filters on (tier, engine, database) where they were changed.

Rights: repair deletes object versions (s3:DeleteObjectVersion, and s3:BypassGovernanceRetention for
a governance-locked intruder), re-tags (s3:PutObjectTagging) and lists versions
(s3:ListBucketVersions), which the backup and restore roles are denied. It runs with an operator's or
administrator's credentials (a role of ``storage.administrators``), from ``backstop repair`` or from
``backstop sweep`` with ``sweep.repair``; no deployed function holds them. Finding overwrites needs only
s3:GetObject. An intruding version under a compliance-mode Object Lock cannot be deleted by anyone
before its retention ends; repair says so and leaves it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from backstop.config import Retention
from backstop.errors import BackupNotFoundError, ChecksumMismatchError, IntegrityError, ManifestError, StorageError
from backstop.manifest import Manifest
from backstop.names import parse_backup_id
from backstop.ports import BackupStore, ObjectVersion
from backstop.retention import expiry_days

log = logging.getLogger(__name__)

SHA_SHOWN = 16  # hex digits of a SHA-256 shown in messages


class OverwrittenKeyError(IntegrityError):
    """A committed backup's key serves another version than the pinned one (overwritten or deleted)."""


@dataclass(frozen=True)
class Overwrite:
    """A key whose current version is not the pinned one."""

    key: str
    pinned_version: str
    current: ObjectVersion
    pinned_as: Literal["backed-up", "committed"]
    """How the pinned version is named: the artifact's is the backed-up one, the manifest's the committed one."""

    def phrase(self) -> str:
        shown = f"the delete marker {self.current.version_id}" if self.current.is_delete_marker else None
        return (
            f"the current version of {self.key} is {shown or self.current.version_id}, "
            f"not the {self.pinned_as} {self.pinned_version}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "pinned_version": self.pinned_version,
            "current_version": self.current.version_id,
            "delete_marker": self.current.is_delete_marker,
        }


def overwrite_sentence(database: str, backup_id: str, overwrites: tuple[Overwrite, ...]) -> str:
    """The one sentence naming each overwritten key, both versions, and the command that repairs them."""
    markers = {o.current.is_delete_marker for o in overwrites}
    how = "deleted" if markers == {True} else "overwritten" if markers == {False} else "overwritten or deleted"
    keys = "the key was" if len(overwrites) == 1 else "the keys were"
    found = " and ".join(o.phrase() for o in overwrites)
    return f"{backup_id}: {found}: {keys} {how}; run `backstop repair {database} {backup_id}`."


def swept_manifest_version(store: BackupStore, backup_id: str) -> str | None:
    """The version of ``backup_id``'s manifest the sweep verified (from its record), or None if unknown.

    A record that cannot be parsed counts as none: the next sweep writes a new one.
    """
    try:
        record = store.get_sidecar(backup_id, "sweep")
    except (IntegrityError, ValueError) as exc:
        log.warning("the sweep record of %s is unreadable, so its manifest version is unknown: %s", backup_id, exc)
        return None
    version = record.get("manifest_version") if record else None
    return version if isinstance(version, str) else None


def lifecycle_due(manifest: Manifest, retention: Retention | None, now: datetime) -> bool:
    """Whether lifecycle may already be expiring the backup: its tier's age has passed since it started.

    Never when the database's retention is unknown.
    """
    if retention is None:
        return False
    return now >= manifest.started_at + timedelta(days=expiry_days(retention)[manifest.retention_tier])


def find_overwrites(
    store: BackupStore, manifest: Manifest, manifest_version: str | None, *, expiring: bool = False
) -> tuple[Overwrite, ...]:
    """The backup's keys whose current version is not the pinned one: the artifact's, and the manifest's
    when ``manifest_version`` (the committed one) is known. One HEAD per key.

    ``expiring``: the backup has reached its tier's lifecycle age, so a delete marker on its artifact is
    lifecycle's, not an overwrite.
    """
    found: list[Overwrite] = []
    pinned = manifest.object.version_id
    if pinned is not None:
        current = store.current_version(manifest.object.key)
        if current is not None and current.version_id != pinned and not (current.is_delete_marker and expiring):
            found.append(Overwrite(manifest.object.key, pinned, current, "backed-up"))
    if manifest_version is not None:
        key = store.manifest_key(manifest.backup_id)
        current = store.current_version(key)
        if current is not None and current.version_id != manifest_version:
            found.append(Overwrite(key, manifest_version, current, "committed"))
    return tuple(found)


@dataclass(frozen=True)
class RepairReport:
    """What one repair did: the intruders it copied to quarantine and removed, and the keys it re-tagged."""

    database: str
    backup_id: str
    quarantined: tuple[str, ...]
    removed: tuple[ObjectVersion, ...]
    retagged: tuple[str, ...]
    bytes_read: int

    @property
    def repaired(self) -> bool:
        return bool(self.removed or self.retagged)

    def sentence(self) -> str:
        """What was done, in one sentence (the command's output and the sweep's alert)."""
        if not self.repaired:
            return (
                f"Nothing to repair: {self.backup_id}'s keys serve its backed-up versions, with the tags they should "
                "have."
            )
        done: list[str] = []
        for key in dict.fromkeys(v.key for v in self.removed):
            taken = [v for v in self.removed if v.key == key]
            versions = sum(1 for v in taken if not v.is_delete_marker)
            markers = len(taken) - versions
            counts = [
                f"{n} {word}{'s' if n > 1 else ''}"
                for n, word in ((versions, "version"), (markers, "delete marker"))
                if n
            ]
            done.append(f"took {' and '.join(counts)} off {key}")
        if self.quarantined:
            done.append(f"quarantined {', '.join(self.quarantined)}")
        if self.retagged:
            done.append(f"re-tagged {', '.join(self.retagged)}")
        return f"{self.backup_id} repaired: {'; '.join(done)}; the backed-up versions are current again."

    def to_dict(self) -> dict[str, object]:
        return {
            "backup_id": self.backup_id,
            "repaired": self.repaired,
            "quarantined": list(self.quarantined),
            "removed": [
                {"key": v.key, "version_id": v.version_id, "delete_marker": v.is_delete_marker} for v in self.removed
            ],
            "retagged": list(self.retagged),
        }


class RepairService:
    """Makes a backup's pinned versions the current ones again (see the module's docstring for the rights it needs)."""

    def __init__(self, store: BackupStore) -> None:
        self._store = store

    def repair(self, database: str, backup_id: str) -> RepairReport:
        """Check the pinned bytes, quarantine and remove whatever sits on top of the pinned versions, re-tag.

        Idempotent: an intact backup gets a report with nothing done. Raises InvalidNameError for an id
        that is not ``database``'s, BackupNotFoundError when it has no manifest, ChecksumMismatchError
        (changing nothing) when the pinned bytes do not match the manifest, ManifestError when the
        manifest the sweep verified is gone, and StorageError when S3 refuses a step (the steps already
        done stay done; running it again carries on).
        """
        parse_backup_id(backup_id, database)
        manifest_key = self._store.manifest_key(backup_id)
        manifest_version = self._committed_manifest_version(backup_id, manifest_key)
        manifest, _ = self._store.pinned_manifest(backup_id, manifest_version)
        bytes_read = self._check_bytes(manifest)
        quarantined: list[str] = []
        removed: list[ObjectVersion] = []
        for key, pinned in ((manifest.object.key, manifest.object.version_id), (manifest_key, manifest_version)):
            if pinned is not None:
                self._make_current(database, backup_id, key, pinned, quarantined, removed)
        retagged = self._retag(
            manifest, ((manifest.object.key, manifest.object.version_id), (manifest_key, manifest_version))
        )
        report = RepairReport(database, backup_id, tuple(quarantined), tuple(removed), retagged, bytes_read)
        log.info("%s", report.sentence())
        return report

    def _committed_manifest_version(self, backup_id: str, key: str) -> str:
        """The version the sweep verified if it did, else the first ever written (a manifest is written once)."""
        written = [v.version_id for v in self._store.versions(key) if not v.is_delete_marker]
        if not written:
            raise BackupNotFoundError(
                f"Backup {backup_id} has no manifest, so it was never committed: nothing to repair."
            )
        swept = swept_manifest_version(self._store, backup_id)
        if swept is None:
            return written[-1]
        if swept not in written:
            raise ManifestError(
                f"The manifest of {backup_id} the sweep verified (version {swept}) is no longer in the bucket, so "
                "repair cannot bring it back: restore from another backup."
            )
        return swept

    def _check_bytes(self, manifest: Manifest) -> int:
        """Read the pinned artifact version in full and compare it with the manifest; the bytes read."""
        expected = manifest.object
        refused = f"Repair of {manifest.backup_id} refused, so as not to make damaged bytes current"
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self._store.read_object(expected.key, expected.version_id):
                digest.update(chunk)
                size += len(chunk)
        except ChecksumMismatchError as exc:
            raise ChecksumMismatchError(f"{refused}: {exc}") from None
        found = digest.hexdigest()
        if size != expected.size or found != expected.sha256:
            raise ChecksumMismatchError(
                f"{refused}: version {expected.version_id} of {expected.key} reads {size} bytes with SHA-256 "
                f"{found[:SHA_SHOWN]}, but the manifest records {expected.size} bytes with SHA-256 "
                f"{expected.sha256[:SHA_SHOWN]}; restore from another backup."
            )
        return size

    def _make_current(
        self,
        database: str,
        backup_id: str,
        key: str,
        pinned: str,
        quarantined: list[str],
        removed: list[ObjectVersion],
    ) -> None:
        """Quarantine and delete the current version of ``key`` until ``pinned`` is the current one.

        S3 decides what is current after each deletion, so no clock or listing order is trusted. A
        key that keeps getting new versions while this runs stops it after as many rounds as it had
        versions at the start.
        """
        history = self._store.versions(key)
        rounds = len(history)
        while True:
            if pinned not in {v.version_id for v in history}:
                raise StorageError(f"Version {pinned} of {key} is no longer in the bucket: it cannot be made current.")
            latest = next(v for v in history if v.is_latest)
            if latest.version_id == pinned:
                return
            if rounds == 0:
                raise StorageError(
                    f"{key} kept getting new versions while it was repaired: stop whatever writes it, then run "
                    f"`backstop repair {database} {backup_id}` again."
                )
            rounds -= 1
            if not latest.is_delete_marker:
                destination = self._store.quarantine_key(key, latest.version_id)
                self._store.copy_version(key, latest.version_id, destination)
                quarantined.append(destination)
            self._store.remove_version(latest)
            removed.append(latest)
            log.warning("repair of %s: took version %s off %s", backup_id, latest.version_id, key)
            history = self._store.versions(key)

    def _retag(self, manifest: Manifest, pinned: tuple[tuple[str, str | None], ...]) -> tuple[str, ...]:
        """Put back the tags lifecycle filters on where the pinned versions lost or changed them."""
        expected = self._store.tags_for(manifest.database, manifest.engine, manifest.retention_tier)
        retagged: list[str] = []
        for key, version_id in pinned:
            if version_id is None:
                continue
            tags = self._store.object_tags(key, version_id)
            wanted = {**tags, **expected}
            if wanted != tags:
                self._store.put_object_tags(key, version_id, wanted)
                retagged.append(key)
        return tuple(retagged)
