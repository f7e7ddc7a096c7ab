"""The Notifier contract: an alert reaches the operator as a subject and a JSON message, or says it could not.

Every test runs against ``FakeNotifier`` and ``SnsNotifier`` on moto SNS, read through an SQS queue
subscribed to the topic (what an operator receives). Every service alerts through ``publish`` and goes
on: a lost alert must not hide the failure it reports. Only the failure-alert function, whose one job
is the alert, uses a strict notifier, whose AlertDeliveryError makes Lambda retry the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backstop.adapters.sns import SnsNotifier
from backstop.errors import AlertDeliveryError
from backstop.ports import Notifier
from tests.conftest import REGION
from tests.fakes.notifier import FakeNotifier
from tests.handlers import AlertInbox

Delivered = list[tuple[str, dict[str, Any]]]


@dataclass
class Topic:
    """The alerts topic: notifiers publishing to it, one publishing to a topic that refuses, and what arrived."""

    notifier: Callable[[bool], Notifier]
    refusing: Callable[[bool], Notifier]
    delivered: Callable[[], Delivered]


def _fake_topic() -> Topic:
    fake = FakeNotifier()

    def notifier(strict: bool) -> Notifier:
        fake.strict = strict
        return fake

    def refusing(strict: bool) -> Notifier:
        fake.refuse()
        return notifier(strict)

    return Topic(notifier, refusing, lambda: list(fake.alerts))


@pytest.fixture(params=["fake", "real"])
def topic(request: pytest.FixtureRequest) -> Iterator[Topic]:
    if request.param == "fake":
        yield _fake_topic()
        return
    with mock_aws():
        inbox = AlertInbox.create()
        sns = boto3.client("sns", region_name=REGION)
        gone = sns.create_topic(Name="backstop-alerts-gone")["TopicArn"]
        sns.delete_topic(TopicArn=gone)
        yield Topic(
            lambda strict: SnsNotifier(sns, inbox.topic_arn, strict=strict),
            lambda strict: SnsNotifier(sns, gone, strict=strict),
            lambda: [(str(e["Subject"]), AlertInbox.message(e)) for e in inbox.envelopes()],
        )


STRICTNESS = pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])


@STRICTNESS
def test_an_alert_arrives_with_its_subject_and_its_message(topic: Topic, strict: bool) -> None:
    # when a service publishes an alert
    message: dict[str, object] = {
        "event": "backup_failed",
        "database": "orders",
        "attempts": 2,
        "condition": None,
        "details": {"skipped": ["orders-20261120T020000Z"], "passed": False},
    }
    topic.notifier(strict).publish("Backstop: backup of orders failed", message)

    # then the operator receives exactly that subject and message
    assert topic.delivered() == [("Backstop: backup of orders failed", message)]


def test_every_alert_arrives_once_in_the_order_published(topic: Topic) -> None:
    notifier = topic.notifier(False)

    for i in range(3):
        notifier.publish(f"Backstop: alert {i}", {"event": "backup_stale", "n": i})

    assert topic.delivered() == [(f"Backstop: alert {i}", {"event": "backup_stale", "n": i}) for i in range(3)]


def test_a_subject_longer_than_sns_takes_arrives_cut_to_a_hundred_characters(topic: Topic) -> None:
    subject = "Backstop: restore of orders into staging: " + "x" * 200

    topic.notifier(False).publish(subject, {"event": "restore_failed"})

    assert topic.delivered() == [(subject[:100], {"event": "restore_failed"})]


def test_a_message_that_is_not_json_is_a_bug_raised_before_anything_is_sent(topic: Topic) -> None:
    # a time object must be turned into text by the service (``isoformat``): the notifier does not guess
    with pytest.raises(TypeError):
        topic.notifier(False).publish("Backstop: x", {"at": datetime(2026, 11, 22, tzinfo=UTC)})

    assert topic.delivered() == []


def test_a_topic_that_refuses_loses_the_alert_without_failing_the_service(topic: Topic) -> None:
    # when a service publishes to a topic that refuses (deleted, or its key denies)
    topic.refusing(False).publish("Backstop: backup of orders failed", {"event": "backup_failed"})

    # then the publish returns (the service's own outcome stands) and nothing arrives
    assert topic.delivered() == []


def test_a_strict_notifier_says_when_the_topic_refuses_so_the_alert_is_retried(topic: Topic) -> None:
    with pytest.raises(AlertDeliveryError, match=r"The alert 'Backstop: backup of orders failed' could not be"):
        topic.refusing(True).publish("Backstop: backup of orders failed", {"event": "backup_failed"})

    assert topic.delivered() == []
