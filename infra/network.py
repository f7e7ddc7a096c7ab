"""What a function's role needs to run inside a VPC and mount an EFS access point.

Shared by the backup functions (one per database) and the restore function.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Validations
from aws_cdk import aws_iam as iam

from backstop.config import Efs, Vpc
from infra.runner import FileSystemMount

ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
"""What Lambda does with the function's role to attach it to a VPC (AWSLambdaVPCAccessExecutionRole)."""


def grant_network(role: iam.Role, vpc: Vpc | None, efs: Efs | None, *, writable: bool) -> FileSystemMount | None:
    """Let ``role`` attach its function to ``vpc`` and mount ``efs`` (read-only unless ``writable``).

    Returns the mount to give the function, if any. An EFS mount without a VPC is refused by the
    config models, so ``efs`` is only considered with a ``vpc``.
    """
    if vpc is None:
        return None
    role.add_to_principal_policy(iam.PolicyStatement(sid="AttachToTheVpc", actions=list(ENI_ACTIONS), resources=["*"]))
    policy = role.node.find_child("DefaultPolicy")
    Validations.of(policy).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="Lambda creates, describes and deletes the function's network interfaces with its role; "
            "these EC2 actions take no resource ARN that is known before the interfaces exist "
            "(the same grant as AWSLambdaVPCAccessExecutionRole, without the managed policy).",
        )
    )
    if efs is None:
        return None
    prefix = f"arn:{Aws.PARTITION}:elasticfilesystem:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    access_point = f"{prefix}:access-point/{efs.access_point_id}"
    mount = ["elasticfilesystem:ClientMount"]
    if writable:
        mount.append("elasticfilesystem:ClientWrite")
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="MountTheDatabaseFileSystem",
            actions=mount,
            resources=[f"{prefix}:file-system/{efs.file_system_id}"],
            conditions={"StringEquals": {"elasticfilesystem:AccessPointArn": access_point}},
        )
    )
    return FileSystemMount(access_point_arn=access_point, mount_path=str(efs.mount_path))
