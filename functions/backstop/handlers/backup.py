"""Lambda entry point of the scheduled backup: parse the schedule's input, run one backup, return its id.

The event names the database and the time; everything else (where the database is, its secret's
ARN) is the function's environment, so an event can neither redirect the backup nor reach a
database this function was not deployed for.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_notifier, build_store
from backstop.config.environment import DatabaseFunctionSettings
from backstop.deadline import Deadline
from backstop.events import ScheduledBackupEvent
from backstop.manifest import Trigger
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.backup import BackupRequest, BackupService

logger = Logger(service=Service.BACKUP.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.BACKUP)
tracer = Tracer(service=Service.BACKUP.log_name, patch_modules=TRACED_MODULES)

REMEDY = "raise databases[].function.timeout, or use a runner without Lambda's 15-minute limit"


@logger.inject_lambda_context(log_event=False, clear_state=True)  # an event is whatever the invoker sent: not logged
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline(context.get_remaining_time_in_millis, remedy=REMEDY)
    settings = DatabaseFunctionSettings.from_env()
    request = ScheduledBackupEvent.for_database(event, settings.database.name)
    config = settings.config()
    service = BackupService(config, build_store(config), notifier=build_notifier(config), deadline=deadline)
    outcome = service.run(
        BackupRequest(
            database=request.database.name,
            at=request.scheduled_time,
            type="scheduled",
            trigger=Trigger(kind="schedule", by=context.invoked_function_arn),
        )
    )
    manifest = outcome.manifest
    metrics.add_dimension(name="database", value=manifest.database)
    metrics.add_metric(
        name=Metric.BACKUP_COMMITTED if outcome.created else Metric.BACKUP_DUPLICATE, unit=MetricUnit.Count, value=1
    )
    if outcome.created:
        metrics.add_metric(name=Metric.BACKUP_BYTES, unit=MetricUnit.Bytes, value=manifest.object.size)
        duration = (manifest.finished_at - manifest.started_at).total_seconds()
        metrics.add_metric(name=Metric.BACKUP_DURATION, unit=MetricUnit.Seconds, value=duration)
        # 1 when the size departs from the recent backups, 0 otherwise: every committed backup reports it.
        metrics.add_metric(
            name=Metric.BACKUP_SIZE_ANOMALY, unit=MetricUnit.Count, value=int(outcome.size_anomaly is not None)
        )
    return {
        "backup_id": manifest.backup_id,
        "created": outcome.created,
        "key": manifest.object.key,
        "size": manifest.object.size,
        "tier": manifest.retention_tier,
        "warnings": list(outcome.warnings),
    }
