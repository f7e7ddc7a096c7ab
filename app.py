"""CDK entry point: read backstop.yaml, build BackstopStack, check it with cdk-nag, synthesize.

No AWS calls, no credentials and no Docker: `cdk synth` works offline. The configuration file is
the CDK context value ``config`` (``cdk synth -c config=other.yaml``), backstop.yaml by default.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from backstop.config import DEFAULT_CONFIG, load_config
from backstop.errors import ConfigError
from infra.replica import ReplicaStack, replica_stack_name
from infra.stack import BackstopStack


def build(app: App) -> BackstopStack:
    """Add the Backstop stack for the configured backstop.yaml to ``app`` (and its replica's stack, when
    ``storage.replica`` is set), with the AwsSolutions checks.

    The checks run when the app is synthesized and fail the synthesis on any unacknowledged finding,
    warnings included; acknowledgments are copied into the template metadata as an audit trail.
    """
    config_path = Path(str(app.node.try_get_context("config") or DEFAULT_CONFIG))
    if not config_path.is_file():
        raise ConfigError(f"Configuration file {str(config_path)!r} not found: pass `-c config=FILE` to cdk.")
    config = load_config(config_path)
    stack = BackstopStack(app, config.stack_name, config=config)
    if config.storage.replica is not None:
        # Deployed first (`cdk deploy --all`): the vault's replication rule needs the replica bucket to exist.
        stack.add_stack_dependency(
            ReplicaStack(app, replica_stack_name(config.stack_name), config=config, vault_stack=config.stack_name)
        )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))
    return stack


def main() -> None:
    app = App()
    try:
        build(app)
    except ConfigError as exc:  # includes what only the stack can check (lifecycle rules, Object Lock, EFS)
        sys.exit(f"error: {exc}")
    try:
        app.synth()
    except RuntimeError as exc:  # CDK's own count, after IAM split oversized policies at synthesis
        if "TooManyResourcesInStack" not in str(exc):
            raise
        sys.exit(f"error: {str(exc).split(':', 1)[1].split(':')[0].strip()}: split the databases over several stacks.")


if __name__ == "__main__":
    main()
