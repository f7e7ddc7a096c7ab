"""SNS adapter for alerts. Messages are built from names, ids and error sentences only: never secrets."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from backstop.errors import AlertDeliveryError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)


class SnsNotifier:
    """Publishes alerts to one topic; a publish failure is logged, never raised over the original failure.

    ``strict`` is for a caller whose only job is the alert (the failure-alert function): there a
    publish failure raises AlertDeliveryError, so the record is retried instead of lost.
    """

    def __init__(self, client: SNSClient, topic_arn: str, *, strict: bool = False) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._strict = strict

    def publish(self, subject: str, message: dict[str, object]) -> None:
        try:
            self._client.publish(TopicArn=self._topic_arn, Subject=subject[:100], Message=json.dumps(message, indent=2))
        except (ClientError, BotoCoreError) as exc:
            log.exception("could not publish the alert %r", subject)
            if self._strict:
                raise AlertDeliveryError(f"The alert {subject!r} could not be published to the alerts topic.") from exc
