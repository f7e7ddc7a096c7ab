"""Stand the synthesized template up on the embedded emulator, resource by resource.

moto's CloudFormation ignores bucket versioning, lifecycle and object lock and lacks resource
types the stack uses, so the template is read here instead: each resource of a supported type is
created through the service's own API with its properties, in dependency order, and intrinsic
functions (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``, ``Fn::Select``) are resolved
against what was created. Resource types the emulator cannot stand up are listed by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from local.emulator import ACCOUNT, REGION, Emulator

PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "Backstop",
    "AWS::NoValue": None,
}
_SUB = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Deployed:
    """What was created: per logical id its Ref value and attributes; and what was not."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by what it names."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                if arg in PSEUDO:
                    return PSEUDO[arg]
                return self.refs[arg]
            if name == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attributes[logical][attribute]
            if name == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in self.resolve(parts))
            if name == "Fn::Split":
                separator, source = arg
                return str(self.resolve(source)).split(separator)
            if name == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if name == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                values = {k: self.resolve(v) for k, v in variables.items()}

                def sub(match: re.Match[str]) -> str:
                    key = match.group(1)
                    if key in values:
                        return str(values[key])
                    if "." in key:
                        logical, attribute = key.split(".", 1)
                        return str(self.attributes[logical][attribute])
                    return str(self.resolve({"Ref": key}))

                return _SUB.sub(sub, text)
        return {k: self.resolve(v) for k, v in value.items()}


