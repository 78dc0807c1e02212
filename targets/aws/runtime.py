"""The AWS runtime: what the tasks call when an environment's target is AWS.

Infrastructure is one CloudFormation stack (changed only through reviewed change sets), images
live in ECR, services are ECS (Fargate) services behind ALB target groups, the database is an
RDS instance and a CloudFront distribution sits in front. Deploy = register a task definition
revision with only the image changed, update the service, and wait until ECS reports the new
revision's rollout COMPLETED (`decisions.deployment_outcome`). Given an older image, the same
function is the rollback; older revisions are never deregistered.

Each SDK noun has its module (stack, ecr, ecs, rds, elbv2, cloudfront, sts, one_off); this file
only puts them together for the steps.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import Any

import docker

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from domain.migrations import Applied, MigrationTable
from domain.results import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    Finding,
    InfrastructureChange,
    InfrastructureReport,
    PushedImage,
    Revision,
)
from domain.services import ServiceSpec
from targets import images, migrations, verify
from targets.aws import cloudfront, decisions, elbv2, one_off, sts
from targets.aws.blocks import AwsTarget
from targets.aws.clients import PROVISION_HINT, aws_errors, logger, quiet_wire_logs, translated
from targets.aws.decisions import AwsNames, live_desired_count, resolve_names
from targets.aws.ecr import Ecr
from targets.aws.ecs import Ecs
from targets.aws.rds import Rds
from targets.aws.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_HINT = "start it, or point the AWS target block's docker_host at one"


def _output_complete(owner: ServiceSpec):
    """Whether a one-off task's log is whole: its JSON line arrived (output: json), else as read."""
    spec = owner.migration_spec()
    if spec is not None and spec.output == "json":
        return lambda lines: migrations.result_line(lines) is not None
    return lambda lines: True


