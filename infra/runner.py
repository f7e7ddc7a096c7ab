"""The runner image and the one factory every Backstop function comes from.

Every function runs from the same container image, built from ``functions/Dockerfile`` by
``cdk deploy``; only its handler command differs. Synthesis stages the build context into
``cdk.out`` and hashes it, and needs no Docker engine: the image is built and pushed at deploy time.
Every function is traced by X-Ray (active tracing; its handler's powertools Tracer adds the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, IgnoreMode, RemovalPolicy, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from backstop.config import Runner, Vpc

BUILD_CONTEXT = Path(__file__).resolve().parents[1] / "functions"
"""functions/: the Dockerfile, the pinned requirements and the backstop package."""

BACKUP_HANDLER = "backstop.handlers.backup.handler"
FRESHNESS_HANDLER = "backstop.handlers.freshness.handler"
DRILL_HANDLER = "backstop.handlers.drill.handler"
SWEEP_HANDLER = "backstop.handlers.sweep.handler"
FAILURE_ALERT_HANDLER = "backstop.handlers.failure_alert.handler"
GUARD_HANDLER = "backstop.handlers.retention_guard.handler"

LOG_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
"""The retention periods CloudWatch Logs offers (``runner.log_retention_days`` accepts exactly these)."""

TRACE_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
"""What a function with active tracing sends X-Ray (AWSXRayDaemonWriteAccess less the sampling reads)."""

_ARCHITECTURES = {
    "x86_64": (lambda_.Architecture.X86_64, ecr_assets.Platform.LINUX_AMD64),
    "arm64": (lambda_.Architecture.ARM_64, ecr_assets.Platform.LINUX_ARM64),
}


@dataclass(frozen=True)
class FileSystemMount:
    """An EFS access point mounted into a function (which must then be in a VPC)."""

    access_point_arn: str
    mount_path: str


@dataclass(frozen=True)
class FunctionSpec:
    """What distinguishes one function from another: its handler, role, limits, environment and network.

    With ``vpc`` or ``file_system`` the role must already allow what Lambda does with it (network
    interfaces, ``elasticfilesystem:ClientMount``): the caller knows why the function needs them.
    """

    handler: str
    description: str
    role: iam.IRole
    environment: dict[str, str]
    memory_mb: int = 512
    timeout_seconds: int = 60
    ephemeral_storage_mb: int = 512
    vpc: Vpc | None = None
    file_system: FileSystemMount | None = None


class RunnerImage(Construct):
    """The container image of every function, and ``function``, the factory that creates them alike."""

    def __init__(self, scope: Construct, construct_id: str, *, runner: Runner) -> None:
        super().__init__(scope, construct_id)
        self._architecture, platform = _ARCHITECTURES[runner.architecture]
        self._log_retention = LOG_RETENTION[runner.log_retention_days]
        self.functions: list[tuple[str, lambda_.IFunction]] = []
        """Every function made by ``function``, with its label."""
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(BUILD_CONTEXT),
            platform=platform,
            ignore_mode=IgnoreMode.DOCKER,
        )
        self.tracing = iam.ManagedPolicy(
            self,
            "Tracing",
            description="Backstop: lets every function send its traces to X-Ray",
            statements=[iam.PolicyStatement(sid="SendTraces", actions=list(TRACE_ACTIONS), resources=["*"])],
        )
        """Attached to every function's role by ``function``: one grant, one acknowledgment."""
        Validations.of(self.tracing).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray's PutTraceSegments and PutTelemetryRecords take no resource ARN; this policy grants "
                "nothing else, and only Backstop's function roles have it.",
            )
        )

    def function(self, scope: Construct, construct_id: str, spec: FunctionSpec, *, label: str) -> lambda_.IFunction:
        """A function of the runner image with ``spec``'s handler command, its own log group, active tracing, and
        nothing more; ``label`` names it in its alarms (``orders-backup`` -> ``<stack>-orders-backup-errors``).

        The role is the caller's: it gets write access to the function's log group and the tracing policy
        here, and every other permission from the construct that knows why the function needs it. The function is
        created after the role's policy, since Lambda checks at creation that the role may do what
        the function's configuration asks (attach to a VPC, mount EFS, read a queue).

        Written as the L1 resource: the L2 also makes the function depend on the role it already
        references, which cfn-lint reports as a redundant DependsOn (W3005).
        """
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._log_retention,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        log_group.grant_write(spec.role)
        self.tracing.attach_to_role(spec.role)
        resource = lambda_.CfnFunction(
            scope,
            construct_id,
            package_type="Image",
            code=lambda_.CfnFunction.CodeProperty(image_uri=self.asset.image_uri),
            image_config=lambda_.CfnFunction.ImageConfigProperty(command=[spec.handler]),
            description=spec.description,
            architectures=[self._architecture.name],
            role=spec.role.role_arn,
            memory_size=spec.memory_mb,
            timeout=spec.timeout_seconds,
            ephemeral_storage=lambda_.CfnFunction.EphemeralStorageProperty(size=spec.ephemeral_storage_mb),
            environment=lambda_.CfnFunction.EnvironmentProperty(variables=spec.environment),
            logging_config=lambda_.CfnFunction.LoggingConfigProperty(log_group=log_group.log_group_name),
            tracing_config=lambda_.CfnFunction.TracingConfigProperty(mode="Active"),
        )
        # Lambda needs only these ids; CDK's L2 function would want an IVpc, that is a VPC look-up
        # (an AWS call at synth time) or the VPC's id in the configuration.
        if spec.vpc is not None:
            resource.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
                subnet_ids=list(spec.vpc.subnet_ids), security_group_ids=list(spec.vpc.security_group_ids)
            )
        if spec.file_system is not None:
            resource.file_system_configs = [
                lambda_.CfnFunction.FileSystemConfigProperty(
                    arn=spec.file_system.access_point_arn, local_mount_path=spec.file_system.mount_path
                )
            ]
        policy = spec.role.node.try_find_child("DefaultPolicy")
        if policy is None:  # grant_write above created it
            raise RuntimeError(f"{spec.role.node.path} has no default policy")
        resource.node.add_dependency(policy, self.tracing)  # Lambda refuses active tracing without the grant
        # The same function as a construct, for its ARN, metrics, grants and event sources.
        function = lambda_.Function.from_function_attributes(
            scope, f"{construct_id}Handle", function_arn=resource.attr_arn, role=spec.role, same_environment=True
        )
        self.functions.append((label, function))
        return function
