"""The AWS runtime: what the tasks call when an environment's target is AWS.

Infrastructure is one CloudFormation stack (changed only through reviewed change sets), images
live in ECR, services are ECS (Fargate) services behind ALB target groups, the database is an
RDS instance and a CloudFront distribution sits in front. Deploy = register a task definition
revision with only the image changed, update the service, and wait until ECS reports the new
revision's rollout COMPLETED (`decisions.deployment_outcome`). Given an older image, the same
function is the rollback; older revisions are never deregistered.
"""

from __future__ import annotations

import math
import time
import uuid
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import docker
import docker.errors

from targets.aws.clients import aws_errors, logger, poll, quiet_wire_logs, translated
from targets.aws.decisions import (
    AwsNames,
    last_json_line,
    live_desired_count,
    main_container,
    resolve_names,
    task_exit,
)
from targets.aws.ecr import Ecr
from targets.aws.ecs import PROVISION_HINT, Ecs, task_output
from targets.aws.rds import Rds
from targets.aws.stack import Stack, created
from targets.base import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    EnvironmentSpec,
    Finding,
    InfrastructureChange,
    InfrastructureReport,
    MigrationResult,
    PushedImage,
    Revision,
    SchemaStatus,
)
from targets.docker_host import images
from targets.errors import ReleaseError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from blocks.aws import AwsTarget

REPO_ROOT = Path(__file__).resolve().parents[2]


