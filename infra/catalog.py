"""The database catalog: Parameter Store parameters of whole databases, read by restore, sweep and guard.

See ``backstop.config.catalog``: those functions get the catalog's path and digest in their environment, the
same size whatever the number of databases, instead of every database's configuration.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from backstop.config import Config
from backstop.config.catalog import STANDARD_BYTES, catalog_path, digest, parameters_of
from infra.limits import DeploymentLimitError

ADVANCED_BYTES = 8192
"""Parameter Store's value limit for an advanced parameter ($0.05 a month); a standard one (free) holds 4 KB."""


class DatabaseCatalog(Construct):
    """``/backstop/<stack>/databases/<part>``: the databases' secret-free configurations, several to a part."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.path = catalog_path(stack.stack_name)
        parameters = parameters_of(config.databases)
        self.digest = digest(parameters)
        self.parameters: dict[str, ssm.CfnParameter] = {}
        for part, value in parameters.items():
            if Token.is_unresolved(value):
                raise ValueError(f"The catalog part {part} holds a deploy-time value: it must be plain text.")
            size = len(value.encode("utf-8"))
            if size > ADVANCED_BYTES:  # a part of more than 4 KB holds one database
                (name,) = json.loads(value)
                raise DeploymentLimitError(
                    f"The configuration of database {name} takes {size} bytes as JSON, over Parameter Store's limit "
                    f"of {ADVANCED_BYTES} for one parameter: declare fewer restore targets or validation queries."
                )
            self.parameters[part] = ssm.CfnParameter(
                self,
                f"Part{part}",
                name=f"{self.path}/{part}",
                type="String",
                value=value,
                # Only a database too large to share a free standard parameter pays for an advanced one.
                tier="Standard" if size <= STANDARD_BYTES else "Advanced",
                description="Backstop: databases' configurations (secret ARNs, never secrets), read by restore, "
                "sweep and guard",
            )
        self.environment = {"BACKSTOP_CATALOG": self.path, "BACKSTOP_CATALOG_DIGEST": self.digest}
        self.path_arn = stack.format_arn(
            service="ssm",
            resource="parameter",
            resource_name=self.path.lstrip("/"),
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def grant_read(self, role: iam.IRole) -> None:
        """``ssm:GetParametersByPath`` on the catalog's path: authorized against the path itself, which grants
        the parameters directly under it and nothing else (no ``GetParameter`` on any other parameter)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadTheDatabaseCatalog", actions=["ssm:GetParametersByPath"], resources=[self.path_arn]
            )
        )
