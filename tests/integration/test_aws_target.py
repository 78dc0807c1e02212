"""The AWS target against moto: a ThreadedMotoServer on 127.0.0.1, never a real account.

Every boto3 call goes to the in-process moto server (the block's endpoint_url, and
AWS_ENDPOINT_URL as a second guard). Where moto does not model AWS, the test drives the state
by hand through moto's in-process backends and says so:

- ECS never starts tasks: after update_service moto keeps the old deployment PRIMARY and
  IN_PROGRESS forever. `FakeEcsScheduler` plays ECS's part (see its docstring).
- One-off tasks never run a container: `FakeMigrationContainer` writes what the container
  would have logged into moto's CloudWatch Logs and sets its exit code.
- moto's ECR is an API, not a registry: the docker push is replaced by a FAKE `put_image`.

No local stack is needed: no image is built here (BuiltImage values are constructed directly).
Every test runs with DEBUG logging captured, and no credential may appear in a log record or in a
returned model.
"""

from __future__ import annotations

import json
import logging
import time
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

from blocks.aws import AwsTarget
from targets.base import BuiltImage, EnvironmentSpec, ServiceSpec
from targets.errors import ReleaseError

pytestmark = pytest.mark.integration

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
ACCESS_KEY = "AKIAFMTESTKEYNOTLOG1"
SECRET_KEY = "fm-secret-key-MUST-NOT-BE-LOGGED-5b7d1c"
SESSION_TOKEN = "fm-session-token-MUST-NOT-BE-LOGGED-9e2a4f"
SECRETS = (SECRET_KEY, SESSION_TOKEN, "123456789012-auth-token")  # the last: moto's ECR password
LOG_GROUP = "/flowmasters/test"


@pytest.fixture(scope="module", autouse=True)
def stack() -> None:
    """Overrides the integration conftest's check of the local stack: this module needs none."""


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
def target(block):
    return block.connect(SPEC)


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


