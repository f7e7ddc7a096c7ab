"""Lambda entry point of the keep-last-good guard: the newest good backups of each database are held.

The databases and their retention are the stack's catalog (``backstop.config.catalog``); the event carries
the time only.

Metrics (``backstop.observability``), emitted on every run so a missing data point means the guard did not
run: ``Metric.HELD_BACKUPS`` per database (dimensions ``service=guard``, ``database``), fewer than the
database's ``keep_last`` while it has fewer good backups than that, and in all (dimension
``service=guard``), whose absence for a day is the ``guard-not-running`` alarm.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_catalog, build_notifier, build_store
from backstop.config.environment import GuardSettings
from backstop.deadline import Deadline
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.retention_guard import RetentionGuard
from backstop.sweep_events import GuardEvent

logger = Logger(service=Service.GUARD.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.GUARD)
tracer = Tracer(service=Service.GUARD.log_name, patch_modules=TRACED_MODULES)

REMEDY = (
    "the databases it did not reach are not held until a run reaches them: keep fewer backups per database "
    "(retention) so that one run fits"
)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    deadline = Deadline(context.get_remaining_time_in_millis, remedy=REMEDY)
    settings = GuardSettings.from_env()
    request = GuardEvent.parse(event)
    checked_at = request.checked_at or datetime.now(UTC)
    databases = build_catalog(settings).databases()
    guard = RetentionGuard(
        {db.name: db.retention for db in databases},
        build_store(settings),
        clock=lambda: checked_at,
        notifier=build_notifier(settings),
        deadline=deadline,
    )
    report = guard.run()
    for database, held in report.held.items():
        # One flush per database: an EMF document carries one set of dimension values.
        metrics.add_dimension(name="database", value=database)
        metrics.add_metric(name=Metric.HELD_BACKUPS, unit=MetricUnit.Count, value=len(held))
        metrics.flush_metrics()
    metrics.add_metric(name=Metric.HELD_BACKUPS, unit=MetricUnit.Count, value=sum(len(h) for h in report.held.values()))
    logger.info(
        "guard done",
        extra={"newly_held": report.newly_held, "released": report.released, "timed_out": report.timed_out},
    )
    return {"checked_at": checked_at.isoformat(), **report.as_dict()}
