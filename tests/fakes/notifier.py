"""An in-memory ``Notifier``: the alerts an operator would receive from the topic, in order."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from backstop.errors import AlertDeliveryError
from tests.fakes.faults import Faulty, faulty

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 100
"""SNS takes subjects of at most 100 characters; ``SnsNotifier`` cuts longer ones."""


class FakeNotifier(Faulty):
    """Alerts kept in a list, published as ``SnsNotifier`` publishes them.

    ``alerts`` holds ``(subject, message)`` of every alert delivered: the subject cut to 100 characters,
    the message as the JSON an operator reads (a message that is not JSON raises TypeError, as it
    does before anything reaches SNS). ``refuse`` plays a topic that refuses publishes (a KMS key that
    denies, a deleted topic): a refused alert is logged and lost, or with ``strict`` (the failure-alert
    function) raises AlertDeliveryError so the record is retried.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.refused: list[str] = []
        """Subjects of the alerts the topic refused."""
        self._refuses: Callable[[str], bool] = lambda _subject: False

    def refuse(self, when: Callable[[str], bool] = lambda _subject: True) -> None:
        """From now on the topic refuses every publish whose subject ``when`` holds for (all of them by default)."""
        self._refuses = when

    @faulty
    def publish(self, subject: str, message: dict[str, object]) -> None:
        body = json.dumps(message, indent=2)
        sent = subject[:SUBJECT_LIMIT]
        if self._refuses(sent):
            self.refused.append(sent)
            log.error("could not publish the alert %r", subject)
            if self.strict:
                raise AlertDeliveryError(f"The alert {subject!r} could not be published to the alerts topic.")
            return
        self.alerts.append((sent, json.loads(body)))

    def events(self) -> list[str]:
        """The ``event`` of every alert delivered, in order."""
        return [str(message.get("event")) for _, message in self.alerts]