class FakeMigrationContainer:
    """Plays the migration container, which moto never runs: when run_task starts a task, its
    container "prints" `lines` to the task's CloudWatch Logs stream and "exits" with `code`.
    moto then moves the task to STOPPED by itself after a few describe_tasks calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int, lines: list[str]):
        self.backend, self.code, self.lines = ecs_backend(), code, lines
        self.run = self.backend.run_task
        self.commands: list[list[str]] = []
        monkeypatch.setattr(self.backend, "run_task", self.run_task)

    def run_task(self, *args: Any, **kwargs: Any) -> Any:
        tasks = self.run(*args, **kwargs)
        logs = logs_backends[ACCOUNT][REGION]
        for task in tasks:
            container = task.containers[0]
            container.exitCode = self.code
            override = task.overrides["containerOverrides"][0]
            self.commands.append(override["command"])
            stream = f"fm/{container.name}/{task.task_arn.rsplit('/', 1)[-1]}"
            logs.create_log_stream(LOG_GROUP, stream)
            now = int(time.time() * 1000)
            events = [{"timestamp": now + i, "message": m} for i, m in enumerate(self.lines)]
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


# -- step 1 ---------------------------------------------------------------------------------------


def test_verify_finds_every_component(target):
    report = no_secret(target.verify())
    assert [f.component for f in report.findings] == [
        "aws account",
        "stack",
        "ecs cluster",
        "ecs service backend",
        "ecs service frontend",
        "database",
        "ecr backend",
        "ecr frontend",
        "load balancer",
        "cdn",
    ]
    assert all(f.ok for f in report.findings)
    assert report.findings[5].detail == "RDS postgres fm-test-db available"
    assert report.findings[1].detail == "stack fm-test does not exist yet: provisioning creates it"


def test_verify_names_a_missing_cluster_and_what_to_do(block):
    target = block.model_copy(update={"cluster": "fm-missing"}).connect(SPEC)
    with pytest.raises(ReleaseError) as failed:
        target.verify()
    assert "ecs cluster: ECS cluster fm-missing is missing: run the provision step" in str(
        failed.value
    )


TINY_TEMPLATE = (
    # A tiny stand-in for infra/cloudformation/flowmasters.yaml, with the same kind of image
    # parameter: the real template needs a VPC, RDS and more than moto can create.
    "AWSTemplateFormatVersion: '2010-09-09'\n"
    "Parameters:\n"
    "  Label: {Type: String}\n"
    "  BackendImage: {Type: String}\n"
    "Resources:\n"
    "  Logs: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: !Sub '/fm/${Label}'}}\n"
)


def test_provision_creates_then_changes_nothing_then_updates(block, tmp_path, aws):
    template = tmp_path / "stack.yaml"
    template.write_text(TINY_TEMPLATE)
    live = moto_service_image("backend")
    settings = {
        "stack_name": "fm-provision",
        "template_path": str(template),
        "stack_parameters": {"Label": "provisioned", "BackendImage": live},
        "image_parameters": {"backend": "BackendImage"},
    }
    target = block.model_copy(update=settings).connect(SPEC)

    proposed = no_secret(target.plan_infrastructure())
    assert (proposed.kind, proposed.changes) == ("CREATE", 1)
    assert proposed.summary.endswith("Add AWS::Logs::LogGroup Logs")
    # Proposed is not applied: CloudFormation holds an empty stack under review, no resources.
    stack = aws("cloudformation").describe_stacks(StackName="fm-provision")["Stacks"][0]
    assert stack["StackStatus"] == "REVIEW_IN_PROGRESS"

    created = no_secret(target.provision(proposed))
    assert created.changed == ("stack fm-provision: 1 resource changes",)
    stack = aws("cloudformation").describe_stacks(StackName="fm-provision")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    again = target.provision(proposed)  # a task retry after success only waits
    assert again.changed == created.changed

    unchanged = target.plan_infrastructure()
    assert unchanged.empty
    assert unchanged.summary == "stack fm-provision up to date"
    assert target.provision(unchanged).changed == ()
    change_sets = aws("cloudformation").list_change_sets(StackName="fm-provision")["Summaries"]
    assert "FAILED" not in [c["Status"] for c in change_sets]  # the empty one was deleted

    template.write_text(
        template.read_text()
        + "  More: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /fm/more}}\n"
    )
    # A stale image in the block and no Label: the update must still pass the live image (never
    # undo a release) and keep Label's previous value.
    settings["stack_parameters"] = {"BackendImage": "stale/backend:0.1"}
    updater = block.model_copy(update=settings).connect(SPEC)
    update = updater.plan_infrastructure()
    assert update.kind == "UPDATE"
    assert "Add AWS::Logs::LogGroup More" in update.summary
    updated = updater.provision(update)
    assert updated.changed == ("stack fm-provision: 1 resource changes",)
    stack = aws("cloudformation").describe_stacks(StackName="fm-provision")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {
        "Label": "provisioned",
        "BackendImage": live,
    }


def test_a_stack_update_keeps_the_task_count_the_services_run(block, tmp_path, aws):
    """Created with DesiredCount 0 (a bootstrap), the services were scaled since: the next stack
    change passes the count they run, never the stack's stale 0."""
    template = tmp_path / "count.yaml"
    template.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Parameters:\n"
        "  DesiredCount: {Type: Number, Default: 2}\n"
        "Resources:\n"
        "  Logs: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /fm/count}}\n"
    )
    settings = {
        "stack_name": "fm-count",
        "template_path": str(template),
        "bootstrap_parameters": {"DesiredCount": "0"},
        "desired_count_parameter": "DesiredCount",
    }
    target = block.model_copy(update=settings).connect(SPEC)
    target.provision(target.plan_infrastructure())
    cfn = aws("cloudformation")
    assert stack_parameter_values(cfn, "fm-count") == {"DesiredCount": "0"}
    for service in ("backend", "frontend"):
        moto_service(service).desired_count = 3

    template.write_text(
        template.read_text()
        + "  More: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /fm/count-more}}\n"
    )
    target.provision(target.plan_infrastructure())

    assert stack_parameter_values(cfn, "fm-count") == {"DesiredCount": "3"}
    for service in ("backend", "frontend"):
        moto_service(service).desired_count = 2


def stack_parameter_values(cfn: Any, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}