class AwsRuntime(migrations.OneOffMigrations):
    name = "aws"

    def __init__(self, block: AwsTarget, environment: EnvironmentSpec):
        quiet_wire_logs()
        self.block = block
        self.env = environment
        self.ecr = Ecr(self._client("ecr"))

    def _client(self, name: str) -> Any:
        """A client from the credentials block; `get_client` applies aws_client_parameters
        (endpoint_url and the rest), `get_boto3_session().client()` would not."""
        return self.block.aws_credentials.get_client(name)

    @staticmethod
    def _info(message: str) -> None:
        logger().info(message)

    @cached_property
    def stack(self) -> Stack:
        return Stack(
            self._client("cloudformation"), self.block.stack_name, self._waiter_config(), self._info
        )

    @cached_property
    def names(self) -> AwsNames:
        """The block's names, completed from the stack's outputs (read once per runtime: each
        task connects its own runtime, so a step after provisioning sees the new outputs)."""
        given = self.block.model_dump(
            include={"cluster", "services", "repositories", "db_instance_identifier",
                     "distribution_id", "target_groups", "subnets", "security_groups"}
        )  # fmt: skip
        with aws_errors("stack outputs"):
            outputs = self.stack.outputs()
        # Services and images (a migrator is an image, not a service) by their names.
        return resolve_names(given, outputs, [name for name, _, _ in self.env.images()])

    def _required(self, value: str | None, what: str, output: str) -> str:
        if not value:
            raise ReleaseError(
                f"environment '{self.env.name}' names no {what}: stack {self.block.stack_name} "
                f"has no {output} output and the AWS target block sets none; {PROVISION_HINT}"
            )
        return value

    @cached_property
    def ecs(self) -> Ecs:
        cluster = self._required(self.names.cluster, "ECS cluster", "ClusterName")
        b = self.block
        return Ecs(
            self._client("ecs"),
            cluster,
            b.deploy_timeout_seconds,
            b.poll_seconds,
            self._info,
            b.scale_from_zero,
        )

    @cached_property
    def rds(self) -> Rds:
        instance = self._required(
            self.names.db_instance_identifier, "RDS instance", "DBInstanceIdentifier"
        )
        b = self.block
        return Rds(
            self._client("rds"),
            instance,
            b.infrastructure_timeout_seconds,
            b.poll_seconds,
            self._info,
        )

    def _ecs_name(self, service: str) -> str:
        self.env.service(service)
        try:
            return self.names.services[service]
        except KeyError:
            raise ReleaseError(
                f"service {service} has no ECS service: stack {self.block.stack_name} has no "
                f"{service.capitalize()}ServiceName output; add `{service}: <ECS service name>` "
                "to the AWS target block's `services`"
            ) from None

    def _repository_name(self, service: str) -> str:
        return self.names.repositories.get(service) or self.env.repository_of(service)

    # -- step 1: verify and provision ----------------------------------------------------------

    @translated("verify")
    def verify(self) -> InfrastructureReport:
        """What the environment runs on is there and reachable. Before the stack exists (a new
        environment), only the account is checked: provisioning creates the rest."""
        probes: list[verify.Probe] = [
            ("aws account", lambda: sts.caller(self._client("sts"))),
            ("stack", lambda: self.stack.verify()),
        ]
        if self.stack.exists() or self.names.cluster:
            probes += self._resource_probes()
        return verify.inspect(self.name, self.env.name, probes, " on AWS", aws_errors)

    def _resource_probes(self) -> list[verify.Probe]:
        """verify's probes of what the stack holds: cluster, services, database, repositories,
        and the target groups and distribution where there are any."""
        services = self.env.ordered()
        probes: list[verify.Probe] = [("ecs cluster", lambda: self.ecs.verify_cluster())]
        probes += [
            (f"ecs service {s.name}", lambda s=s: self.ecs.verify_service(self._ecs_name(s.name)))
            for s in services
        ]
        probes.append(("database", lambda: self.rds.verify_available()))
        probes += [
            (f"ecr {s.name}", lambda s=s: self.ecr.verify_repository(self._repository_name(s.name)))
            for s in services
        ]
        n = self.names
        if n.target_groups:
            arns = list(n.target_groups.values())
            probes.append(
                ("load balancer", lambda: elbv2.describe_groups(self._client("elbv2"), arns))
            )
        if n.distribution_id:
            dist = n.distribution_id
            probes.append(
                ("cdn", lambda: cloudfront.describe_distribution(self._client("cloudfront"), dist))
            )
        return probes

    @translated("provision")
    def plan_infrastructure(self) -> InfrastructureChange:
        """A change set of the stack template, created and left for review (an empty one is
        deleted: nothing to do)."""
        path = Path(self.block.template_path)
        path = path if path.is_absolute() else REPO_ROOT / path
        if not path.is_file():
            raise ReleaseError(
                f"no CloudFormation template at {path}: set the block's template_path"
            )
        proposal = self.stack.propose(
            path.read_text(),
            self.block.stack_parameters,
            self.block.bootstrap_parameters,
            self._live_parameters,
            f"Flowmasters {self.env.name}",
            self.block.cloudformation_role_arn,
        )
        if proposal is None:
            return InfrastructureChange(
                target=self.name, summary=f"stack {self.block.stack_name} up to date"
            )
        return InfrastructureChange(
            target=self.name,
            kind=proposal.kind,
            change_id=proposal.change_set,
            summary=f"stack {self.block.stack_name} {proposal.kind} with change set "
            f"{proposal.change_set}:\n{proposal.summary}",
            changes=proposal.changes,
        )

    @translated("provision")
    def provision(self, change: InfrastructureChange) -> InfrastructureReport:
        """Execute the proposed change set and wait until the stack is complete."""
        name = self.block.stack_name
        if change.empty or change.change_id is None:
            finding = Finding(component="stack", ok=True, detail=f"stack {name} up to date")
            return InfrastructureReport(target=self.name, findings=(finding,))
        self.stack.execute(change.change_id, change.kind)
        return InfrastructureReport(
            target=self.name,
            findings=(Finding(component="stack", ok=True, detail=change.summary),),
            changed=(f"stack {name}: {change.changes} resource changes",),
        )

    @translated("provision")
    def discard_infrastructure_change(self, change: InfrastructureChange) -> None:
        if change.change_id is not None:
            self.stack.discard(change.change_id, change.kind)

    def _live_parameters(self) -> dict[str, str]:
        """{template parameter: what runs now}: each image parameter gets its service's live
        image, the task-count parameter the services' count. A stack update then never undoes a
        release, nor a scale (the bootstrap's 0 included)."""
        live: dict[str, str] = {}
        for service, parameter in self.block.image_parameters.items():
            try:
                revision = self.live_revision(service)
            except ReleaseError as exc:
                logger().warning(f"{parameter}: no live image of {service} ({exc})")
                continue
            if revision is not None:
                live[parameter] = revision.image
        parameter = self.block.desired_count_parameter
        if parameter:
            counts = {
                s.name: int(self.ecs.service(self._ecs_name(s.name)).get("desiredCount", 0))
                for s in self.env.ordered()
            }
            count = live_desired_count(counts)
            if count is None:
                logger().warning(f"{parameter}: services run {counts}; the stack keeps its value")
            else:
                live[parameter] = count
        return live

    def _waiter_config(self) -> dict[str, Any]:
        delay = max(self.block.poll_seconds, 0.01)
        timeout = self.block.infrastructure_timeout_seconds
        return {"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / delay))}

    # -- steps 2-3: images ---------------------------------------------------------------------

    def _engine(self) -> AbstractContextManager[docker.DockerClient]:
        return images.engine(self.block.docker_host, ENGINE_HINT)

    def _repository_uri(self, service: str) -> str:
        repo = self.ecr.repository(self._repository_name(service), create=True)
        assert repo is not None
        return repo["repositoryUri"]

    @translated("build")
    def build_image(self, build: BuildSpec) -> BuiltImage:
        local_ref = f"{self._repository_uri(build.service)}:{build.version}"
        with self._engine() as client:
            return images.build(client, build, local_ref)

    @translated("push")
    def push_image(self, image: BuiltImage) -> PushedImage:
        """Push as `<ECR repository>:<version>`; a tag that holds another image is refused."""
        name, uri = self._repository_name(image.service), self._repository_uri(image.service)
        return images.push_once(
            image,
            uri,
            lambda: self.ecr.manifest(name, image.version),
            lambda: self._docker_push(image, uri, image.version, self.ecr.login()),
        )

    def _docker_push(
        self, image: BuiltImage, repository: str, tag: str, auth: dict[str, str]
    ) -> None:
        """The only step that talks to the registry itself (tests replace it: moto's ECR is an
        API, not a registry). `auth` holds ECR's password: it goes to the engine, never a log."""
        with self._engine() as client:
            images.push_through(client, image.image_id, repository, tag, auth)

    @translated("image lookup")
    def image_exists(self, service: str, tag: str) -> bool:
        return self.ecr.image(self._repository_name(service), tag) is not None

    @translated("image lookup")
    def image_reference(self, service: str, tag: str) -> str:
        repository = self._repository_name(service)
        repo = self.ecr.repository(repository)
        if repo is None or self.ecr.image(repository, tag) is None:
            raise ReleaseError(
                f"ECR has no {service} image for version {tag!r} in {repository}: name a version "
                "that was released before"
            )
        return f"{repo['repositoryUri']}:{tag}"

    # -- step 4: database ----------------------------------------------------------------------

    @translated("backup")
    def backup_database(self, backup_id: str) -> Backup:
        return self.rds.backup(backup_id)

    @translated("restore")
    def restore_database(self, backup: Backup) -> None:
        """Swap the snapshot in, then restart the services that use the database so that no
        pooled connection stays on the renamed old instance."""
        self.rds.restore(backup)
        for spec in self.env.ordered():
            if spec.uses_database:
                self.ecs.restart(self._ecs_name(spec.name), f"{spec.name} (reconnect)")

    @translated("migrations")
    def _run_once(
        self, owner: ServiceSpec, image: str, command: list[str]
    ) -> migrations.CommandRun:
        """`command` in a one-off Fargate task of the owner's task definition, with `image`."""
        service = self.ecs.service(self._ecs_name(owner.name))
        network = one_off.network_of(service, self.names.subnets, self.names.security_groups)
        return one_off.run_command(
            self.ecs,
            self._client("logs"),
            service,
            owner.name,
            image,
            command,
            network,
            complete=_output_complete(owner),
            interval=self.block.poll_seconds,
        )

    def _read_table(self, table: MigrationTable, image: str) -> tuple[Applied, ...] | None:
        """The pipeline has no network path to RDS (private subnets): the table is read by the
        app's `table_command`, in a one-off task of `image` like the migrations. Without one
        (None), a migration is judged by its exit code and, with `output: json`, its result."""
        _, spec = migrations.owner_of(self.env)
        if spec.table_command is None:
            return None
        return migrations.read_by_command(self.env, self._run_once, image)

    # -- steps 5-6: services -------------------------------------------------------------------

    @translated("live revision")
    def live_revision(self, service: str) -> Revision | None:
        """What the service runs; None while it runs a bootstrap placeholder image (a stack the
        pipeline created before any release): nothing has been released there yet."""
        described = self.ecs.service(self._ecs_name(service))
        revision = self.ecs.revision(
            service, self.ecs.live_task_definition(described), self.ecr.digest_of
        )
        if revision.image in self.block.bootstrap_parameters.values():
            return None
        return revision

    @translated("deploy")
    def deploy_service(
        self, service: str, image: str, version: str, keep_previous: bool = False
    ) -> DeployResult:
        """An ECS deployment, the way the service is set up (targets/aws/ecs.py). Blue/green
        (the template's): `keep_previous` is ECS's bake time, the previous revision running
        beside the new one out of traffic, and a switch back during it shifts traffic only.
        Rolling: ECS stops the previous tasks itself once the new ones are healthy, so
        `keep_previous` cannot be honoured and a switch back starts the recorded task
        definition again."""
        return self.ecs.deploy(service, self._ecs_name(service), image, version, self.ecr.digest_of)

    def retire_previous(self, service: str) -> str:
        described = self.ecs.service(self._ecs_name(service))
        if decisions.uses_blue_green(described):
            minutes = decisions.bake_minutes(described)
            return f"ECS stops the previous revision when its bake time ({minutes} min) ends"
        return "ECS stopped the previous tasks during its deployment; nothing runs beside"

    # -- step 7: edge --------------------------------------------------------------------------

    def _serving_groups(self, elb: Any, service: str) -> list[str]:
        """The target groups that take `service`'s production traffic. A blue/green service
        alternates between two: the one its production listener rule forwards to. Otherwise
        the configured one (none: the service is not behind the load balancer)."""
        if service not in self.names.target_groups:
            return []
        described = self.ecs.service(self._ecs_name(service))
        rules = [
            (lb.get("advancedConfiguration") or {}).get("productionListenerRule")
            for lb in described.get("loadBalancers", [])
        ]
        rules = [r for r in rules if r]
        if not (decisions.uses_blue_green(described) and rules):
            return [self.names.target_groups[service]]
        return elbv2.serving_groups(elb, rules)

    @translated("edge")
    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult:
        """Every target group has a healthy target; then invalidate the CDN and wait for it."""
        elb = self._client("elbv2")
        routes = [
            elbv2.healthy_targets(elb, s.name, group)
            for s in self.env.ordered()
            for group in self._serving_groups(elb, s.name)
        ]
        load_balancer = "ALB: " + (", ".join(routes) or "no target groups configured")
        dist = self.names.distribution_id
        if not dist:
            return EdgeResult(load_balancer=load_balancer, cdn="none configured", changed=False)
        cdn = cloudfront.invalidate(
            self._client("cloudfront"),
            dist,
            self.block.invalidation_paths,
            self.env.name,
            self.block.deploy_timeout_seconds,
            self.block.poll_seconds,
            self._info,
        )
        return EdgeResult(load_balancer=load_balancer, cdn=cdn, changed=True)
