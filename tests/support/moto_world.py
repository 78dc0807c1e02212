"""The moto world the AWS tests share: a ThreadedMotoServer on 127.0.0.1 (never a real account),
the AWS resources a provisioned environment has, the target block pointing at them, and the FAKES
that play what moto does not model (each says so in its docstring):

- ECS never starts tasks: after update_service moto keeps the old deployment PRIMARY and
  IN_PROGRESS forever. `FakeEcsScheduler` plays ECS's part; `FakeServiceDeployments` plays
  ListServiceDeployments and StopServiceDeployment, which moto does not have.
- One-off tasks never run a container: `FakeMigrationContainer` writes what the container
  would have logged into moto's CloudWatch Logs and sets its exit code.
- moto's ECR is an API, not a registry: the docker push is replaced by a FAKE `put_image`.
- ECS's own blue/green deployments (a bake time, two target groups, a production listener rule)
  are not modelled either: `FakeBlueGreen` plays them on a service it sets up that way.

Every test module that uses these runs with DEBUG logging captured (`no_secret_logged`), and no
credential may appear in a log record or in a returned model (`no_secret`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from moto.ecs.models import ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.logs.models import logs_backends
from moto.server import ThreadedMotoServer
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters

from domain.environment import EnvironmentSpec
from domain.results import BuiltImage
from domain.services import ServiceSpec
from targets.aws.blocks import AwsTarget
from targets.aws.runtime import AwsRuntime

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
ACCESS_KEY = "AKIAFMTESTKEYNOTLOG1"
SECRET_KEY = "fm-secret-key-MUST-NOT-BE-LOGGED-5b7d1c"
SESSION_TOKEN = "fm-session-token-MUST-NOT-BE-LOGGED-9e2a4f"
SECRETS = (SECRET_KEY, SESSION_TOKEN, "123456789012-auth-token")  # the last: moto's ECR password
LOG_GROUP = "/flowmasters/test"


@pytest.fixture(scope="module")
def moto_url():
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        env.setenv("AWS_ENDPOINT_URL", url)  # a client built without endpoint_url still hits moto
        try:
            yield url
        finally:
            httpx.post(f"{url}/moto-api/reset")
            server.stop()


@pytest.fixture(scope="module")
def aws(moto_url):
    def client(name: str) -> Any:
        return boto3.client(name, endpoint_url=moto_url, region_name=REGION)

    return client


@pytest.fixture(scope="module")
def world(aws) -> dict[str, Any]:
    """What the fixture created in moto, by name: subnet, sg, repos, td, tg, distribution."""
    w: dict[str, Any] = {}
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="100.64.0.0/16")["Vpc"]["VpcId"]
    # moto's run_task needs DNS hostnames on the VPC of an awsvpc task's subnet.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    w["subnet"] = ec2.create_subnet(VpcId=vpc, CidrBlock="100.64.1.0/24")["Subnet"]["SubnetId"]
    w["sg"] = ec2.create_security_group(GroupName="fm", Description="fm", VpcId=vpc)["GroupId"]
    aws("logs").create_log_group(logGroupName=LOG_GROUP)

    ecr = aws("ecr")
    w["repos"] = {}
    for name in ("backend", "frontend"):
        repo = ecr.create_repository(
            repositoryName=f"flowmasters-aws-test/{name}", imageTagMutability="IMMUTABLE"
        )["repository"]
        w["repos"][name] = repo["repositoryUri"]

    ecs = aws("ecs")
    ecs.create_cluster(clusterName="fm-test")
    w["td"] = {}
    with pytest.MonkeyPatch.context() as env:
        # Read by moto when a service is created: both start as stable services (running ==
        # desired, rollout COMPLETED), as a provisioned stack would be.
        env.setenv("MOTO_ECS_SERVICE_RUNNING", "2")
        for name in ("backend", "frontend"):
            td = ecs.register_task_definition(
                family=f"fm-test-{name}",
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="256",
                memory="512",
                executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/fm-exec",
                containerDefinitions=[
                    {
                        "name": name,
                        "image": f"{w['repos'][name]}:1.0.0",
                        "memory": 512,  # moto's run_task needs a container-level memory
                        "essential": True,
                        "environment": [{"name": "APP_ENV", "value": "test"}],
                        "portMappings": [{"containerPort": 8080}],
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": LOG_GROUP,
                                "awslogs-region": REGION,
                                "awslogs-stream-prefix": "fm",
                            },
                        },
                    }
                ],
            )["taskDefinition"]
            w["td"][name] = td["taskDefinitionArn"]
            ecs.create_service(
                cluster="fm-test",
                serviceName=f"fm-test-{name}",
                taskDefinition=td["taskDefinitionArn"],
                desiredCount=2,
                launchType="FARGATE",
                networkConfiguration={
                    "awsvpcConfiguration": {"subnets": [w["subnet"]], "securityGroups": [w["sg"]]}
                },
            )

    aws("rds").create_db_instance(
        DBInstanceIdentifier="fm-test-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="flowmasters",
        MasterUserPassword="not-a-real-password",
        AllocatedStorage=20,
    )

    elb = aws("elbv2")
    w["tg"] = {}
    for name in ("backend", "frontend", "empty"):
        arn = elb.create_target_group(
            Name=f"fm-test-{name}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        w["tg"][name] = arn
        if name != "empty":
            # moto reports registered IP targets as healthy (ECS would register its tasks).
            elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "100.64.1.10", "Port": 8080}])

    w["distribution"] = aws("cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": "fm-test",
            "Comment": "fm-test",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "alb",
                        "DomainName": "alb.example.com",
                        "CustomOriginConfig": {
                            "HTTPPort": 80,
                            "HTTPSPort": 443,
                            "OriginProtocolPolicy": "http-only",
                        },
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "alb",
                "ViewerProtocolPolicy": "allow-all",
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "MinTTL": 0,
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
            },
        }
    )["Distribution"]["Id"]
    return w


@pytest.fixture(scope="module")
def block(moto_url, world) -> AwsTarget:
    return AwsTarget(
        aws_credentials=AwsCredentials(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=SESSION_TOKEN,
            region_name=REGION,
            aws_client_parameters=AwsClientParameters(endpoint_url=moto_url),
        ),
        stack_name="fm-test",
        cluster="fm-test",
        services={"backend": "fm-test-backend", "frontend": "fm-test-frontend"},
        repositories={n: f"flowmasters-aws-test/{n}" for n in ("backend", "frontend")},
        db_instance_identifier="fm-test-db",
        distribution_id=world["distribution"],
        target_groups={"backend": world["tg"]["backend"], "frontend": world["tg"]["frontend"]},
        subnets=[world["subnet"]],
        security_groups=[world["sg"]],
        deploy_timeout_seconds=5,
        infrastructure_timeout_seconds=5,
        poll_seconds=0.02,
    )


def service_spec(name: str, order: int, **extra: Any) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        context=name,
        repository=f"flowmasters/{name}",
        order=order,
        public_url=f"https://{name}.example.com",
        **extra,
    )


SPEC = EnvironmentSpec(
    name="aws-test",
    services=(
        service_spec("backend", 1, owns_migrations=True, uses_database=True),
        service_spec("frontend", 2),
    ),
)


@pytest.fixture
def target(block: AwsTarget) -> AwsRuntime:
    return AwsRuntime(block, SPEC)


@pytest.fixture(autouse=True)
def no_secret_logged(caplog):
    """Every test runs with DEBUG logs captured; none may hold a credential."""
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")  # not .records: teardown's
    text = "\n".join(r.getMessage() for r in records)
    for secret in SECRETS:
        assert secret not in text


def no_secret(model: Any) -> Any:
    dumped = model.model_dump_json()
    for secret in SECRETS:
        assert secret not in dumped
    return model


def ecs_backend() -> Any:
    return ecs_backends[ACCOUNT][REGION]


def moto_service(name: str) -> Any:
    return ecs_backend().services[f"fm-test:fm-test-{name}"]


def moto_service_image(name: str) -> str:
    td = ecs_backend().describe_task_definition(moto_service(name).task_definition)
    return td.container_definitions[0]["image"]


# -- moto does not model these: the tests play AWS's part ---------------------------------------


class FakeEcsScheduler:
    """Plays ECS's deployment scheduler, which moto does not model (it never starts tasks).

    At update_service it does what ECS does: the new revision's deployment becomes PRIMARY
    (IN_PROGRESS, nothing running) and the old one ACTIVE. After `after` describe_services
    calls it ends the rollout as `outcome`: "completed" (running == desired, COMPLETED),
    "rollback" (the circuit breaker put the old revision back as PRIMARY and marked ours
    FAILED) or "stuck" (never ends).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, outcome: str, after: int = 2):
        self.backend, self.outcome, self.after = ecs_backend(), outcome, after
        self.update, self.describe = self.backend.update_service, self.backend.describe_services
        self.pending: list[tuple[Any, dict, dict]] = []
        self.polls = 0
        monkeypatch.setattr(self.backend, "update_service", self.update_service)
        monkeypatch.setattr(self.backend, "describe_services", self.describe_services)

    def update_service(self, properties: dict) -> Any:
        name = properties["service"].split("/")[-1]
        old_td = self.backend.services[f"fm-test:{name}"].task_definition
        service = self.update(properties)
        if service.task_definition != old_td:
            old = next(d for d in service.deployments if d["status"] == "PRIMARY")
            old["status"] = "ACTIVE"
            new = {
                **old,
                "id": f"ecs-svc/{time.time_ns()}",
                "status": "PRIMARY",
                "taskDefinition": service.task_definition,
                "runningCount": 0,
                "pendingCount": service.desired_count,
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": "ECS deployment in progress.",
                "createdAt": datetime.now(UTC),
            }
            service.deployments = [new, old]
            self.event(service, "has started 2 tasks: (task 1) (task 2).")
            self.pending.append((service, new, old))
            self.polls = 0
        return service

    def describe_services(self, cluster: str, names: list[str]) -> Any:
        self.polls += 1
        if self.pending and self.polls >= self.after and self.outcome != "stuck":
            service, new, old = self.pending.pop()
            if self.outcome == "completed":
                new.update(rolloutState="COMPLETED", runningCount=new["desiredCount"])
                new.update(pendingCount=0, rolloutStateReason="ECS deployment completed.")
                service.deployments = [new]
                self.event(service, "has reached a steady state.")
            else:
                reason = "ECS deployment circuit breaker: tasks failed to start."
                new.update(rolloutState="FAILED", rolloutStateReason=reason, failedTasks=4)
                new["status"], old["status"] = "ACTIVE", "PRIMARY"
                service.deployments = [old, new]
                service.task_definition = old["taskDefinition"]
                self.event(service, "deployment failed: tasks failed to start.")
        return self.describe(cluster, names)

    @staticmethod
    def event(service: Any, message: str) -> None:
        service.events.insert(
            0,
            {
                "id": str(time.time_ns()),
                "createdAt": datetime.now(UTC),
                "message": f"(service {service.name}) {message}",
            },
        )