def test_a_discarded_proposal_for_a_new_stack_creates_nothing(block, tmp_path, aws):
    template = tmp_path / "stack.yaml"
    template.write_text(TINY_TEMPLATE)
    settings = {
        "stack_name": "fm-discarded",
        "template_path": str(template),
        "stack_parameters": {"Label": "discarded"},
        "bootstrap_parameters": {"BackendImage": "placeholder/backend:bootstrap"},
        "cloudformation_role_arn": f"arn:aws:iam::{ACCOUNT}:role/flowmasters-cloudformation",
    }
    target = block.model_copy(update=settings).connect(SPEC)

    proposed = target.plan_infrastructure()
    assert proposed.kind == "CREATE"
    target.discard_infrastructure_change(proposed)

    cfn = aws("cloudformation")
    # CloudFormation's empty REVIEW_IN_PROGRESS record stays (no DeleteStack in the IAM policy)
    stack = cfn.describe_stacks(StackName="fm-discarded")["Stacks"][0]
    assert stack["StackStatus"] == "REVIEW_IN_PROGRESS"
    change_sets = cfn.list_change_sets(StackName="fm-discarded")["Summaries"]
    # moto lists every stack's change sets, whatever StackName says: filter
    assert [c for c in change_sets if c["StackName"] == "fm-discarded"] == []
    assert cfn.describe_stack_resources(StackName="fm-discarded")["StackResources"] == []
    log_groups = aws("logs").describe_log_groups(logGroupNamePrefix="/fm/discarded")
    assert log_groups["logGroups"] == []

    again = target.plan_infrastructure()  # the next proposal is a CREATE again
    assert (again.kind, again.changes) == ("CREATE", 1)
    # Not executed here: moto makes a second stack of the same name for it (CloudFormation reuses
    # the record), and describe_stacks then answers with the first one.


def test_a_new_stack_without_its_required_parameters_is_refused_with_their_names(
    block, tmp_path, aws
):
    template = tmp_path / "stack.yaml"
    template.write_text(TINY_TEMPLATE)
    settings = {"stack_name": "fm-incomplete", "template_path": str(template)}
    target = block.model_copy(update=settings).connect(SPEC)

    with pytest.raises(ReleaseError) as refused:
        target.plan_infrastructure()

    assert "the template needs BackendImage, Label" in str(refused.value)
    assert "bootstrap_parameters" in str(refused.value)
    stacks = aws("cloudformation").list_stacks()["StackSummaries"]
    assert "fm-incomplete" not in [s["StackName"] for s in stacks]


def test_names_the_block_leaves_out_come_from_the_stack_outputs(block, tmp_path, aws, world):
    """An environment block that names only its stack: cluster, services, database, target
    groups and distribution are read from the stack's outputs, as flowmasters.yaml exports them."""
    template = tmp_path / "outputs.yaml"
    outputs = {
        "ClusterName": "fm-test",
        "BackendServiceName": "fm-test-backend",
        "FrontendServiceName": "fm-test-frontend",
        "DBInstanceIdentifier": "fm-test-db",
        "DistributionId": world["distribution"],
        "BackendTargetGroupArn": world["tg"]["backend"],
        "FrontendTargetGroupArn": world["tg"]["frontend"],
    }
    template.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Resources:\n"
        "  Logs: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /fm/outputs}}\n"
        "Outputs:\n" + "".join(f"  {k}: {{Value: '{v}'}}\n" for k, v in outputs.items())
    )
    cfn = aws("cloudformation")
    cfn.create_stack(StackName="fm-outputs", TemplateBody=template.read_text())
    cfn.get_waiter("stack_create_complete").wait(
        StackName="fm-outputs", WaiterConfig={"Delay": 0.1}
    )
    only_stack = block.model_copy(
        update={
            "stack_name": "fm-outputs",
            "cluster": None,
            "services": {},
            "db_instance_identifier": None,
            "distribution_id": None,
            "target_groups": {},
        }
    )

    report = only_stack.connect(SPEC).verify()

    details = {f.component: f.detail for f in report.findings}
    assert details["ecs cluster"] == "ECS cluster fm-test ACTIVE"
    assert details["ecs service backend"].startswith("fm-test-backend runs ")
    assert details["database"] == "RDS postgres fm-test-db available"
    assert details["cdn"].startswith(f"CloudFront {world['distribution']} ")
    assert "load balancer" in details


