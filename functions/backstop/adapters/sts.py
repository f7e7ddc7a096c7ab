"""The server side of an identity proof: send the signed request to STS, read who signed it.

The proof names the URL it was signed for, but the request only ever goes to this function's own
STS endpoint (the region's, or the emulator's locally): a proof signed for any other host is
refused before anything is sent, so a client can never point the check at a server that answers
what it likes. Only the headers SigV4 needs are forwarded.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from backstop.errors import IdentityProofError
from backstop.identity import (
    GET_CALLER_IDENTITY,
    INTENT_HEADER,
    IdentityProof,
    Intent,
    Principal,
    intent,
    signed_at,
    signed_headers,
)

MAX_AGE = timedelta(minutes=15)
"""STS refuses older signatures too; checked here so the refusal names the reason."""
CLOCK_SKEW = timedelta(minutes=5)
_FORWARDED = ("authorization", "x-amz-date", "x-amz-security-token", "content-type", INTENT_HEADER.lower())
_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def sts_endpoint(region: str) -> str:
    """Where this function sends proofs: the regional STS endpoint, or the configured endpoint (emulator)."""
    configured = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    return (configured or f"https://sts.{region}.amazonaws.com").rstrip("/") + "/"


class StsIdentityVerifier:
    """Turns a proof into the Principal STS says signed it, or IdentityProofError naming what is wrong."""

    def __init__(self, endpoint: str, account: str, *, timeout: float = 10) -> None:
        self._endpoint = endpoint
        self._account = account
        self._timeout = timeout

    def verify(self, proof: IdentityProof, expected_intent: str, now: datetime, *, not_before: datetime) -> Principal:
        """The principal that signed ``proof`` for ``expected_intent``, signed after ``not_before`` and recently."""
        if urlsplit(proof.url).netloc.lower() != urlsplit(self._endpoint).netloc.lower():
            raise IdentityProofError(
                f"The identity proof was signed for {urlsplit(proof.url).netloc}, not for {self._endpoint}: refused."
            )
        if proof.body != GET_CALLER_IDENTITY:
            raise IdentityProofError("The identity proof is not a GetCallerIdentity request: refused.")
        if proof.header(INTENT_HEADER) != expected_intent or INTENT_HEADER.lower() not in signed_headers(proof):
            raise IdentityProofError(
                f"The identity proof was not signed for {expected_intent!r}: a proof is good for one action only."
            )
        at = signed_at(proof)
        if at is None or at < not_before - CLOCK_SKEW or at < now - MAX_AGE or at > now + CLOCK_SKEW:
            raise IdentityProofError("The identity proof is stale or from the future: sign a new one (run it again).")
        return self._caller(proof)

    def _caller(self, proof: IdentityProof) -> Principal:
        headers = {k: v for k, v in proof.headers.items() if k.lower() in _FORWARDED}
        request = urllib.request.Request(  # noqa: S310 - the endpoint is ours (https in AWS), never the client's
            self._endpoint, data=proof.body.encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - see above
                document = response.read()
        except urllib.error.HTTPError as exc:
            raise IdentityProofError(
                f"STS did not accept the identity proof (HTTP {exc.code}): the signature or credentials are not valid."
            ) from None
        except OSError as exc:
            raise IdentityProofError(f"STS could not be reached to check the identity proof ({exc}).") from None
        try:
            root = ElementTree.fromstring(document)  # noqa: S314 - the response of our own STS endpoint
        except ElementTree.ParseError:
            raise IdentityProofError("STS answered the identity proof with something that is not XML.") from None
        found = {name: root.findtext(f".//sts:{name}", namespaces=_NS) for name in ("UserId", "Arn", "Account")}
        if not all(found.values()):
            found = {name: root.findtext(f".//{name}") for name in ("UserId", "Arn", "Account")}
        user_id, arn, account = found["UserId"], found["Arn"], found["Account"]
        if not (user_id and arn and account):
            raise IdentityProofError("STS's answer to the identity proof names no caller.")
        if account != self._account:
            raise IdentityProofError(f"The identity proof is from account {account}, not this stack's {self._account}.")
        return Principal.of(user_id, arn, account)


def sign_proof(
    action: Intent, execution_arn: str, *, session: Any = None, endpoint_url: str | None = None
) -> IdentityProof:
    """Sign (not send) a GetCallerIdentity request with this machine's AWS credentials, bound to the action.

    It is signed for the STS endpoint of the execution's region, the one the approval component sends
    it to (or the endpoint ``AWS_ENDPOINT_URL`` names, locally).
    """
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = session or boto3.Session()
    region = execution_arn.split(":")[3]
    credentials = session.get_credentials()
    if credentials is None:
        from backstop.errors import IdentityProofError

        raise IdentityProofError("No AWS credentials are configured here: Backstop cannot prove who you are.")
    sts = session.client("sts", region_name=region, endpoint_url=endpoint_url)
    endpoint = sts.meta.endpoint_url.rstrip("/") + "/"
    request = AWSRequest(
        method="POST",
        url=endpoint,
        data=GET_CALLER_IDENTITY,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            INTENT_HEADER: intent(action, execution_arn),
        },
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    return IdentityProof(url=endpoint, headers=dict(request.headers.items()), body=GET_CALLER_IDENTITY)


def caller_arn(client: Any) -> str:
    """Who this machine's credentials are, as STS says (``GetCallerIdentity``)."""
    return str(client.get_caller_identity()["Arn"])