class AwsRuntime:
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
        task gets a new runtime, so a step after provisioning sees the new outputs)."""
        given = self.block.model_dump(
            include={"cluster", "services", "repositories", "db_instance_identifier",
                     "distribution_id", "target_groups", "subnets", "security_groups"}
        )  # fmt: skip
        with aws_errors("stack outputs"):
            outputs = self.stack.outputs()
        return resolve_names(given, outputs, [s.name for s in self.env.ordered()])

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
        return self.names.repositories.get(service) or self.env.service(service).repository

    # -- step 1: verify and provision ----------------------------------------------------------

    @translated("verify")
    def verify(self) -> InfrastructureReport:
        """What the environment runs on is there and reachable. Before the stack exists (a new
        environment), only the account is checked: provisioning creates the rest."""
        n = self.names
        checks: list[tuple[str, Callable[[], str]]] = [
            ("aws account", self._check_account),
            ("stack", self._check_stack),
        ]
        if self.stack.exists() or n.cluster:
            checks += [
                ("ecs cluster", self._check_cluster),
                *[
                    (f"ecs service {s.name}", self._service_check(s.name))
                    for s in self.env.ordered()
                ],
                ("database", self._check_database),
                *[(f"ecr {s.name}", self._repository_check(s.name)) for s in self.env.ordered()],
            ]
            if n.target_groups:
                checks.append(("load balancer", self._check_target_groups))
            if n.distribution_id:
                checks.append(("cdn", self._check_distribution))
        results = [self._check(component, probe) for component, probe in checks]
        report = InfrastructureReport(target=self.name, findings=tuple(f for f, _ in results))
        if report.missing:
            problems = "; ".join(f"{f.component}: {f.detail}" for f in report.missing)
            message = f"environment '{self.env.name}' is not ready on AWS: {problems}"
            if all(transient for f, transient in results if not f.ok):
                raise TransientError(message)
            raise ReleaseError(message)
        return report

    @staticmethod
    def _check(component: str, probe: Callable[[], str]) -> tuple[Finding, bool]:
        try:
            with aws_errors(component):
                return Finding(component=component, ok=True, detail=probe()), False
        except (ReleaseError, TransientError) as exc:
            finding = Finding(component=component, ok=False, detail=str(exc))
            return finding, isinstance(exc, TransientError)

    def _check_account(self) -> str:
        me = self._client("sts").get_caller_identity()
        return f"account {me['Account']} as {me['Arn']}"

    def _check_stack(self) -> str:
        stack = self.stack.describe()
        if not created(stack):
            return f"stack {self.block.stack_name} does not exist yet: provisioning creates it"
        return f"stack {self.block.stack_name} {stack['StackStatus']}"

    def _check_cluster(self) -> str:
        cluster = self.ecs.cluster
        found = self.ecs.client.describe_clusters(clusters=[cluster])["clusters"]
        status = found[0]["status"] if found else "missing"
        if status != "ACTIVE":
            raise ReleaseError(f"ECS cluster {cluster} is {status}: {PROVISION_HINT}")
        return f"ECS cluster {cluster} ACTIVE"

    def _service_check(self, service: str) -> Callable[[], str]:
        def probe() -> str:
            described = self.ecs.service(self._ecs_name(service))
            return (
                f"{described['serviceName']} runs {described['taskDefinition'].rsplit('/', 1)[-1]}"
            )

        return probe

    def _check_database(self) -> str:
        instance = self.rds.instance
        found = self.rds.describe(instance)
        status = found["DBInstanceStatus"] if found else "missing"
        if status != "available":
            raise ReleaseError(
                f"RDS instance {instance} is {status}"
                + (f": {PROVISION_HINT}" if found is None else "; wait until it is available")
            )
        return f"RDS {found['Engine']} {instance} available"

    def _repository_check(self, service: str) -> Callable[[], str]:
        def probe() -> str:
            repository = self._repository_name(service)
            found = self.ecr.repository(repository)
            if found is None:
                raise ReleaseError(f"ECR repository {repository} does not exist: {PROVISION_HINT}")
            return found["repositoryUri"]

        return probe

    def _check_target_groups(self) -> str:
        arns = list(self.names.target_groups.values())
        found = self._client("elbv2").describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
        return ", ".join(g["TargetGroupName"] for g in found)

    def _check_distribution(self) -> str:
        dist_id = self.names.distribution_id
        dist = self._client("cloudfront").get_distribution(Id=dist_id)
        return f"CloudFront {dist_id} {dist['Distribution']['Status']}"

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

    @contextmanager
    def _docker(self) -> Iterator[docker.DockerClient]:
        try:
            client = self.block.docker_host.get_client()
        except docker.errors.DockerException as exc:
            raise TransientError(
                f"the Docker engine that builds images is unreachable ({exc})"
            ) from exc
        with client:
            yield client

    def _repository_uri(self, service: str) -> str:
        repo = self.ecr.repository(self._repository_name(service), create=True)
        assert repo is not None
        return repo["repositoryUri"]

    @translated("build")
    def build_image(self, build: BuildSpec) -> BuiltImage:
        local_ref = f"{self._repository_uri(build.service)}:{build.version}"
        with self._docker() as client:
            return images.build(client, build, local_ref)

    @translated("push")
    def push_image(self, image: BuiltImage) -> PushedImage:
        """Push as `<ECR repository>:<version>`; a tag that holds another image is refused."""
        name, tag = self._repository_name(image.service), image.version
        uri = self._repository_uri(image.service)
        pushed = self.ecr.image(name, tag) is None
        if not pushed:
            existing = self.ecr.config_digest(name, tag)
            if existing != image.image_id:
                raise ReleaseError(
                    f"{uri}:{tag} already exists and holds a different image ({existing} instead "
                    f"of {image.image_id}); tags are never overwritten: release under a new version"
                )
        else:
            self._docker_push(image, uri, tag, self.ecr.login())
        detail = self.ecr.image(name, tag)
        if detail is None:
            raise TransientError(f"{uri}:{tag} is not in ECR after the push")
        return PushedImage(
            service=image.service,
            repository=uri,
            tag=tag,
            digest=detail["imageDigest"],
            image_id=image.image_id,
            pushed=pushed,
        )

    def _docker_push(
        self, image: BuiltImage, repository: str, tag: str, auth: dict[str, str]
    ) -> None:
        """The only step that talks to the registry itself (tests replace it: moto's ECR is an
        API, not a registry). `auth` holds ECR's password: it goes to the engine, never a log."""
        with self._docker() as client:
            client.images.get(image.image_id).tag(repository, tag)
            for line in client.images.push(
                repository, tag, stream=True, decode=True, auth_config=auth
            ):
                if "error" in line:
                    raise TransientError(f"pushing {repository}:{tag} failed: {line['error']}")

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

    @translated("schema status")
    def schema_status(self, image: str) -> SchemaStatus:
        data = self._migrate_command(image, ["status"])
        return SchemaStatus(
            applied=tuple(data["applied"]),
            available=tuple(data["available"]),
            pending=tuple(data["pending"]),
            schema_version=data["schema_version"],
        )

    @translated("migrate")
    def migrate(
        self, image: str, direction: Literal["up", "down"], steps: int = 1
    ) -> MigrationResult:
        args = [direction] if direction == "up" else [direction, "--steps", str(steps)]
        data = self._migrate_command(image, args)
        applied, reverted = tuple(data.get("applied", ())), tuple(data.get("reverted", ()))
        return MigrationResult(
            direction=direction,
            applied=applied,
            reverted=reverted,
            schema_version=data["schema_version"],
            changed=bool(applied or reverted),
        )

    def _migrate_command(self, image: str, args: list[str]) -> dict[str, Any]:
        """Run the owner's migrate command in a one-off Fargate task of its task definition with
        `image`; its JSON result is the last line it logged to CloudWatch Logs."""
        owner = self.env.migration_owner()
        if owner is None:
            raise ReleaseError(f"environment '{self.env.name}' has no service that owns migrations")
        service = self.ecs.service(self._ecs_name(owner.name))
        current = self.ecs.live_task_definition(service)
        container = main_container(current, owner.name)["name"]
        td_arn = self.ecs.task_definition_for(current, container, image)
        td = self.ecs.task_definition(td_arn)
        command = [*owner.migrate_command, *args]
        label = f"`{' '.join(args)}` migrations in {image}"
        task = self.ecs.run_one_off(td_arn, container, command, self._network(service), label)
        code, why = task_exit(task, container)
        lines = self._task_lines(td, container, task["taskArn"], need_result=code == 0)
        if code != 0:
            tail = "\n".join(lines[-20:])
            raise ReleaseError(
                f"{label} exited {code if code is not None else 'without running'}"
                f"{f' ({why})' if why else ''}; nothing after this step ran and the previous "
                f"version keeps serving. Its output:\n{tail}"
            )
        data = last_json_line(lines)
        if data is None:
            raise ReleaseError(
                f"{' '.join(command)} in {image} logged no JSON result line: {lines[-3:]!r}"
            )
        return data

    def _task_lines(
        self, td: dict[str, Any], container: str, task_arn: str, need_result: bool
    ) -> list[str]:
        """The task's output; CloudWatch may lag behind the task's end, so a missing result
        line is read again a few times. A failed task's output is best effort."""
        lines: list[str] = []
        for attempt in range(4):
            try:
                lines = task_output(self._client("logs"), td, container, task_arn)
            except ReleaseError as exc:
                if need_result:
                    raise
                return [f"(no output: {exc})"]
            if not need_result or last_json_line(lines) is not None or attempt == 3:
                break
            time.sleep(self.block.poll_seconds)
        return lines

    def _network(self, service: dict[str, Any]) -> dict[str, Any]:
        """The block's subnets and security groups, else the service's own."""
        own = (service.get("networkConfiguration") or {}).get("awsvpcConfiguration", {})
        return {
            "subnets": self.names.subnets or own.get("subnets", []),
            "securityGroups": self.names.security_groups or own.get("securityGroups", []),
            "assignPublicIp": own.get("assignPublicIp", "DISABLED"),
        }

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
    def deploy_service(self, service: str, image: str, version: str) -> DeployResult:
        return self.ecs.deploy(service, self._ecs_name(service), image, version, self.ecr.digest_of)

    # -- step 7: edge --------------------------------------------------------------------------

    @translated("edge")
    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult:
        """Every target group has a healthy target; then invalidate the CDN and wait for it."""
        elb = self._client("elbv2")
        routes = []
        for service in self.env.ordered():
            arn = self.names.target_groups.get(service.name)
            if arn is None:
                continue
            health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            states = [h["TargetHealth"]["State"] for h in health]
            healthy = states.count("healthy")
            if not healthy:
                raise ReleaseError(
                    f"load balancer: {service.name} has no healthy target in {arn} "
                    f"({', '.join(states) or 'no targets'})"
                )
            routes.append(f"{service.name} {healthy}/{len(states)} targets healthy")
        load_balancer = "ALB: " + (", ".join(routes) or "no target groups configured")
        if not self.names.distribution_id:
            return EdgeResult(load_balancer=load_balancer, cdn="none configured", changed=False)
        return EdgeResult(load_balancer=load_balancer, cdn=self._invalidate(), changed=True)

    def _invalidate(self) -> str:
        """Own polling of get_invalidation: moto's `invalidation_completed` waiter never ends."""
        cloudfront, dist = self._client("cloudfront"), self.names.distribution_id
        paths = self.block.invalidation_paths
        created = cloudfront.create_invalidation(
            DistributionId=dist,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"flowmasters-{self.env.name}-{uuid.uuid4().hex}",
            },
        )["Invalidation"]

        def probe() -> tuple[bool, str, str]:
            status = cloudfront.get_invalidation(DistributionId=dist, Id=created["Id"])[
                "Invalidation"
            ]["Status"]
            return status.lower() == "completed", status, f"invalidation {created['Id']} {status}"

        started = time.monotonic()
        try:
            poll(
                f"CloudFront invalidation of {dist}",
                probe,
                self.block.deploy_timeout_seconds,
                self.block.poll_seconds,
                self._info,
            )
        except ReleaseError as exc:  # still running at CloudFront: a retry may see it through
            raise TransientError(str(exc)) from exc
        return (
            f"CloudFront {dist}: invalidation {created['Id']} of {', '.join(paths)} completed "
            f"in {time.monotonic() - started:.1f}s"
        )
