"""The project's own exceptions.

Adapters turn library and AWS errors into these; the command line prints their message as one
sentence and exits 1; the restore state machine (later) branches on their class names through
``Cls.__name__``. Messages never contain secrets: they are built from names, keys and counts only.
"""

from __future__ import annotations


class BackstopError(Exception):
    """Base of every error a user or operator can act on; ``str(exc)`` is the one sentence to show."""


class ConfigError(BackstopError):
    """backstop.yaml is missing, unreadable or invalid."""


class InvalidNameError(BackstopError):
    """A database, backup id or target name failed the allow-list."""


class UnknownDatabaseError(BackstopError):
    """The configuration has no database by that name."""


class BackupNotFoundError(BackstopError):
    """No committed backup (manifest) matches the request."""


class BackupAlreadyRunningError(BackstopError):
    """Another run holds the backup lock of this database."""


class SourceError(BackstopError):
    """The source database or directory could not be read."""


class SourceLockedError(SourceError):
    """The source stayed locked by another writer past the bounded retries."""


class IntegrityError(BackstopError):
    """An engine integrity check failed (source snapshot, downloaded artifact or restored target)."""


class ChecksumMismatchError(IntegrityError):
    """Stored bytes do not match the size or SHA-256 recorded in the manifest."""


class ManifestError(IntegrityError):
    """A manifest is missing, unparsable, or fails its own checksum."""


class DecompressionBombError(IntegrityError):
    """Decompressed output grew past the raw size recorded in the manifest."""


class UnsafeArchiveError(IntegrityError):
    """A tar member would land outside the restore target (absolute, ``..``, link out, device)."""


class WorkDirError(BackstopError):
    """The work directory is missing, full or not writable: no run directory could be made in it."""


class ReadOnlyReplicaError(BackstopError):
    """A write was asked of the vault's replica, which Backstop only reads."""


class UploadError(BackstopError):
    """S3 refused or lost the upload after retries; the multipart upload was aborted."""


class StorageError(BackstopError):
    """S3 could not be reached or refused a read or a listing."""


class DeadlineExceededError(BackstopError):
    """A run stopped at its deadline, a margin before its function's timeout (``backstop.deadline``)."""


class RestoreError(BackstopError):
    """A restore could not be carried out; the target was left as it was (or rolled back)."""


class ValidationError(RestoreError):
    """Restored data does not match the manifest (row counts, integrity)."""


class ManualInterventionError(RestoreError):
    """A failed restore could not be fully undone: the message says where the data is; touch nothing else."""


class AlertDeliveryError(BackstopError):
    """The alerts topic refused or could not be reached for an alert that must not be lost."""


class ApprovalInvalidError(RestoreError):
    """A destructive step found no valid approval grant for exactly this execution, target and backup."""


class UnauthorizedStepError(RestoreError):
    """A restore step was invoked outside its own running execution (a direct invoke or a replay): refused."""


class IdentityProofError(BackstopError):
    """A caller's proof of identity (a signed sts:GetCallerIdentity request) is missing, stale or not accepted."""


class TargetLockedError(RestoreError):
    """Another restore holds the lock of this target."""


class ApprovalNotPendingError(RestoreError):
    """No approval is waiting for this execution (never asked, already answered, or timed out)."""


class RestoreTableError(BackstopError):
    """The restore table could not be read or written."""
