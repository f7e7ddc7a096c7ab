"""The names the functions report under and the alarms and the dashboard watch: one list for both sides.

The handlers emit metrics (powertools ``Metrics``, CloudWatch embedded metric format) in ``NAMESPACE``
with the dimension ``service`` (and ``database`` where one is meant); ``infra/monitoring.py`` and
``infra/drills.py`` alarm on and chart the same names. Both import them from here, so a metric renamed
on one side only is a name that no longer exists, not an alarm that silently never fires.
"""

from __future__ import annotations

from enum import StrEnum

NAMESPACE = "Backstop"
"""The CloudWatch namespace of every metric a Backstop function emits."""

TRACED_MODULES = ("botocore",)
"""What the X-Ray SDK patches when tracing is on: the AWS calls. Not the database drivers (sqlite3, pymysql),
whose connections it would wrap in proxies, nor plain HTTP."""


class Service(StrEnum):
    """A function's powertools service: the ``service`` dimension of its metrics and its POWERTOOLS_SERVICE_NAME."""

    BACKUP = "backup"
    FRESHNESS = "freshness"
    FAILURE_ALERT = "failure-alert"
    DRILL = "drill"
    SWEEP = "sweep"
    GUARD = "guard"
    RESTORE = "restore"
    APPROVAL = "approval"

    @property
    def log_name(self) -> str:
        """The ``service`` of its log lines and traces: ``backstop-<service>``."""
        return f"backstop-{self.value}"


class Metric(StrEnum):
    """Every metric a handler emits, by the handler (its ``Service``) that emits it."""

    # backup, per database
    BACKUP_COMMITTED = "BackupCommitted"
    BACKUP_DUPLICATE = "BackupDuplicate"
    BACKUP_BYTES = "BackupBytes"
    BACKUP_DURATION = "BackupDuration"
    BACKUP_SIZE_ANOMALY = "BackupSizeAnomaly"  # 1 when its size departs from the recent backups, else 0
    # freshness, per database and (STALE_DATABASES) for the whole check
    NEWEST_BACKUP_AGE = "NewestBackupAgeSeconds"
    REPLICA_BACKUP_AGE = "ReplicaBackupAgeSeconds"
    LAST_SUCCESSFUL_DRILL_AGE = "LastSuccessfulDrillAgeSeconds"
    STALE_DATABASES = "StaleDatabases"
    # failure-alert
    BACKUP_FAILURE_ALERTS = "BackupFailureAlerts"
    # drill, per database
    DRILL_SUCCEEDED = "DrillSucceeded"
    DRILL_DURATION = "DrillDuration"
    DRILL_WITHIN_RTO = "DrillWithinRto"
    # sweep, per database and for the whole run
    SWEEP_BACKUPS_CHECKED = "SweepBackupsChecked"
    SWEEP_BYTES_READ = "SweepBytesRead"
    SWEEP_MISMATCHES = "SweepMismatches"
    SWEEP_UNREADABLE = "SweepUnreadable"
    SWEEP_OVERWRITTEN = "SweepOverwritten"
    # guard, per database and for the whole run
    HELD_BACKUPS = "HeldBackups"
    # restore, per database
    RESTORE_FINISHED = "RestoreFinished"
    RESTORE_FAILED = "RestoreFailed"
