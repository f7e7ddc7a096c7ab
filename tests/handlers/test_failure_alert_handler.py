"""The failure-alert function, driven with events/failure/: what reaches the alerts topic, and what never does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from backstop.adapters.sns import SnsNotifier
from backstop.errors import AlertDeliveryError, ConfigError
from backstop.events import AsyncInvocationRecord, ScheduledBackupEvent
from backstop.handlers.failure_alert import handler
from tests.conftest import REGION
from tests.handlers import EVENTS, SENTINEL_SECRET, AlertInbox, FakeContext, load_event, metric_values

TIMEOUT = "failure/destination-timeout.json"
DLQ = "failure/dlq-message.json"


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto SNS and SQS, the function's environment (only the topic), and the operator's inbox."""
    from moto import mock_aws

    with mock_aws():
        inbox = AlertInbox.create()
        monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
        monkeypatch.delenv("BACKSTOP_BUCKET", raising=False)
        yield inbox


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler(event, FakeContext(function_name="backstop-failure-alert"))  # type: ignore[arg-type]
    return result


def dead_letter(body: str, **attributes: str) -> dict[str, Any]:
    """The DLQ sample's first record with another body and some attributes replaced."""
    record = copy.deepcopy(load_event(DLQ)["Records"][0])
    record["body"] = body
    for name, value in attributes.items():
        record["messageAttributes"][name]["stringValue"] = value
    return record


def unpublishable(monkeypatch: pytest.MonkeyPatch, refuse: Any) -> None:
    """Make SNS refuse the publishes for which ``refuse(subject)`` holds, as a topic whose KMS key denies it would."""

    def build(settings: Any) -> SnsNotifier:
        client = boto3.client("sns", region_name=REGION)

        def check(params: dict[str, Any], **_: Any) -> None:
            if refuse(params["Subject"]):
                raise ClientError({"Error": {"Code": "KMSAccessDenied", "Message": "denied"}}, "Publish")

        client.meta.events.register("before-parameter-build.sns.Publish", check)
        return SnsNotifier(client, settings.alerts_topic_arn, strict=True)

    monkeypatch.setattr("backstop.handlers.failure_alert.build_alert_notifier", build)


# -- the samples are the contract -------------------------------------------------------------------


def test_the_destination_sample_is_a_record_of_the_scheduled_backup_input() -> None:
    record = AsyncInvocationRecord.model_validate(load_event(TIMEOUT))

    assert record.request_context.condition == "RetriesExhausted"
    assert ScheduledBackupEvent.model_validate(record.request_payload).database.name == "orders"
    assert record.request_payload == load_event("backup/scheduled-orders.json")


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("failure/dlq-*.json")), ids=lambda p: p.name)
def test_every_dead_letter_sample_carries_a_scheduled_backup_input(sample: Path) -> None:
    for record in json.loads(sample.read_text())["Records"]:
        assert ScheduledBackupEvent.model_validate_json(record["body"]).database.name == "orders"
        assert {"ERROR_CODE", "ERROR_MESSAGE", "RETRY_ATTEMPTS", "TARGET_ARN"} <= set(record["messageAttributes"])


# -- Lambda OnFailure destination -----------------------------------------------------------------


