"""Lambda entry point of a scheduled restore drill: restore one backup into scratch space, validate, clean up.

The event names the database (and, when invoked by hand, a backup id of it); the database's
configuration, its drill's scratch server and its restore targets are the function's environment.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_notifier, build_store, restore_ledger
from backstop.config.environment import DatabaseFunctionSettings
from backstop.deadline import Deadline
from backstop.events import ScheduledDrillEvent
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.drill import DrillService

logger = Logger(service=Service.DRILL.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.DRILL)
tracer = Tracer(service=Service.DRILL.log_name, patch_modules=TRACED_MODULES)

REMEDY = "drill a backup this large with `backstop drill` or a runner without Lambda's 15-minute limit"


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline(context.get_remaining_time_in_millis, remedy=REMEDY)
    settings = DatabaseFunctionSettings.from_env()
    request = ScheduledDrillEvent.for_database(event, settings.database.name)
    config = settings.config()
    table_name = os.environ.get("BACKSTOP_RESTORE_TABLE")
    table = restore_ledger(table_name) if table_name else None
    service = DrillService(config, build_store(config), build_notifier(config), table=table, deadline=deadline)
    result = service.run(request.database.name, request.backup)
    logger.info("drill done", extra=result.record())
    metrics.add_dimension(name="database", value=result.database)
    metrics.add_metric(name=Metric.DRILL_SUCCEEDED, unit=MetricUnit.Count, value=int(result.passed))
    metrics.add_metric(name=Metric.DRILL_DURATION, unit=MetricUnit.Seconds, value=result.seconds)
    if result.within_rto is not None:
        metrics.add_metric(name=Metric.DRILL_WITHIN_RTO, unit=MetricUnit.Count, value=int(result.within_rto))
    return result.record()
