"""Who is acting, as AWS says: signed ``sts:GetCallerIdentity`` requests and the principals they name.

A person proves who they are to Backstop's approval component the way IAM-based auth in other tools
works: their client signs (SigV4) an ``sts:GetCallerIdentity`` request with their own credentials
and hands the signed request over instead of sending it. The approval component sends it to STS
itself: STS checks the signature and answers with the caller's identity, which the client could
not have chosen. The signature covers an ``X-Backstop-Intent`` header naming the action and the
execution (``approve <execution arn>``), so a proof captured on its way cannot be replayed for
another action or another restore, and STS refuses it after 15 minutes anyway.

Principals are compared by what the caller cannot choose (see ``Principal.of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INTENT_HEADER = "X-Backstop-Intent"
GET_CALLER_IDENTITY = "Action=GetCallerIdentity&Version=2011-06-15"
Intent = Literal["request", "approve", "reject"]


def intent(action: Intent, execution_arn: str) -> str:
    """The value a proof's signed intent header must carry for ``action`` on ``execution_arn``."""
    return f"{action} {execution_arn}"


class IdentityProof(BaseModel):
    """A SigV4-signed ``sts:GetCallerIdentity`` request, not sent: the URL it was signed for, headers, body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(min_length=8, max_length=300)
    headers: dict[str, str] = Field(max_length=20)
    body: str = Field(max_length=200)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class Principal:
    """A verified caller: the ``key`` two callers are compared by, and what STS said about them.

    ``key`` is what the caller cannot choose:

    - an IAM user: its unique user id (``AIDA...``); every session and access key of the user is one principal;
    - an assumed role: the role's unique id (``AROA...``), whatever session name the caller picked, so two
      sessions of one role are one principal; except IAM Identity Center roles (``AWSReservedSSO_*``),
      where AWS sets the session name to the signed-in user, so role id and session name together;
    - the account root: the account; a federated user (``GetFederationToken``, name chosen by its caller):
      every federated user of the account is one principal.
    """

    key: str
    arn: str
    user_id: str
    account: str

    @classmethod
    def of(cls, user_id: str, arn: str, account: str) -> Principal:
        resource = arn.split(":", 5)[-1]
        if resource.startswith("assumed-role/"):
            role = resource.split("/")[1]
            role_id, _, session = user_id.partition(":")
            key = f"sso:{role_id}:{session}" if role.startswith("AWSReservedSSO_") else f"role:{role_id}"
        elif resource.startswith("federated-user/"):
            key = f"federated:{account}"
        elif resource == "root":
            key = f"root:{account}"
        else:
            key = f"user:{user_id}"
        return cls(key=key, arn=arn, user_id=user_id, account=account)

    def record(self) -> dict[str, Any]:
        """What the audit trail and the execution keep of a verified principal."""
        return {"verified": True, "principal": self.key, "arn": self.arn}


def unverified(claimed: str) -> dict[str, Any]:
    """The record of a requester who gave no proof (a console start): only what they typed."""
    return {"verified": False, "principal": None, "arn": None, "claimed": claimed}


def signed_at(proof: IdentityProof) -> datetime | None:
    """When the proof was signed (its ``X-Amz-Date``), or None if it carries no readable date."""
    stamp = proof.header("X-Amz-Date") or ""
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def signed_headers(proof: IdentityProof) -> set[str]:
    """The header names the proof's SigV4 signature covers (lower case)."""
    authorization = proof.header("Authorization") or ""
    for part in authorization.replace(",", " ").split():
        if part.startswith("SignedHeaders="):
            return set(part.removeprefix("SignedHeaders=").split(";"))
    return set()
