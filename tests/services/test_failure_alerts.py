"""What the failure alerts keep of an error message: the sentence, without anything credential-like."""

from __future__ import annotations

import pytest

from backstop.services.failure_alerts import MESSAGE_LIMIT, safe_error_type, safe_message

SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    "text",
    [
        f"password={SECRET}",
        f"PGPASSWORD: {SECRET}",
        f'{{"api_key": "{SECRET} with spaces"}}',
        f"Authorization: Bearer {SECRET}",
        f"could not connect to mysql://backup:{SECRET}@db:3306/orders",
        f"db_token='{SECRET}' expired",
        f"-----BEGIN PRIVATE KEY----- {SECRET} -----END PRIVATE KEY-----",
    ],
)
def test_credential_like_values_are_redacted(text: str) -> None:
    assert SECRET not in safe_message(text, "default")
    assert "[redacted]" in safe_message(text, "default")


@pytest.mark.parametrize(
    "text",
    [
        "RequestId: 5f0c1a7e-3b9d-4c2e-9a41-7d2e8b6c0f13 Error: Task timed out after 900.00 seconds",
        "The snapshot of orders fails integrity_check (row 3 missing from index orders_customer); nothing committed.",
        "S3 failed a part of backups/orders/2026/11/21/orders-20261121T020000Z.sqlite.zst after retries; aborted.",
    ],
)
def test_ordinary_error_sentences_pass_unchanged(text: str) -> None:
    assert safe_message(text, "default") == text


def test_a_message_is_one_bounded_line() -> None:
    message = safe_message("first line\nsecond\tline " + "x" * 1000, "default")

    assert "\n" not in message
    assert len(message) == MESSAGE_LIMIT
    assert message.startswith("first line second line")


@pytest.mark.parametrize("value", [None, "", "   ", 42])
def test_a_missing_message_gives_the_default(value: object) -> None:
    assert safe_message(value, "default") == "default"


@pytest.mark.parametrize("value", ["Sandbox.Timedout", "Runtime.OutOfMemory", "IntegrityError", "AWS.Scheduler.X"])
def test_error_types_as_aws_and_python_name_them_are_kept(value: str) -> None:
    assert safe_error_type(value, "default") == value


@pytest.mark.parametrize("value", ["Boom\nSubject: x", "a b", "", "x" * 200, None, {"type": "x"}])
def test_anything_else_as_an_error_type_gives_the_default(value: object) -> None:
    assert safe_error_type(value, "default") == "default"