def test_a_block_that_names_nothing_and_has_no_stack_says_what_to_do(block):
    bare = block.model_copy(
        update={"stack_name": "fm-nowhere", "cluster": None, "services": {}}
    ).connect(SPEC)

    with pytest.raises(ReleaseError) as failed:
        bare.live_revision("backend")

    assert "names no ECS cluster: stack fm-nowhere has no ClusterName output" in str(failed.value)


# -- steps 2-3 ------------------------------------------------------------------------------------


def test_push_refuses_a_tag_that_holds_another_image(target, aws, monkeypatch, world):
    monkeypatch.setattr(type(target), "_docker_push", fake_docker_push(aws))  # FAKE: see above
    built = BuiltImage(
        service="frontend", image_id="sha256:" + "a1" * 32, local_ref="x", version="2.0.0"
    )

    pushed = no_secret(target.push_image(built))
    assert pushed.pushed
    assert pushed.repository == world["repos"]["frontend"]
    ecr_digest = aws("ecr").describe_images(
        repositoryName="flowmasters-aws-test/frontend", imageIds=[{"imageTag": "2.0.0"}]
    )["imageDetails"][0]["imageDigest"]
    assert pushed.digest == ecr_digest
    assert target.image_exists("frontend", "2.0.0")
    assert target.image_reference("frontend", "2.0.0") == f"{pushed.repository}:2.0.0"

    again = target.push_image(built)
    assert not again.pushed
    assert again.digest == pushed.digest

    other = built.model_copy(update={"image_id": "sha256:" + "b2" * 32})
    with pytest.raises(ReleaseError, match=r"2\.0\.0 already exists and holds a different image"):
        target.push_image(other)
    with pytest.raises(ReleaseError, match=r"ECR has no frontend image for version '9\.9\.9'"):
        target.image_reference("frontend", "9.9.9")


# -- step 4 ---------------------------------------------------------------------------------------


def test_backup_takes_an_available_snapshot(target, aws):
    backup = no_secret(target.backup_database("aws-test-1.2.0-20260101120000"))
    snapshot_id = "fm-test-db-aws-test-1-2-0-20260101120000"
    found = aws("rds").describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
    assert found[0]["Status"] == "available"
    assert backup.location == found[0]["DBSnapshotArn"]
    assert backup.size_bytes == 20 * 2**30
    assert target.backup_database("aws-test-1.2.0-20260101120000") == backup  # a re-run reuses


def test_restore_swaps_in_the_snapshot_and_keeps_the_old_instance(target, aws):
    backup = target.backup_database("before-restore")
    deployment = moto_service("backend").deployments[0]["id"]
    target.restore_database(backup)
    instances = {
        i["DBInstanceIdentifier"]: i["DBInstanceStatus"]
        for i in aws("rds").describe_db_instances()["DBInstances"]
    }
    kept = [name for name in instances if name.startswith("fm-test-db-old-")]
    assert instances["fm-test-db"] == "available"
    assert len(kept) == 1
    assert not [name for name in instances if "-restore-" in name]  # renamed to fm-test-db
    # The backend uses the database: it was restarted (moto's force-new-deployment gives the
    # deployment a new id; its state was COMPLETED already, so there was nothing to wait for).
    assert moto_service("backend").deployments[0]["id"] != deployment
    assert moto_service("frontend").deployments[0]["status"] == "PRIMARY"


def test_migrate_reads_the_result_from_cloudwatch(target, monkeypatch):
    result = {"applied": [3], "reverted": [], "schema_version": 3}
    container = FakeMigrationContainer(
        monkeypatch, 0, ["applying 0003_add_index", json.dumps(result)]
    )
    migrated = no_secret(target.migrate(f"{moto_service_image('backend')}", "up"))
    assert migrated.applied == (3,)
    assert migrated.schema_version == 3
    assert migrated.changed
    assert container.commands == [["python3", "/app/migrate.py", "up"]]


