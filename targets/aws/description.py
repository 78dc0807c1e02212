"""A `type: aws` section of an environment description, saved as the target's blocks.

Blocks per environment NAME: NAME-aws (prefect-aws AwsCredentials; the keys are read from the
environment variables the section names, never from the YAML, and stored as secrets) and
NAME-aws-target (the stack and what the pipeline needs to know about it).
"""

from __future__ import annotations

from typing import Any

from prefect_aws import AwsCredentials
from prefect_docker import DockerHost

from targets.aws.blocks import AwsTarget
from targets.secrets import read_secret

# Section keys copied onto the AwsTarget block as they are.
FIELDS = (
    "stack_name",
    "template_path",
    "stack_parameters",
    "bootstrap_parameters",
    "cloudformation_role_arn",
    "image_parameters",
    "desired_count_parameter",
    "cluster",
    "services",
    "repositories",
    "db_instance_identifier",
    "distribution_id",
    "target_groups",
    "subnets",
    "security_groups",
    "invalidation_paths",
    "scale_from_zero",
    "deploy_timeout_seconds",
    "infrastructure_timeout_seconds",
)


def credentials(name: str, spec: dict[str, Any]) -> AwsCredentials:
    """Keys come from environment variables named in the description (never the YAML itself);
    without them, boto3's own chain (profile, instance role) applies."""
    keys: dict[str, Any] = {}
    if "access_key_id_env" in spec:
        keys["aws_access_key_id"] = read_secret(
            {"password_env": spec["access_key_id_env"]}, f"environment '{name}' AWS key id"
        )
        keys["aws_secret_access_key"] = read_secret(
            {"password_env": spec["secret_access_key_env"]}, f"environment '{name}' AWS secret"
        )
    client_parameters = {"endpoint_url": spec["endpoint_url"]} if spec.get("endpoint_url") else {}
    return AwsCredentials(
        region_name=spec["region"],
        profile_name=spec.get("profile"),
        assume_role_arn=spec.get("assume_role_arn"),
        aws_client_parameters=client_parameters,
        **keys,
    )


def register(name: str, target: dict[str, Any]) -> AwsTarget:
    """Create or update the target's blocks; returns the target block."""
    aws_credentials = credentials(name, target["credentials"])
    aws_credentials.save(f"{name}-aws", overwrite=True)
    fields = {key: target[key] for key in FIELDS if key in target}
    docker_host = DockerHost(base_url=target.get("docker_host"), timeout=900)
    aws_target = AwsTarget(aws_credentials=aws_credentials, docker_host=docker_host, **fields)
    aws_target.save(f"{name}-aws-target", overwrite=True)
    return aws_target
