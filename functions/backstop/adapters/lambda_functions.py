"""Lambda: the approval component, invoked by a person's own credentials from the command line."""

from __future__ import annotations

import json
from typing import Any

from backstop.errors import RestoreError


class ApprovalComponent:
    """``lambda:InvokeFunction`` of the stack's approval function, synchronously."""

    def __init__(self, client: Any, function: str) -> None:
        self._client = client
        self._function = function

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """The component's answer; its refusal (class name and sentence) raised as a RestoreError."""
        response = self._client.invoke(
            FunctionName=self._function, InvocationType="RequestResponse", Payload=json.dumps(request).encode()
        )
        body = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error = body if isinstance(body, dict) else {}
            message = error.get("errorMessage", "The approval component failed.")
            raise RestoreError(f"{message} ({error.get('errorType')})")
        return dict(body)