def test_schema_status_with_a_new_image_runs_its_own_revision(target, monkeypatch, world, aws):
    status = {"applied": [1, 2], "available": [1, 2, 3], "pending": [3], "schema_version": 2}
    FakeMigrationContainer(monkeypatch, 0, [json.dumps(status)])
    image = f"{world['repos']['backend']}:1.5.0"
    assert target.schema_status(image).pending == (3,)
    migration_td = list(ecs_backend().tasks["fm-test"].values())[-1].task_definition_arn
    td = aws("ecs").describe_task_definition(taskDefinition=migration_td)
    assert td["taskDefinition"]["containerDefinitions"][0]["image"] == image
    assert moto_service("backend").task_definition == world["td"]["backend"]  # not deployed

    FakeEcsScheduler(monkeypatch, "completed")
    deployed = target.deploy_service("backend", image, "1.5.0")
    assert deployed.current.revision_id == migration_td  # the deploy reuses that revision


def test_a_failed_migration_raises_and_changes_nothing(target, monkeypatch, aws):
    FakeMigrationContainer(monkeypatch, 1, ["applying 0004_bad", "ERROR: syntax error"])
    before = {n: moto_service(n).task_definition for n in ("backend", "frontend")}
    snapshots = len(aws("rds").describe_db_snapshots()["DBSnapshots"])
    revisions = aws("ecs").list_task_definitions()["taskDefinitionArns"]
    with pytest.raises(ReleaseError) as failed:
        target.migrate(moto_service_image("backend"), "up")
    message = str(failed.value)
    assert "migrations in" in message
    assert "exited 1; nothing after this step ran" in message
    assert "ERROR: syntax error" in message
    assert {n: moto_service(n).task_definition for n in ("backend", "frontend")} == before
    assert len(aws("rds").describe_db_snapshots()["DBSnapshots"]) == snapshots
    assert aws("ecs").list_task_definitions()["taskDefinitionArns"] == revisions


# -- steps 5-6 ------------------------------------------------------------------------------------


def test_deploy_registers_a_revision_with_only_the_image_changed(
    target, monkeypatch, aws, world, caplog
):
    FakeEcsScheduler(monkeypatch, "completed")
    ecs = aws("ecs")
    before = target.live_revision("frontend")
    old_td = ecs.describe_task_definition(taskDefinition=before.revision_id)["taskDefinition"]
    image = f"{world['repos']['frontend']}:1.1.0"

    result = no_secret(target.deploy_service("frontend", image, "1.1.0"))

    assert result.changed
    assert result.previous == before
    assert result.current.version == "1.1.0"
    new_td = ecs.describe_task_definition(taskDefinition=result.current.revision_id)[
        "taskDefinition"
    ]
    assert new_td["revision"] == old_td["revision"] + 1
    changed = {
        k for k in old_td if k not in ("taskDefinitionArn", "revision") and old_td[k] != new_td[k]
    }
    assert changed == {"containerDefinitions"}
    old_container, new_container = (
        old_td["containerDefinitions"][0],
        new_td["containerDefinitions"][0],
    )
    assert {k for k in old_container if old_container[k] != new_container[k]} == {"image"}
    assert new_container["image"] == image
    assert moto_service("frontend").task_definition == result.current.revision_id
    assert (
        ecs.describe_task_definition(taskDefinition=before.revision_id)["taskDefinition"]["status"]
        == "ACTIVE"
    )  # the previous revision is kept for rollback
    assert target.live_revision("frontend") == result.current
    logged = [r.getMessage() for r in caplog.records if r.name == "flowmasters.aws"]
    assert "frontend 1.1.0: (service fm-test-frontend) has reached a steady state." in logged

    again = target.deploy_service("frontend", image, "1.1.0")
    assert not again.changed
    assert again.current == result.current
    families = ecs.list_task_definitions(familyPrefix="fm-test-frontend")["taskDefinitionArns"]
    assert len(families) == 2  # nothing new registered

    back = target.deploy_service("frontend", before.image, before.version)  # a rollback
    assert back.changed
    assert target.live_revision("frontend").version == before.version


