"""People on the emulator: IAM users and role sessions with credentials of their own.

moto answers ``sts:GetCallerIdentity`` with the IAM user or assumed-role session that owns the
access key a request was signed with, so the approval component tells these principals apart as
it would in AWS (moto does not check the signature itself: that part is AWS's).
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from local.emulator import ACCOUNT, REGION, Emulator


def user_session(emulator: Emulator, name: str) -> boto3.Session:
    """A new IAM user ``name`` with an access key of its own, as a boto3 session."""
    iam = emulator.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )


def role_sessions(emulator: Emulator, role: str, *session_names: str) -> list[boto3.Session]:
    """A new role ``role`` and one assumed session of it per name (what `aws sts assume-role` gives a person)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    emulator.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    sessions = []
    for name in session_names:
        credentials: dict[str, Any] = emulator.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=name
        )["Credentials"]
        sessions.append(
            boto3.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=REGION,
            )
        )
    return sessions


def environment_of(session: boto3.Session) -> dict[str, str]:
    """The variables that make `aws` and `backstop` in another shell act as ``session``'s principal."""
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("the session has no credentials")
    frozen = credentials.get_frozen_credentials()
    env = {"AWS_ACCESS_KEY_ID": str(frozen.access_key), "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key)}
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = str(frozen.token)
    return env