def test_a_backup_that_timed_out_on_every_attempt_is_alerted(
    inbox: AlertInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the record Lambda sends after the third attempt of orders' 02:00 backup timed out
    # when it reaches the function
    result = invoke(load_event(TIMEOUT))

    # then one alert names the database, the would-be backup, the error and the attempts
    [envelope] = inbox.envelopes()
    assert envelope["Subject"] == "Backstop: backup of orders failed (Sandbox.Timedout)"
    assert AlertInbox.message(envelope) == {
        "event": "backup_failed",
        "database": "orders",
        "backup_id": "orders-20261121T020000Z",
        "scheduled_time": "2026-11-21T02:00:00+00:00",
        "error": "Sandbox.Timedout",
        "message": "RequestId: 5f0c1a7e-3b9d-4c2e-9a41-7d2e8b6c0f13 Error: Task timed out after 900.00 seconds",
        "detected_by": "lambda-on-failure-destination",
        "attempts": 3,
        "condition": "RetriesExhausted",
        "source": "arn:aws:lambda:us-east-1:123456789012:function:backstop-backup:$LATEST",
    }
    assert result == {"alerts": 1}
    assert metric_values(capsys.readouterr().out, "BackupFailureAlerts") == [({"service": "failure-alert"}, 1.0)]


def test_an_invocation_too_old_to_run_is_alerted_without_a_response(inbox: AlertInbox) -> None:
    # given a record of an event that expired in Lambda's queue (throttled for hours): no response at all
    event = load_event(TIMEOUT)
    event["requestContext"]["condition"] = "EventAgeExceeded"
    event["requestContext"]["approximateInvokeCount"] = 0
    del event["responseContext"], event["responsePayload"]

    # when it reaches the function
    invoke(event)

    # then the alert says so
    [alert] = inbox.alerts()
    assert (alert["database"], alert["error"], alert["condition"]) == ("orders", "EventAgeExceeded", "EventAgeExceeded")
    assert alert["attempts"] is None


def test_a_success_record_publishes_nothing(inbox: AlertInbox, capsys: pytest.CaptureFixture[str]) -> None:
    # given a destination record of a successful run (an OnSuccess destination wired here by mistake)
    event = load_event(TIMEOUT)
    event["requestContext"]["condition"] = "Success"
    event["responsePayload"] = {"backup_id": "orders-20261121T020000Z", "created": True}
    del event["responseContext"]["functionError"]

    # when it reaches the function
    result = invoke(event)

    # then the inbox stays empty and the metric says zero
    assert inbox.envelopes() == []
    assert result == {"alerts": 0}
    assert metric_values(capsys.readouterr().out, "BackupFailureAlerts") == [({"service": "failure-alert"}, 0.0)]


def test_an_alert_that_cannot_be_published_fails_the_invocation_so_lambda_retries_it(
    inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a topic that refuses every publish
    unpublishable(monkeypatch, lambda subject: True)

    # when the record arrives, then the function fails instead of losing the alert
    with pytest.raises(AlertDeliveryError):
        invoke(load_event(TIMEOUT))


def test_without_an_alerts_topic_the_function_refuses_to_run(
    inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKSTOP_ALERTS_TOPIC_ARN")

    with pytest.raises(ConfigError, match="BACKSTOP_ALERTS_TOPIC_ARN"):
        invoke(load_event(TIMEOUT))


# -- the schedules' dead-letter queue -------------------------------------------------------------


def test_a_dead_letter_message_is_alerted_and_deleted(inbox: AlertInbox, capsys: pytest.CaptureFixture[str]) -> None:
    # given the message Scheduler left after its retries to invoke orders' backup ran out
    # when the queue delivers it
    result = invoke(load_event(DLQ))

    # then one alert names the database, the would-be backup and Scheduler's error, and the message is done
    assert result == {"batchItemFailures": []}
    [envelope] = inbox.envelopes()
    assert envelope["Subject"] == "Backstop: backup of orders failed (AWS.Scheduler.InternalServerError)"
    alert = AlertInbox.message(envelope)
    assert alert["event"] == "backup_failed"
    assert alert["backup_id"] == "orders-20261121T020000Z"
    assert alert["message"] == "Unexpected error occurred while processing the request."
    assert (alert["detected_by"], alert["attempts"], alert["condition"]) == (
        "scheduler-dead-letter-queue",
        4,
        "MaximumRetryAttempts",
    )
    assert alert["source"] == "arn:aws:scheduler:us-east-1:123456789012:schedule/backstop/backstop-orders"
    assert metric_values(capsys.readouterr().out, "BackupFailureAlerts") == [({"service": "failure-alert"}, 1.0)]


def test_a_truncated_dead_letter_body_still_gives_an_alert_with_the_scheduled_time(inbox: AlertInbox) -> None:
    # given a message whose body Scheduler truncated
    record = dead_letter('{"database":{"name":"orders","engi', IS_PAYLOAD_TRUNCATED="true")

    # when the queue delivers it
    result = invoke({"Records": [record]})

    # then an alert still arrives, with the time from the attributes (the database is unknown)
    assert result == {"batchItemFailures": []}
    [alert] = inbox.alerts()
    assert (alert["event"], alert["database"], alert["scheduled_time"]) == (
        "invocation_failed",
        None,
        "2026-11-21T02:00:00+00:00",
    )


def test_an_on_failure_record_routed_through_the_queue_is_read_as_one(inbox: AlertInbox) -> None:
    # given the timeout record as the body of a queue message (OnFailure destination = SQS queue)
    record = dead_letter(json.dumps(load_event(TIMEOUT)))
    record["messageAttributes"] = {}

    # when the queue delivers it
    invoke({"Records": [record]})

    # then it is alerted like the record itself
    [alert] = inbox.alerts()
    assert (alert["error"], alert["detected_by"], alert["attempts"]) == (
        "Sandbox.Timedout",
        "lambda-on-failure-destination",
        3,
    )


def test_only_the_messages_whose_alert_could_not_be_published_are_returned_to_the_queue(
    inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given two dead letters, orders and uploads, and a topic that refuses the uploads alert
    orders = dead_letter(load_event(DLQ)["Records"][0]["body"])
    uploads_input = json.loads(orders["body"])
    uploads_input["database"] = {"name": "uploads", "engine": "files", "path": "/mnt/data/uploads"}
    uploads = dead_letter(json.dumps(uploads_input))
    uploads["messageId"] = "0b9e7c1d-5a3f-4e2b-8c6d-1f4a7e9b2c35"
    unpublishable(monkeypatch, lambda subject: "uploads" in subject)

    # when the queue delivers both in one batch
    result = invoke({"Records": [orders, uploads]})

    # then orders is alerted and deleted, and only uploads goes back to the queue to be retried
    assert result == {"batchItemFailures": [{"itemIdentifier": uploads["messageId"]}]}
    assert [alert["database"] for alert in inbox.alerts()] == ["orders"]
    assert metric_values(capsys.readouterr().out, "BackupFailureAlerts") == [({"service": "failure-alert"}, 1.0)]


def test_a_batch_whose_alerts_all_fail_fails_the_invocation(inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch) -> None:
    unpublishable(monkeypatch, lambda subject: True)

    with pytest.raises(BatchProcessingError):
        invoke(load_event(DLQ))

    assert inbox.envelopes() == []


# -- nothing secret is forwarded ------------------------------------------------------------------


def test_a_destination_record_carrying_a_secret_in_unexpected_fields_forwards_none_of_it(inbox: AlertInbox) -> None:
    # given a record whose payload and error carry a sentinel secret in fields nobody expects
    event = load_event(TIMEOUT)
    event["requestPayload"]["database"]["password"] = SENTINEL_SECRET
    event["requestPayload"]["connection"] = {"dsn": f"postgresql://backup:{SENTINEL_SECRET}@db.internal/orders"}
    event["responsePayload"] = {
        "errorType": "OperationalError",
        "errorMessage": f"connection to postgresql://backup:{SENTINEL_SECRET}@db.internal/orders failed: "
        f'password={SENTINEL_SECRET} token: "{SENTINEL_SECRET}" key AKIAIOSFODNN7EXAMPLE',
        "stackTrace": [f'  File "/var/task/x.py", line 1, in connect("{SENTINEL_SECRET}")'],
        "extra": SENTINEL_SECRET,
    }
    event["requestContext"]["secretNote"] = SENTINEL_SECRET

    # when it reaches the function
    invoke(event)

    # then the alert still names the database and the error, and the secret appears nowhere in what was sent
    [envelope] = inbox.envelopes()
    alert = AlertInbox.message(envelope)
    assert (alert["database"], alert["error"]) == ("orders", "OperationalError")
    assert "[redacted]" in alert["message"]
    assert SENTINEL_SECRET not in json.dumps(envelope)
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(envelope)


def test_a_dead_letter_carrying_a_secret_in_unexpected_fields_forwards_none_of_it(inbox: AlertInbox) -> None:
    # given a dead letter whose body and error message carry a sentinel secret
    body = json.loads(load_event(DLQ)["Records"][0]["body"])
    body["database"]["password"] = SENTINEL_SECRET
    body["api_token"] = SENTINEL_SECRET
    record = dead_letter(json.dumps(body), ERROR_MESSAGE=f"Target refused: Authorization: Bearer {SENTINEL_SECRET}")
    record["messageAttributes"]["X_CUSTOM"] = {"stringValue": SENTINEL_SECRET, "dataType": "String"}

    # when the queue delivers it
    invoke({"Records": [record]})

    # then the alert names the database, and the secret appears nowhere in what was sent
    [envelope] = inbox.envelopes()
    assert AlertInbox.message(envelope)["database"] == "orders"
    assert SENTINEL_SECRET not in json.dumps(envelope)


def test_names_and_error_types_outside_their_allow_lists_are_not_forwarded(inbox: AlertInbox) -> None:
    # given a record whose database name and error type are not what Backstop would ever produce
    event = load_event(TIMEOUT)
    event["requestPayload"]["database"]["name"] = f"../{SENTINEL_SECRET}\n"
    event["responsePayload"]["errorType"] = f"Boom {SENTINEL_SECRET}\nSubject: x"

    # when it reaches the function
    invoke(event)

    # then neither is forwarded, and the alert falls back to what is certain
    [envelope] = inbox.envelopes()
    alert = AlertInbox.message(envelope)
    assert (alert["database"], alert["backup_id"], alert["error"]) == (None, None, "FunctionError")
    assert envelope["Subject"] == "Backstop: scheduled invocation failed (FunctionError)"
    assert SENTINEL_SECRET not in json.dumps(envelope)