def test_a_service_bootstrapped_with_no_tasks_is_scaled_up_by_its_first_deploy(
    block, monkeypatch, world
):
    """A stack created with DesiredCount 0 (no images existed yet) runs nothing; the first deploy
    starts `scale_from_zero` tasks, a service that runs tasks keeps its count."""
    FakeEcsScheduler(monkeypatch, "completed")
    target = block.model_copy(update={"scale_from_zero": 3}).connect(SPEC)
    moto_service("frontend").desired_count = 0

    target.deploy_service("frontend", f"{world['repos']['frontend']}:1.2.0", "1.2.0")
    assert moto_service("frontend").desired_count == 3

    target.deploy_service("frontend", f"{world['repos']['frontend']}:1.2.1", "1.2.1")
    assert moto_service("frontend").desired_count == 3


def test_a_circuit_breaker_rollback_is_a_failed_deploy(target, monkeypatch, aws, world):
    FakeEcsScheduler(monkeypatch, "rollback")
    before = target.live_revision("backend")
    with pytest.raises(ReleaseError) as failed:
        target.deploy_service("backend", f"{world['repos']['backend']}:1.6.0", "1.6.0")
    message = str(failed.value)
    assert "deploy of backend 1.6.0 to ECS service fm-test-backend failed" in message
    assert "ECS rolled the deployment back: ECS deployment circuit breaker" in message
    assert "deployment failed: tasks failed to start" in message  # the last events
    assert target.live_revision("backend") == before
    status = aws("ecs").describe_task_definition(taskDefinition=before.revision_id)
    assert status["taskDefinition"]["status"] == "ACTIVE"


def test_a_deploy_that_never_completes_times_out(block, monkeypatch, world):
    FakeEcsScheduler(monkeypatch, "stuck")
    target = block.model_copy(update={"deploy_timeout_seconds": 0.2}).connect(SPEC)
    with pytest.raises(ReleaseError) as failed:
        target.deploy_service("frontend", f"{world['repos']['frontend']}:1.7.0", "1.7.0")
    message = str(failed.value)
    assert "deploy of frontend 1.7.0 to ECS service fm-test-frontend did not complete in 0.2s" in (
        message
    )
    assert "has started 2 tasks" in message


def test_a_rollback_during_a_rollout_stops_it_with_ecs_rollback(block, monkeypatch, world):
    """A deploy that is still rolling out (here: it timed out) is rolled back by stopping it
    (StopServiceDeployment, ROLLBACK) rather than by starting another deployment."""
    scheduler = FakeEcsScheduler(monkeypatch, "stuck")
    deployments = FakeServiceDeployments(monkeypatch)
    target = block.model_copy(update={"deploy_timeout_seconds": 0.2}).connect(SPEC)
    before = target.live_revision("backend")
    with pytest.raises(ReleaseError):
        target.deploy_service("backend", f"{world['repos']['backend']}:1.9.0", "1.9.0")
    assert moto_service("backend").deployments[0]["rolloutState"] == "IN_PROGRESS"
    updates = []
    monkeypatch.setattr(
        scheduler.backend, "update_service", lambda p: updates.append(p) or scheduler.update(p)
    )

    back = target.deploy_service("backend", before.image, before.version)

    assert [stop_type for _, stop_type in deployments.stopped] == ["ROLLBACK"]
    assert updates == []  # no new deployment was started
    assert back.changed and back.current == before
    assert "stopped the deployment of" in back.detail
    assert target.live_revision("backend") == before


# -- step 7 ---------------------------------------------------------------------------------------


def test_update_edge_checks_targets_and_invalidates_the_cdn(target, aws, world):
    cloudfront = aws("cloudfront")
    edge = no_secret(target.update_edge([]))
    assert edge.load_balancer == ("ALB: backend 1/1 targets healthy, frontend 1/1 targets healthy")
    assert edge.cdn.startswith(f"CloudFront {world['distribution']}: invalidation ")
    assert edge.changed
    invalidations = cloudfront.list_invalidations(DistributionId=world["distribution"])
    assert invalidations["InvalidationList"]["Quantity"] >= 1


def test_update_edge_fails_without_a_healthy_target(block, world):
    target = block.model_copy(update={"target_groups": {"backend": world["tg"]["empty"]}}).connect(
        SPEC
    )
    with pytest.raises(ReleaseError, match="load balancer: backend has no healthy target"):
        target.update_edge([])
