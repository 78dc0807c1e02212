"""The AWS target against moto: a ThreadedMotoServer on 127.0.0.1, never a real account.

Every boto3 call goes to the in-process moto server of tests/support/moto_world.py (the block's
endpoint_url, and AWS_ENDPOINT_URL as a second guard). Where moto does not model AWS, the test
drives the state by hand through moto's in-process backends with that module's FAKES:

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
from typing import Any

import pytest

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from domain.migrations import MigrationSpec, MigrationTable
from domain.results import BuiltImage
from targets.aws.runtime import AwsRuntime
from tests.support.moto_world import (
    ACCOUNT,
    SPEC,
    FakeEcsScheduler,
    FakeMigrationContainer,
    FakeServiceDeployments,
    ecs_backend,
    fake_docker_push,
    moto_service,
    moto_service_image,
    no_secret,
    service_spec,
)

pytestmark = pytest.mark.integration


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
    target = AwsRuntime(block.model_copy(update={"cluster": "fm-missing"}), SPEC)
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
    target = AwsRuntime(block.model_copy(update=settings), SPEC)

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
    updater = AwsRuntime(block.model_copy(update=settings), SPEC)
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
    target = AwsRuntime(block.model_copy(update=settings), SPEC)
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
    target = AwsRuntime(block.model_copy(update=settings), SPEC)

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
    target = AwsRuntime(block.model_copy(update=settings), SPEC)

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

    report = AwsRuntime(only_stack, SPEC).verify()

    details = {f.component: f.detail for f in report.findings}
    assert details["ecs cluster"] == "ECS cluster fm-test ACTIVE"
    assert details["ecs service backend"].startswith("fm-test-backend runs ")
    assert details["database"] == "RDS postgres fm-test-db available"
    assert details["cdn"].startswith(f"CloudFront {world['distribution']} ")
    assert "load balancer" in details


def test_a_block_that_names_nothing_and_has_no_stack_says_what_to_do(block):
    bare = AwsRuntime(
        block.model_copy(update={"stack_name": "fm-nowhere", "cluster": None, "services": {}}), SPEC
    )

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
    assert "`python3 /app/migrate.py up` in " in message  # the command and its image
    assert "exited 1; nothing after this step ran" in message
    assert "ERROR: syntax error" in message
    assert {n: moto_service(n).task_definition for n in ("backend", "frontend")} == before
    assert len(aws("rds").describe_db_snapshots()["DBSnapshots"]) == snapshots
    assert aws("ecs").list_task_definitions()["taskDefinitionArns"] == revisions


PAYLOAD_ON_AWS = EnvironmentSpec(
    name="aws-test",
    services=(
        service_spec(
            "backend",
            1,
            uses_database=True,
            migrations=MigrationSpec(
                command=("node_modules/.bin/payload", "migrate"),
                image_target="migrator",
                table=MigrationTable(name="payload_migrations"),
                table_command=("node", "scripts/migration-table.mjs"),
            ),
        ),
        service_spec("frontend", 2),
    ),
)
INITIAL, SUMMARY = "20261202_011058_initial", "20261202_044927_page_summary"


def payload_container(monkeypatch, tables: list[list[list]], migrate_code: int = 0):
    """FAKE (moto runs no container): the table reader prints the next of `tables`; `payload
    migrate` exits `migrate_code`, printing what Payload prints."""

    def answer(command: list[str]) -> tuple[int, list[str]]:
        if command[1] == "scripts/migration-table.mjs":
            return 0, [json.dumps({"rows": tables.pop(0)})]
        return migrate_code, [f"[09:00:00] INFO: Migrating: {SUMMARY}"]

    return FakeMigrationContainer(monkeypatch, 0, [], answer=answer)


def test_migrate_on_aws_is_judged_by_the_table_its_reader_prints(block, monkeypatch):
    target = AwsRuntime(block, PAYLOAD_ON_AWS)
    image = moto_service_image("backend")
    container = payload_container(monkeypatch, [[[INITIAL, 1]], [[INITIAL, 1], [SUMMARY, 2]]])

    result = target.migrate(image, "up", expected=[SUMMARY])

    assert result.applied == (SUMMARY,) and result.schema_version == SUMMARY
    reader = ["node", "scripts/migration-table.mjs", "payload_migrations", "name", "batch"]
    assert container.commands == [reader, ["node_modules/.bin/payload", "migrate"], reader]


def test_a_silent_exit_0_on_aws_fails_the_release(block, monkeypatch):
    target = AwsRuntime(block, PAYLOAD_ON_AWS)
    payload_container(monkeypatch, [[[INITIAL, 1]], [[INITIAL, 1]]])

    with pytest.raises(ReleaseError) as failed:
        target.migrate(moto_service_image("backend"), "up", expected=[SUMMARY])

    assert f"does not record ['{SUMMARY}']: they did not run" in str(failed.value)


def test_a_dev_push_record_on_aws_is_refused_at_the_plan(block, monkeypatch):
    target = AwsRuntime(block, PAYLOAD_ON_AWS)
    container = payload_container(monkeypatch, [[[INITIAL, 1], ["dev", -1]]])

    with pytest.raises(ReleaseError) as refused:
        target.schema_status(moto_service_image("backend"))

    assert "development 'push' record in payload_migrations (dev, batch -1)" in str(refused.value)
    assert len(container.commands) == 1, "only the table was read"


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
    target = AwsRuntime(block.model_copy(update={"scale_from_zero": 3}), SPEC)
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
    target = AwsRuntime(block.model_copy(update={"deploy_timeout_seconds": 0.2}), SPEC)
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
    target = AwsRuntime(block.model_copy(update={"deploy_timeout_seconds": 0.2}), SPEC)
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
    empty = block.model_copy(update={"target_groups": {"backend": world["tg"]["empty"]}})
    target = AwsRuntime(empty, SPEC)
    with pytest.raises(ReleaseError, match="load balancer: backend has no healthy target"):
        target.update_edge([])