def _depends(resource: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "Ref" and isinstance(inner, str) and inner not in PSEUDO:
                    found.add(inner)
                elif key == "Fn::GetAtt":
                    found.add(inner[0] if isinstance(inner, list) else inner.split(".", 1)[0])
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(resource.get("Properties", {}))
    depends = resource.get("DependsOn", [])
    found.update([depends] if isinstance(depends, str) else depends)
    return found


def _order(resources: dict[str, Any]) -> list[str]:
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(logical: str) -> None:
        if logical in seen or logical not in resources:
            return
        seen.add(logical)
        for dependency in sorted(_depends(resources[logical])):
            visit(dependency)
        ordered.append(logical)

    for logical in sorted(resources):
        visit(logical)
    return ordered


class StackBuilder:
    """Creates the template's resources on the emulator."""

    def __init__(self, emulator: Emulator, template: dict[str, Any]) -> None:
        self._emulator = emulator
        self._template = template
        self.deployed = Deployed()

    def build(self) -> Deployed:
        resources = self._template["Resources"]
        for logical in _order(resources):
            resource = resources[logical]
            kind = resource["Type"]
            create = getattr(self, "_" + kind.replace("AWS::", "").replace("::", "_").lower(), None)
            if create is None:
                self.deployed.skipped[logical] = kind
                self.deployed.refs[logical] = f"{logical}-not-emulated"
                self.deployed.attributes[logical] = {"Arn": f"arn:aws:local:{REGION}:{ACCOUNT}:{logical}"}
                continue
            properties = self.deployed.resolve(resource.get("Properties", {}))
            create(logical, properties)
        return self.deployed

    def _name(self, logical: str) -> str:
        return f"backstop-{logical.lower()}"[:60]

    # -- one method per supported type ---------------------------------------------------------

    def _kms_key(self, logical: str, properties: dict[str, Any]) -> None:
        spec = {
            "KeySpec": properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "KeyUsage": properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
        }
        arn = self._emulator.client("kms").create_key(Description=properties.get("Description", logical), **spec)[
            "KeyMetadata"
        ]["Arn"]
        self.deployed.refs[logical] = arn.rsplit("/", 1)[1]
        self.deployed.attributes[logical] = {"Arn": arn}

    def _s3_bucket(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties.get("BucketName") or self._name(logical)
        s3 = self._emulator.client("s3")
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(properties.get("ObjectLockEnabled")))
        if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        rules = properties.get("LifecycleConfiguration", {}).get("Rules")
        if rules:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [lifecycle_rule(rule) for rule in rules]}
            )
        self.deployed.refs[logical] = name
        self.deployed.attributes[logical] = {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}

    def _sns_topic(self, logical: str, properties: dict[str, Any]) -> None:
        arn = self._emulator.client("sns").create_topic(Name=properties.get("TopicName") or self._name(logical))[
            "TopicArn"
        ]
        self.deployed.refs[logical] = arn
        self.deployed.attributes[logical] = {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]}

    def _sqs_queue(self, logical: str, properties: dict[str, Any]) -> None:
        sqs = self._emulator.client("sqs")
        url = sqs.create_queue(QueueName=properties.get("QueueName") or self._name(logical))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.deployed.refs[logical] = url
        self.deployed.attributes[logical] = {"Arn": arn, "QueueName": arn.rsplit(":", 1)[1], "QueueUrl": url}

    def _iam_role(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties.get("RoleName") or self._name(logical)
        role = self._emulator.client("iam").create_role(
            RoleName=name,
            Path=properties.get("Path", "/"),
            AssumeRolePolicyDocument=json.dumps(properties.get("AssumeRolePolicyDocument", {})),
        )["Role"]
        self.deployed.refs[logical] = name
        self.deployed.attributes[logical] = {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _dynamodb_table(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties.get("TableName") or self._name(logical)
        args: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if properties.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        table = self._emulator.client("dynamodb").create_table(**args)["TableDescription"]
        self.deployed.refs[logical] = name
        self.deployed.attributes[logical] = {"Arn": table["TableArn"]}

    def _lambda_function(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties.get("FunctionName") or self._name(logical)
        args: dict[str, Any] = {
            "FunctionName": name,
            "Role": properties["Role"],
            "Timeout": int(properties.get("Timeout", 3)),
            "MemorySize": int(properties.get("MemorySize", 128)),
            "Environment": {"Variables": properties.get("Environment", {}).get("Variables", {})},
        }
        if properties.get("PackageType") == "Image":
            args.update(
                PackageType="Image",
                Code={"ImageUri": str(properties["Code"].get("ImageUri", "backstop/runner:local"))},
                ImageConfig=properties.get("ImageConfig", {}),
            )
        else:
            args.update(
                Runtime=properties.get("Runtime", "python3.12"),
                Handler=properties.get("Handler"),
                Code={"ZipFile": b"x"},
            )
        arn = self._emulator.client("lambda").create_function(**args)["FunctionArn"]
        self.deployed.refs[logical] = name
        self.deployed.attributes[logical] = {"Arn": arn}

    def _ssm_parameter(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties["Name"]
        self._emulator.client("ssm").put_parameter(
            Name=name,
            Value=properties["Value"],
            Type=properties.get("Type", "String"),
            Tier=properties.get("Tier", "Standard"),
            Description=properties.get("Description", ""),
            Overwrite=True,
        )
        self.deployed.refs[logical] = name

    def _logs_loggroup(self, logical: str, properties: dict[str, Any]) -> None:
        name = properties.get("LogGroupName") or f"/backstop/{logical}"
        self._emulator.client("logs").create_log_group(logGroupName=name)
        self.deployed.refs[logical] = name
        self.deployed.attributes[logical] = {"Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"}

    def _stepfunctions_statemachine(self, logical: str, properties: dict[str, Any]) -> None:
        definition = properties.get("DefinitionString")
        if not isinstance(definition, str):
            definition = json.dumps(properties["Definition"])
        arn = self._emulator.client("stepfunctions").create_state_machine(
            name=properties.get("StateMachineName") or self._name(logical),
            definition=definition,
            roleArn=properties["RoleArn"],
        )["stateMachineArn"]
        self.deployed.refs[logical] = arn
        self.deployed.attributes[logical] = {"Arn": arn, "Name": arn.rsplit(":", 1)[1]}


def lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule written as the S3 API takes it."""
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in rule.get("TagFilters", [])]
    prefix = rule.get("Prefix", "")
    if tags and (prefix or len(tags) > 1):
        rule_filter: dict[str, Any] = {"And": {"Prefix": prefix, "Tags": tags}}
    elif tags:
        rule_filter = {"Tag": tags[0]}
    else:
        rule_filter = {"Prefix": prefix}
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule.get("Status", "Enabled"), "Filter": rule_filter}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    elif rule.get("ExpiredObjectDeleteMarker"):
        api["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if rule.get("Transitions"):
        api["Transitions"] = [
            {"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]} for t in rule["Transitions"]
        ]
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return api


def stand_up(emulator: Emulator, template: dict[str, Any]) -> Deployed:
    """Create every supported resource of ``template`` on ``emulator``; unsupported ones are listed."""
    return StackBuilder(emulator, template).build()
