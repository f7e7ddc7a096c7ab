"""Lambda entry point of the freshness check: every watched database's newest backup against its threshold.

Metrics (``backstop.observability``): ``Metric.NEWEST_BACKUP_AGE`` per database that has a backup not
dated in the future (dimensions ``service=freshness``, ``database``), and ``Metric.STALE_DATABASES`` for the
whole check (dimension ``service=freshness``; stale, missing, future-dated and unreadable databases
all count), emitted on every run, so a missing data point means the check itself did not run. With a
replica (``BACKSTOP_REPLICA``), ``Metric.REPLICA_BACKUP_AGE`` per database that the replica holds a backup of.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_notifier, build_replica_store, build_store
from backstop.config.environment import FunctionSettings
from backstop.events import FreshnessCheckEvent
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.freshness import FreshnessRule, FreshnessService, ReplicaCheck

logger = Logger(service=Service.FRESHNESS.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.FRESHNESS)
tracer = Tracer(service=Service.FRESHNESS.log_name, patch_modules=TRACED_MODULES)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FreshnessCheckEvent.model_validate(event)
    settings = FunctionSettings.from_env()
    checked_at = request.checked_at or datetime.now(UTC)
    service = FreshnessService(
        build_store(settings),
        clock=lambda: checked_at,
        notifier=build_notifier(settings),
        replica=(
            ReplicaCheck(build_replica_store(settings), settings.replica.allowed_lag)
            if settings.replica is not None
            else None
        ),
    )
    report = service.check([FreshnessRule(db.name, db.stale_after, db.drill_every) for db in request.databases])
    for entry in report:
        replica_age = entry.replica.age if entry.replica is not None else None
        if replica_age is not None:
            metrics.add_metric(
                name=Metric.REPLICA_BACKUP_AGE, unit=MetricUnit.Seconds, value=replica_age.total_seconds()
            )
        if entry.age is not None:
            metrics.add_metric(name=Metric.NEWEST_BACKUP_AGE, unit=MetricUnit.Seconds, value=entry.age.total_seconds())
        if (drill_age := entry.drill_age_metric) is not None:
            metrics.add_metric(name=Metric.LAST_SUCCESSFUL_DRILL_AGE, unit=MetricUnit.Seconds, value=drill_age)
        if entry.age is not None or replica_age is not None:
            # One flush per database: an EMF document carries one set of dimension values.
            metrics.add_dimension(name="database", value=entry.database)
            metrics.flush_metrics()
    stale = [entry.database for entry in report if entry.is_stale]
    replica_stale = [entry.database for entry in report if entry.replica is not None and entry.replica.is_stale]
    metrics.add_metric(name=Metric.STALE_DATABASES, unit=MetricUnit.Count, value=len(stale))
    logger.info("freshness checked", extra={"stale": stale, "replica_stale": replica_stale, "databases": len(report)})
    return {
        "checked_at": checked_at.isoformat(),
        "stale": stale,
        "replica_stale": replica_stale,
        "databases": [entry.as_dict() for entry in report],
    }
