"""Lambda entry point of the failure alerts: runs that failed where the backup service could not report them.

Two event shapes:

- a Lambda OnFailure destination record (the backup function, invoked asynchronously by its
  schedule, timed out, ran out of memory or crashed on every attempt);
- an SQS batch from the schedules' dead-letter queue (EventBridge Scheduler could not invoke the
  function), processed with partial batch failure reporting: a message whose alert could not be
  published stays in the queue and is retried, the others are deleted. (A message whose body is a
  destination record, when OnFailure is routed through a queue, is read as one.)

Metric (``backstop.observability``, dimension ``service=failure-alert``): ``Metric.BACKUP_FAILURE_ALERTS``,
the number of alerts published by one invocation.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_alert_notifier
from backstop.config.environment import AlertSettings
from backstop.events import AsyncInvocationRecord
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.failure_alerts import FailureAlertService, from_destination_record, from_queue_message

logger = Logger(service=Service.FAILURE_ALERT.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.FAILURE_ALERT)
tracer = Tracer(service=Service.FAILURE_ALERT.log_name, patch_modules=TRACED_MODULES)
processor = BatchProcessor(event_type=EventType.SQS)


# The records may carry more than they should: never log them.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = FailureAlertService(build_alert_notifier(AlertSettings.from_env()))
    if "Records" in event:
        return _dead_letters(event, context, service)
    run = from_destination_record(AsyncInvocationRecord.model_validate(event))
    if run is not None:
        service.alert(run)
    metrics.add_metric(name=Metric.BACKUP_FAILURE_ALERTS, unit=MetricUnit.Count, value=int(run is not None))
    return {"alerts": int(run is not None)}


def _dead_letters(event: dict[str, Any], context: LambdaContext, service: FailureAlertService) -> dict[str, Any]:
    published: list[str] = []

    def alert(record: SQSRecord) -> None:
        attributes = {name: attr.string_value or "" for name, attr in record.message_attributes.items()}
        run = from_queue_message(record.body, attributes)
        if run is not None:
            service.alert(run)
            published.append(record.message_id)

    response = process_partial_response(event=event, record_handler=alert, processor=processor, context=context)
    metrics.add_metric(name=Metric.BACKUP_FAILURE_ALERTS, unit=MetricUnit.Count, value=len(published))
    return dict(response)
