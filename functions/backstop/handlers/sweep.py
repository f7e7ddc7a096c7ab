"""Lambda entry point of the verification sweep: re-read stored backups within a byte budget.

The databases are the stack's catalog (``backstop.config.catalog``), the budget the function's environment; the event
carries the time only.

Metrics (``backstop.observability``), emitted on every run so a missing data point means the sweep did
not run: ``Metric.SWEEP_BACKUPS_CHECKED``, ``SWEEP_BYTES_READ``, ``SWEEP_MISMATCHES`` (backups found corrupt),
``SWEEP_UNREADABLE`` (backups that could not be read twice in a row) and ``SWEEP_OVERWRITTEN`` (backups
whose key serves another version than the pinned one), once per database
(dimensions ``service=sweep``, ``database``) and once for the whole run (dimension ``service=sweep``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import build_catalog, build_notifier, build_store
from backstop.config.environment import SweepSettings
from backstop.deadline import Deadline
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.services.sweep import SweepScope, SweepService, SweepTally
from backstop.sweep_events import SweepEvent

logger = Logger(service=Service.SWEEP.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.SWEEP)
tracer = Tracer(service=Service.SWEEP.log_name, patch_modules=TRACED_MODULES)

REMEDY = (
    "lower sweep.budget (the backups it did not read come first in the next run), or verify a backup too large "
    "for one run with `backstop verify`"
)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    deadline = Deadline(context.get_remaining_time_in_millis, remedy=REMEDY)
    settings = SweepSettings.from_env()
    request = SweepEvent.parse(event)
    checked_at = request.checked_at or datetime.now(UTC)
    databases = build_catalog(settings).databases()
    service = SweepService(
        SweepScope(
            tuple(db.name for db in databases), settings.budget, retention={db.name: db.retention for db in databases}
        ),
        build_store(settings),
        build_notifier(settings),
        clock=lambda: checked_at,
        deadline=deadline,
    )
    report = service.run()
    for database in report.databases:
        # One flush per database: an EMF document carries one set of dimension values.
        metrics.add_dimension(name="database", value=database)
        _add_metrics(report.tally(database))
        metrics.flush_metrics()
    _add_metrics(report.tally())
    logger.info(
        "sweep done",
        extra={
            "corrupt": report.corrupt,
            "unreadable": report.unreadable,
            "skipped": report.skipped,
            "timed_out": report.timed_out,
        },
    )
    return report.to_dict()


def _add_metrics(tally: SweepTally) -> None:
    metrics.add_metric(name=Metric.SWEEP_BACKUPS_CHECKED, unit=MetricUnit.Count, value=tally.checked)
    metrics.add_metric(name=Metric.SWEEP_BYTES_READ, unit=MetricUnit.Bytes, value=tally.bytes_read)
    metrics.add_metric(name=Metric.SWEEP_MISMATCHES, unit=MetricUnit.Count, value=tally.corrupt)
    metrics.add_metric(name=Metric.SWEEP_UNREADABLE, unit=MetricUnit.Count, value=tally.unreadable)
    metrics.add_metric(name=Metric.SWEEP_OVERWRITTEN, unit=MetricUnit.Count, value=tally.overwritten)