class FakeServiceDeployments:
    """Plays ECS's ListServiceDeployments and StopServiceDeployment, which moto does not have:
    the rollout in progress (PRIMARY, IN_PROGRESS) is listed; stopping it with ROLLBACK does what
    ECS does, the last completed deployment becomes PRIMARY again and the stopped one goes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.stopped: list[tuple[str, str]] = []
        fake = self

        def list_service_deployments(response: Any) -> str:
            service = fake.service(response._get_param("service"))
            items = [
                {"serviceDeploymentArn": fake.arn(service, d), "status": "IN_PROGRESS"}
                for d in service.deployments
                if d["status"] == "PRIMARY" and d.get("rolloutState") == "IN_PROGRESS"
            ]
            return json.dumps({"serviceDeployments": items})

        def stop_service_deployment(response: Any) -> str:
            arn = response._get_param("serviceDeploymentArn")
            fake.stopped.append((arn, response._get_param("stopType")))
            service = fake.service(arn.split("/")[-2])
            stopped = next(d for d in service.deployments if fake.arn(service, d) == arn)
            back = next(d for d in service.deployments if d["status"] == "ACTIVE")
            back.update(status="PRIMARY", rolloutState="COMPLETED")
            service.deployments = [back]
            service.task_definition = back["taskDefinition"]
            FakeEcsScheduler.event(service, f"rolled back: stopped {stopped['id']}.")
            return json.dumps({"serviceDeploymentArn": arn})

        for name, method in (
            ("list_service_deployments", list_service_deployments),
            ("stop_service_deployment", stop_service_deployment),
        ):
            monkeypatch.setattr(EC2ContainerServiceResponse, name, method, raising=False)

    @staticmethod
    def service(name: str) -> Any:
        return ecs_backend().services[f"fm-test:{name.split('/')[-1]}"]

    @staticmethod
    def arn(service: Any, deployment: dict) -> str:
        name = deployment["id"].split("/")[-1]
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/fm-test/{service.name}/{name}"


class FakeBlueGreen:
    """Plays ECS's own blue/green deployments, which moto does not model (nor
    DescribeServiceDeployments), on moto's service `name` and real moto ELBv2 resources.

    Set-up: the service gets `strategy: BLUE_GREEN` and a bake time, an alternate target group
    (green) beside its blue one, and a production listener rule forwarding to blue (weight 100)
    and green (0). update_service: the new revision's deployment becomes PRIMARY and a service
    deployment starts; each describe_services moves it one lifecycle stage on. At
    PRODUCTION_TRAFFIC_SHIFT the rule's weights move to the new revision's group (moto's
    modify_rule) and the deployment reaches BAKE_TIME, where it stays: the previous revision's
    tasks keep running. StopServiceDeployment with ROLLBACK during the bake shifts the weights
    back and makes the previous deployment PRIMARY again, starting no task (`started` counts
    the tasks started, as ECS's "has started N tasks" events would).
    """

    STAGES = ("RECONCILE_SERVICE", "SCALE_UP", "PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, aws: Callable[[str], Any], name: str):
        self.backend, self.aws = ecs_backend(), aws
        self.service = moto_service(name)
        self.update, self.describe = self.backend.update_service, self.backend.describe_services
        self.deployment: dict[str, Any] = {}
        self.started = 0
        self.stopped: list[str] = []
        self.groups = self._set_up(name)
        monkeypatch.setattr(self.backend, "update_service", self.update_service)
        monkeypatch.setattr(self.backend, "describe_services", self.describe_services)
        fake = self

        def describe_service_deployments(response: Any) -> str:
            arns = response._get_param("serviceDeploymentArns")
            found = [fake.deployment] if fake.deployment.get("serviceDeploymentArn") in arns else []
            return json.dumps({"serviceDeployments": found, "failures": []}, default=str)

        def list_service_deployments(response: Any) -> str:
            live = fake.deployment.get("status") in ("PENDING", "IN_PROGRESS")
            items = [dict(fake.deployment)] if live else []
            return json.dumps({"serviceDeployments": items}, default=str)

        def stop_service_deployment(response: Any) -> str:
            arn = response._get_param("serviceDeploymentArn")
            fake.stopped.append(response._get_param("stopType"))
            fake.roll_back()
            return json.dumps({"serviceDeploymentArn": arn})

        for action, method in (
            ("describe_service_deployments", describe_service_deployments),
            ("list_service_deployments", list_service_deployments),
            ("stop_service_deployment", stop_service_deployment),
        ):
            monkeypatch.setattr(EC2ContainerServiceResponse, action, method, raising=False)

    def _set_up(self, name: str) -> dict[str, str]:
        elb = self.aws("elbv2")
        vpc = self.aws("ec2").describe_vpcs()["Vpcs"][-1]["VpcId"]
        suffix = str(time.time_ns())[-8:]  # each test sets up its own
        groups = {}
        for color in ("blue", "green"):
            groups[color] = elb.create_target_group(
                Name=f"fm-bg-{name}-{color}-{suffix}", Protocol="HTTP", Port=8080, VpcId=vpc,
                TargetType="ip",
            )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
        elb.register_targets(TargetGroupArn=groups["blue"], Targets=[{"Id": "100.64.1.20"}])
        balancer = elb.create_load_balancer(
            Name=f"fm-bg-{name}-{suffix}", Subnets=[self.service.network_configuration[
                "awsvpcConfiguration"]["subnets"][0]], Scheme="internal",
        )["LoadBalancers"][0]["LoadBalancerArn"]  # fmt: skip
        listener = elb.create_listener(
            LoadBalancerArn=balancer, Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )["Listeners"][0]["ListenerArn"]  # fmt: skip
        self.rule = elb.create_rule(
            ListenerArn=listener, Priority=10,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[self._forward(groups["blue"], groups["green"])],
        )["Rules"][0]["RuleArn"]  # fmt: skip
        self.service.deployment_configuration = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 15}
        self.service.load_balancers = [
            {
                "targetGroupArn": groups["blue"],
                "containerName": name,
                "containerPort": 8080,
                "advancedConfiguration": {
                    "alternateTargetGroupArn": groups["green"],
                    "productionListenerRule": self.rule,
                    "roleArn": f"arn:aws:iam::{ACCOUNT}:role/fm-ecs-infrastructure",
                },
            }
        ]
        self.serving = groups["blue"]
        return groups

    @staticmethod
    def _forward(serving: str, idle: str) -> dict[str, Any]:
        return {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": serving, "Weight": 100},
                    {"TargetGroupArn": idle, "Weight": 0},
                ]
            },
        }

    def _shift(self, to: str) -> None:
        other = next(g for g in self.groups.values() if g != to)
        self.aws("elbv2").modify_rule(RuleArn=self.rule, Actions=[self._forward(to, other)])
        self.serving = to

    def update_service(self, properties: dict) -> Any:
        old_td = self.service.task_definition
        service = self.update(properties)
        if service.task_definition == old_td:
            return service
        blue = next(d for d in service.deployments if d["status"] == "PRIMARY")
        blue["status"] = "ACTIVE"
        green = {
            **blue,
            "id": f"ecs-svc/{time.time_ns()}",
            "status": "PRIMARY",
            "taskDefinition": service.task_definition,
            "rolloutState": "IN_PROGRESS",
            "runningCount": blue["desiredCount"],
            "createdAt": datetime.now(UTC),
        }
        service.deployments = [green, blue]
        self.started += blue["desiredCount"]
        FakeEcsScheduler.event(service, f"has started {blue['desiredCount']} tasks.")
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/fm-test/{service.name}/{time.time_ns()}"
        self.deployment = {
            "serviceDeploymentArn": arn,
            "status": "IN_PROGRESS",
            "lifecycleStage": self.STAGES[0],
        }
        service.current_service_deployment = arn
        self.green = next(g for g in self.groups.values() if g != self.serving)
        return service

    def describe_services(self, cluster: str, names: list[str]) -> Any:
        stage = self.deployment.get("lifecycleStage")
        if self.deployment.get("status") == "IN_PROGRESS" and stage != "BAKE_TIME":
            following = self.STAGES[self.STAGES.index(stage) + 1]
            if following == "PRODUCTION_TRAFFIC_SHIFT":
                self.aws("elbv2").register_targets(
                    TargetGroupArn=self.green, Targets=[{"Id": "100.64.1.21"}]
                )
            if following == "BAKE_TIME":
                self._shift(self.green)
            self.deployment["lifecycleStage"] = following
        return self.describe(cluster, names)

    def roll_back(self) -> None:
        """ECS's ROLLBACK during the bake: traffic back to the previous revision's group, the
        previous deployment PRIMARY again; its tasks ran all along, so none starts."""
        service = self.service
        _, blue = service.deployments
        self._shift(next(g for g in self.groups.values() if g != self.green))
        blue.update(status="PRIMARY", rolloutState="COMPLETED")
        service.deployments = [blue]
        service.task_definition = blue["taskDefinition"]
        self.deployment.update(status="ROLLBACK_SUCCESSFUL", statusReason="stopped with ROLLBACK")
        FakeEcsScheduler.event(service, "rolled back: production traffic on the previous revision.")


class FakeMigrationContainer:
    """Plays the migration container, which moto never runs: when run_task starts a task, its
    container "prints" `lines` to the task's CloudWatch Logs stream and "exits" with `code`.
    moto then moves the task to STOPPED by itself after a few describe_tasks calls."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        code: int,
        lines: list[str],
        answer: Callable[[list[str]], tuple[int, list[str]]] | None = None,
    ):
        self.backend, self.code, self.lines = ecs_backend(), code, lines
        self.answer = answer or (lambda command: (self.code, self.lines))
        self.run = self.backend.run_task
        self.commands: list[list[str]] = []
        monkeypatch.setattr(self.backend, "run_task", self.run_task)

    def run_task(self, *args: Any, **kwargs: Any) -> Any:
        tasks = self.run(*args, **kwargs)
        logs = logs_backends[ACCOUNT][REGION]
        for task in tasks:
            container = task.containers[0]
            override = task.overrides["containerOverrides"][0]
            self.commands.append(override["command"])
            container.exitCode, lines = self.answer(override["command"])
            stream = f"fm/{container.name}/{task.task_arn.rsplit('/', 1)[-1]}"
            logs.create_log_stream(LOG_GROUP, stream)
            now = int(time.time() * 1000)
            events = [{"timestamp": now + i, "message": m} for i, m in enumerate(lines)]
            if events:
                logs.put_log_events(LOG_GROUP, stream, events)
        return tasks


def fake_docker_push(aws):
    """A FAKE of AwsRuntime._docker_push: moto's ECR cannot receive a docker push, so the image
    arrives through ECR's put_image with a made-up manifest whose config digest is the local
    image id (what a real push of that image would store)."""

    def push(self, image: BuiltImage, repository: str, tag: str, auth: dict[str, str]) -> None:
        assert auth["username"] == "AWS" and auth["password"]
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1000,
                "digest": image.image_id,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 2000,
                    "digest": "sha256:" + image.image_id[-64:][::-1],
                }
            ],
        }
        aws("ecr").put_image(
            repositoryName=repository.split("/", 1)[1],
            imageManifest=json.dumps(manifest),
            imageTag=tag,
        )

    return push
