"""The AWS target block: where an environment runs on AWS, with the connections it needs.

A block owns its clients' settings; `AwsRuntime` (runtime.py) is what the tasks call.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from prefect_docker import DockerHost
from pydantic import Field


class AwsTarget(Block):
    """An AWS environment: one CloudFormation stack with an ECS (Fargate) cluster, ECR
    repositories, an RDS database, ALB target groups and a CloudFront distribution.

    A release registers a task definition revision with the new image for each service, updates
    its ECS service and waits until ECS reports the rollout COMPLETED on that revision; older
    revisions are kept for rollback. Images are built by `docker_host` and pushed to ECR.

    Example:
        ```python
        from targets.aws.blocks import AwsTarget
        target = AwsTarget.load("staging-aws-target")
        ```
    """

    _block_type_name = "Flowmasters AWS Target"
    _description = (
        "An AWS environment of Flow Masters: ECS services, ECR, RDS, ALB and CloudFront, "
        "managed through one CloudFormation stack."
    )

    aws_credentials: AwsCredentials = Field(
        description="Credentials, region and client parameters (e.g. endpoint_url) for boto3."
    )
    stack_name: str = Field(description="CloudFormation stack holding the environment.")
    template_path: str = Field(
        default="infra/cloudformation/flowmasters.yaml",
        description="Stack template, relative to the repository root unless absolute.",
    )
    stack_parameters: dict[str, str] = Field(
        default_factory=dict, description="Parameters passed to the stack template."
    )
    image_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Our service name -> template parameter that takes its image, e.g. "
        "{'backend': 'BackendImage'}; a stack update passes the live image, so it never undoes "
        "a release.",
    )
    desired_count_parameter: str | None = Field(
        default=None,
        description="Template parameter that takes the services' task count, e.g. "
        "'DesiredCount'; a stack update passes the count the services run now, so it never "
        "scales them back (to a bootstrap's 0, say).",
    )
    cluster: str | None = Field(
        default=None, description="ECS cluster name (default: the stack's ClusterName output)."
    )
    services: dict[str, str] = Field(
        default_factory=dict,
        description="Our service name -> ECS service name, e.g. {'backend': 'fm-backend'} "
        "(default: the stack's <Service>ServiceName outputs).",
    )
    repositories: dict[str, str] = Field(
        default_factory=dict,
        description="Our service name -> ECR repository name, e.g. "
        "{'backend': 'flowmasters-staging/backend'} (default: the stack's <Service>RepositoryUri "
        "output, else the service's `repository`).",
    )
    db_instance_identifier: str | None = Field(
        default=None,
        description="RDS instance of the application database (default: the stack's "
        "DBInstanceIdentifier output).",
    )
    distribution_id: str | None = Field(
        default=None,
        description="CloudFront distribution to invalidate after a release (default: the "
        "stack's DistributionId output; none: no invalidation).",
    )
    target_groups: dict[str, str] = Field(
        default_factory=dict,
        description="Our service name -> ALB target group ARN that must have healthy targets "
        "(default: the stack's <Service>TargetGroupArn outputs).",
    )
    subnets: list[str] = Field(
        default_factory=list,
        description="Subnets of one-off migration tasks (default: the stack's PrivateSubnetIds "
        "output, else the service's own).",
    )
    security_groups: list[str] = Field(
        default_factory=list,
        description="Security groups of one-off migration tasks (default: the stack's "
        "ServiceSecurityGroupId output, else the service's own).",
    )
    cloudformation_role_arn: str | None = Field(
        default=None,
        description="Service role CloudFormation uses to change the stack (RoleARN of the change "
        "sets). Needed for the pipeline to create a new stack; an existing stack keeps the role "
        "it was created with.",
    )
    bootstrap_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Stack parameters used only when provisioning CREATES the stack, e.g. "
        "placeholder images and DesiredCount 0: the real images cannot exist before the stack "
        "has created their ECR repositories.",
    )
    invalidation_paths: list[str] = Field(
        default_factory=lambda: ["/*"], description="CloudFront paths invalidated per release."
    )
    scale_from_zero: int = Field(
        default=2,
        ge=1,
        description="Tasks a deploy starts for a service that runs none (desiredCount 0, as a "
        "stack bootstrapped without images is created); ECS keeps the count afterwards.",
    )
    deploy_timeout_seconds: float = Field(
        default=900,
        gt=0,
        description="Budget for one ECS deployment, one migration task or one invalidation.",
    )
    infrastructure_timeout_seconds: float = Field(
        default=3600,
        gt=0,
        description="Budget for a stack change, an RDS snapshot or an RDS restore.",
    )
    poll_seconds: float = Field(default=5, gt=0, description="Pause between status polls.")
    docker_host: DockerHost = Field(
        default_factory=DockerHost, description="The Docker engine that builds and pushes images."
    )
