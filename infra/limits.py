"""What CloudFormation and Lambda would refuse at deploy time, refused at synth in one sentence instead.

- Lambda: a function's environment (every key and value) holds at most 4 KB.
- CloudFormation: a stack holds at most 500 resources.

A value only known at deploy time (an ARN, a name) is counted as ``TOKEN_BYTES``, more than any ARN
or name the stack produces, so a stack that passes here is not refused there for these limits.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_lambda as lambda_

from backstop.errors import ConfigError

LAMBDA_ENVIRONMENT_BYTES = 4096
STACK_RESOURCES = 500
TOKEN_BYTES = 128


class DeploymentLimitError(ConfigError):
    """The configuration would produce a template that AWS refuses."""


def _size(value: Any) -> int:
    """Bytes of a resolved template value: text as UTF-8, each intrinsic as ``TOKEN_BYTES``."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, dict) and "Fn::Join" in value:
        _separator, parts = value["Fn::Join"]
        return sum(_size(part) for part in parts)
    if isinstance(value, dict):
        return TOKEN_BYTES
    return len(json.dumps(value).encode("utf-8"))


def environment_bytes(stack: Stack, function: lambda_.CfnFunction) -> int:
    environment = stack.resolve(function.environment) or {}
    variables = environment.get("variables") or environment.get("Variables") or {}
    return sum(len(name.encode("utf-8")) + _size(value) for name, value in variables.items())


def check_limits(stack: Stack) -> None:
    """DeploymentLimitError naming the limit when ``stack`` would break one."""
    resources = [c for c in stack.node.find_all() if isinstance(c, CfnResource)]
    if len(resources) > STACK_RESOURCES:
        raise DeploymentLimitError(
            f"The configuration makes {len(resources)} CloudFormation resources in one stack, over the limit of "
            f"{STACK_RESOURCES}: split its databases over several configurations (stacks)."
        )
    for function in resources:
        if isinstance(function, lambda_.CfnFunction):
            size = environment_bytes(stack, function)
            if size > LAMBDA_ENVIRONMENT_BYTES:
                raise DeploymentLimitError(
                    f"The environment of {function.node.path} would take about {size} bytes, over Lambda's limit "
                    f"of {LAMBDA_ENVIRONMENT_BYTES} for all variables: split its databases over several "
                    "configurations (stacks)."
                )
