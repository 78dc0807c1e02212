"""The AWS target's pure decisions, on describe_* responses shaped like the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from targets.aws.decisions import (
    AwsNames,
    Outcome,
    blue_green_outcome,
    change_set_is_empty,
    change_set_summary,
    deployment_outcome,
    failed_stack_events,
    live_desired_count,
    main_container,
    new_events,
    parse_image,
    rds_identifier,
    repository_name,
    required_parameters,
    resolve_names,
    rollout_to_stop,
    serving_target_groups,
    snapshot_identifier,
    stack_parameters,
    task_exit,
    template_parameters,
    uses_blue_green,
    with_image,
)

TD = "arn:aws:ecs:eu-west-1:123456789012:task-definition/fm-backend"
OLD, NEW = f"{TD}:7", f"{TD}:8"


def deployment(status, td, rollout, running=2, desired=2, reason="", failed=0):
    return {
        "id": f"ecs-svc/{abs(hash((status, td))) % 10**12}",
        "status": status,
        "taskDefinition": td,
        "desiredCount": desired,
        "pendingCount": desired - running,
        "runningCount": running,
        "failedTasks": failed,
        "rolloutState": rollout,
        "rolloutStateReason": reason,
        "launchType": "FARGATE",
    }


def service(*deployments):
    return {
        "serviceName": "fm-backend",
        "status": "ACTIVE",
        "desiredCount": 2,
        "taskDefinition": deployments[0]["taskDefinition"],
        "deployments": list(deployments),
        "events": [],
    }


class TestDeploymentOutcome:
    def test_completed_primary_on_the_new_revision_succeeds(self):
        described = service(deployment("PRIMARY", NEW, "COMPLETED"))
        assert deployment_outcome(described, NEW) == Outcome(
            "succeeded", "rollout COMPLETED, 2/2 running, 0 pending, 0 failed tasks"
        )

    def test_rollout_in_progress_with_the_old_one_draining(self):
        described = service(
            deployment("PRIMARY", NEW, "IN_PROGRESS", running=1),
            deployment("ACTIVE", OLD, "COMPLETED"),
        )
        assert deployment_outcome(described, NEW) == Outcome(
            "in_progress", "rollout IN_PROGRESS, 1/2 running, 1 pending, 0 failed tasks"
        )

    def test_completed_but_not_all_tasks_running_is_still_in_progress(self):
        described = service(deployment("PRIMARY", NEW, "COMPLETED", running=1))
        assert deployment_outcome(described, NEW).state == "in_progress"

    def test_failed_rollout_fails(self):
        described = service(
            deployment("PRIMARY", NEW, "FAILED", running=0, reason="tasks failed to start")
        )
        assert deployment_outcome(described, NEW) == Outcome(
            "failed", "rollout FAILED: tasks failed to start"
        )

    def test_circuit_breaker_rollback_is_a_failure_not_a_success(self):
        # What ECS shows after its circuit breaker rolled back: the old revision is PRIMARY
        # again and COMPLETED (the service is stable), the new one is FAILED.
        breaker = "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1234567890."
        described = service(
            deployment("PRIMARY", OLD, "COMPLETED"),
            deployment("ACTIVE", NEW, "FAILED", running=0, reason=breaker, failed=4),
        )
        assert deployment_outcome(described, NEW) == Outcome(
            "failed", f"ECS rolled the deployment back: {breaker}; the service runs {OLD} again"
        )

    def test_primary_on_another_revision_without_a_trace_of_ours_fails(self):
        described = service(deployment("PRIMARY", f"{TD}:9", "IN_PROGRESS"))
        assert deployment_outcome(described, NEW) == Outcome(
            "failed",
            f"the PRIMARY deployment runs {TD}:9, not {NEW}: ECS rolled it back or another "
            "deploy replaced it",
        )

    def test_no_primary_yet_is_in_progress(self):
        assert deployment_outcome({"deployments": []}, NEW) == Outcome(
            "in_progress", "no PRIMARY deployment yet"
        )


def test_new_events_are_the_unseen_ones_oldest_first():
    events = [
        {"id": "3", "message": "(service fm-backend) has reached a steady state."},
        {"id": "2", "message": "(service fm-backend) has started 2 tasks: (task a) (task b)."},
        {"id": "1", "message": "(service fm-backend) has stopped 2 running tasks."},
    ]
    assert [e["id"] for e in new_events(events, {"1"})] == ["2", "3"]


class TestIdentifiers:
    @pytest.mark.parametrize(
        ("instance", "backup_id", "expected"),
        [
            ("fm-db", "staging-1.4.0-20260101120000", "fm-db-staging-1-4-0-20260101120000"),
            ("fm-db", "prod_v2--hotfix-", "fm-db-prod-v2-hotfix"),
            ("1db", "x", "fm-1db-x"),
            ("db", "release 3 (final)", "db-release-3-final"),
        ],
        ids=["dots", "underscores-and-double-hyphens", "leading-digit", "spaces-and-brackets"],
    )
    def test_snapshot_identifier_follows_rds_rules(self, instance, backup_id, expected):
        assert snapshot_identifier(instance, backup_id) == expected

    def test_long_identifiers_are_cut_without_a_trailing_hyphen(self):
        name = rds_identifier("a" * 61 + "-bbb", 62)
        assert name == "a" * 61
        assert len(snapshot_identifier("db", "x" * 400)) == 255

    @pytest.mark.parametrize(
        ("image", "expected"),
        [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmasters/backend:1.4.0",
                ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmasters/backend", "1.4.0", None),
            ),
            (
                "127.0.0.1:5000/flowmasters/backend:abc123@sha256:" + "f" * 64,
                ("127.0.0.1:5000/flowmasters/backend", "abc123", "sha256:" + "f" * 64),
            ),
            (
                "127.0.0.1:5000/flowmasters/backend",
                ("127.0.0.1:5000/flowmasters/backend", None, None),
            ),
            ("nginx@sha256:" + "0" * 64, ("nginx", None, "sha256:" + "0" * 64)),
        ],
        ids=["ecr-tag", "port-tag-digest", "port-no-tag", "digest-only"],
    )
    def test_parse_image(self, image, expected):
        assert tuple(parse_image(image)) == expected

    def test_repository_name_drops_the_registry_host(self):
        assert repository_name("1.dkr.ecr.eu-west-1.amazonaws.com/flowmasters/backend") == (
            "flowmasters/backend"
        )
        assert repository_name("flowmasters/backend") == "flowmasters/backend"


class TestTaskDefinitions:
    described = {
        "taskDefinitionArn": OLD,
        "family": "fm-backend",
        "revision": 7,
        "status": "ACTIVE",
        "compatibilities": ["EC2", "FARGATE"],
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
        "registeredAt": "2026-01-01T00:00:00Z",
        "registeredBy": "arn:aws:iam::123456789012:role/deployer",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {"name": "log-router", "image": "fluent-bit:2", "essential": False},
            {"name": "backend", "image": "repo/backend:1.3.0", "essential": True},
        ],
    }

    def test_with_image_changes_only_the_image_and_drops_read_only_keys(self):
        assert with_image(self.described, "backend", "repo/backend:1.4.0") == {
            "family": "fm-backend",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {"name": "log-router", "image": "fluent-bit:2", "essential": False},
                {"name": "backend", "image": "repo/backend:1.4.0", "essential": True},
            ],
        }
        assert self.described["containerDefinitions"][1]["image"] == "repo/backend:1.3.0"

    def test_main_container_is_the_one_named_like_the_service(self):
        assert main_container(self.described, "backend")["name"] == "backend"
        assert main_container(self.described, "frontend")["name"] == "backend"  # first essential


class TestChangeSets:
    def test_summary_lists_each_resource_change(self):
        changes = [
            {
                "Type": "Resource",
                "ResourceChange": {
                    "Action": "Modify",
                    "LogicalResourceId": "BackendService",
                    "ResourceType": "AWS::ECS::Service",
                    "Replacement": "False",
                },
            },
            {
                "Type": "Resource",
                "ResourceChange": {
                    "Action": "Modify",
                    "LogicalResourceId": "Database",
                    "ResourceType": "AWS::RDS::DBInstance",
                    "Replacement": "True",
                },
            },
        ]
        assert change_set_summary(changes) == (
            "Modify AWS::ECS::Service BackendService\n"
            "Modify AWS::RDS::DBInstance Database (replacement: True)"
        )

    def test_the_no_changes_failure_is_recognised(self):
        reason = (
            "The submitted information didn't contain changes. Submit different information to "
            "create a change set."
        )
        assert change_set_is_empty("FAILED", reason)
        assert not change_set_is_empty("FAILED", "Template format error")
        assert not change_set_is_empty("CREATE_COMPLETE", None)


class TestStackParameters:
    template = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  EnvironmentName: {Type: String}
  BackendImage: {Type: String}
  DesiredCount: {Type: Number, Default: 2}
Resources:
  Repo: {Type: AWS::ECR::Repository, Properties: {RepositoryName: !Sub "fm-${EnvironmentName}"}}
"""

    def test_template_parameters_reads_yaml_with_short_form_tags(self):
        assert template_parameters(self.template) == {
            "EnvironmentName",
            "BackendImage",
            "DesiredCount",
        }
        assert template_parameters('{"Parameters": {"A": {"Type": "String"}}}') == {"A"}

    def test_an_update_keeps_previous_values_of_what_is_not_given(self):
        declared = template_parameters(self.template)
        previous = {"EnvironmentName", "BackendImage", "DesiredCount", "Removed"}
        given = {"BackendImage": "repo/backend:1.4.0", "NotInTemplate": "x"}
        assert stack_parameters(declared, previous, given) == [
            {"ParameterKey": "BackendImage", "ParameterValue": "repo/backend:1.4.0"},
            {"ParameterKey": "DesiredCount", "UsePreviousValue": True},
            {"ParameterKey": "EnvironmentName", "UsePreviousValue": True},
        ]

    def test_failed_stack_events_say_why_oldest_first(self):
        events = [  # DescribeStackEvents lists the newest first
            {"LogicalResourceId": "fm", "ResourceStatus": "UPDATE_ROLLBACK_IN_PROGRESS"},
            {
                "LogicalResourceId": "BackendService",
                "ResourceStatus": "UPDATE_FAILED",
                "ResourceStatusReason": "Resource update cancelled",
            },
            {
                "LogicalResourceId": "Database",
                "ResourceStatus": "UPDATE_FAILED",
                "ResourceStatusReason": "DB instance class not supported",
            },
        ]
        assert failed_stack_events(events) == (
            "Database: DB instance class not supported; BackendService: Resource update cancelled"
        )
        assert failed_stack_events([]) == "no failed resource events"


class TestOneOffTasks:
    def test_exit_code_and_why_it_stopped(self):
        task = {
            "lastStatus": "STOPPED",
            "stopCode": "EssentialContainerExited",
            "stoppedReason": "Essential container in task exited",
            "containers": [{"name": "backend", "exitCode": 1}],
        }
        assert task_exit(task, "backend") == (
            1,
            "EssentialContainerExited; Essential container in task exited",
        )

    def test_a_task_that_never_started_has_no_exit_code(self):
        task = {
            "stopCode": "TaskFailedToStart",
            "stoppedReason": "CannotPullContainerError: pull image manifest has been retried",
            "containers": [{"name": "backend", "reason": "CannotPullContainerError"}],
        }
        code, why = task_exit(task, "backend")
        assert code is None
        assert why.startswith("TaskFailedToStart; CannotPullContainerError")


OUTPUTS = {
    "ClusterName": "flowmasters-staging",
    "BackendServiceName": "backend",
    "FrontendServiceName": "frontend",
    "BackendRepositoryUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmasters-staging/backend",
    "FrontendRepositoryUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmasters-staging/frontend",
    "DBInstanceIdentifier": "flowmasters-staging",
    "DistributionId": "E2EXAMPLE",
    "BackendTargetGroupArn": "arn:tg/backend",
    "FrontendTargetGroupArn": "arn:tg/frontend",
    "PrivateSubnetIds": "subnet-a,subnet-b",
    "ServiceSecurityGroupId": "sg-1",
}


def test_names_come_from_the_stack_outputs():
    names = resolve_names({}, OUTPUTS, ["backend", "frontend"])

    assert names == AwsNames(
        cluster="flowmasters-staging",
        services={"backend": "backend", "frontend": "frontend"},
        repositories={
            "backend": "flowmasters-staging/backend",
            "frontend": "flowmasters-staging/frontend",
        },
        db_instance_identifier="flowmasters-staging",
        distribution_id="E2EXAMPLE",
        target_groups={"backend": "arn:tg/backend", "frontend": "arn:tg/frontend"},
        subnets=["subnet-a", "subnet-b"],
        security_groups=["sg-1"],
    )


def test_a_migrator_image_finds_its_repository_in_the_outputs():
    outputs = {
        **OUTPUTS,
        "BackendMigratorRepositoryUri": "1.dkr.ecr/flowmasters-staging/backend-migrator",
    }

    names = resolve_names({}, outputs, ["backend-migrator", "backend", "frontend"])

    assert names.repositories["backend-migrator"] == "flowmasters-staging/backend-migrator"
    assert "backend-migrator" not in names.services


def test_names_in_the_block_win_over_the_outputs():
    given = {
        "cluster": "shared",
        "services": {"backend": "api"},
        "subnets": ["subnet-z"],
        "distribution_id": None,
        "target_groups": {},
    }

    names = resolve_names(given, OUTPUTS, ["backend", "frontend"])

    assert (names.cluster, names.services, names.subnets) == (
        "shared",
        {"backend": "api", "frontend": "frontend"},
        ["subnet-z"],
    )
    assert names.distribution_id == "E2EXAMPLE"  # None in the block: not given


def test_without_a_stack_only_the_block_names_anything():
    names = resolve_names({"cluster": "c"}, {}, ["backend"])

    assert names == AwsNames("c", {}, {}, None, None, {}, [], [])


def test_required_parameters_are_those_without_a_default():
    template = (
        "Parameters:\n"
        "  EnvironmentName: {Type: String}\n"
        "  BackendImage: {Type: String, Description: x}\n"
        "  DesiredCount: {Type: Number, Default: 2}\n"
        "Resources:\n"
        "  X: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: !Ref EnvironmentName}}\n"
    )

    assert required_parameters(template) == {"EnvironmentName", "BackendImage"}


def test_the_real_template_needs_only_the_environment_and_the_two_images():
    template = Path(__file__).resolve().parents[4] / "infra/cloudformation/flowmasters.yaml"

    assert required_parameters(template.read_text()) == {
        "EnvironmentName",
        "BackendImage",
        "FrontendImage",
    }


def test_a_rollback_stops_the_rollout_in_progress_while_the_old_revision_serves():
    in_flight = deployment("PRIMARY", NEW, "IN_PROGRESS", running=0)
    svc = service(in_flight, deployment("ACTIVE", OLD, "COMPLETED"))

    assert rollout_to_stop(svc, OLD) == in_flight


@pytest.mark.parametrize(
    "deployments",
    [
        # the rollout is over: update the service back
        (deployment("PRIMARY", NEW, "COMPLETED"),),
        # the rollout in progress is already the revision we want
        (deployment("PRIMARY", OLD, "IN_PROGRESS"), deployment("ACTIVE", NEW, "COMPLETED")),
        # nothing of the wanted revision serves any more: stopping would not return to it
        (deployment("PRIMARY", NEW, "IN_PROGRESS"),),
    ],
)
def test_otherwise_the_rollback_updates_the_service(deployments):
    assert rollout_to_stop(service(*deployments), OLD) is None


@pytest.mark.parametrize(
    ("counts", "parameter"),
    [
        ({"backend": 2, "frontend": 2}, "2"),
        ({"backend": 2, "frontend": 3}, None),  # one parameter cannot say both: keep the stack's
        ({"backend": 0, "frontend": 0}, None),  # nothing runs (a bootstrap): keep the stack's
        ({}, None),
    ],
)
def test_the_stack_gets_the_task_count_the_services_share(counts, parameter):
    assert live_desired_count(counts) == parameter


def blue_green(*deployments):
    return {
        **service(*deployments),
        "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 15},
        "currentServiceDeployment": "arn:aws:ecs:eu-west-1:123456789012:service-deployment/x/y/z",
    }


def service_deployment(status, stage=None, reason=None):
    found = {"serviceDeploymentArn": "arn:sd", "status": status}
    if stage:
        found["lifecycleStage"] = stage
    if reason:
        found["statusReason"] = reason
    return found


class TestBlueGreenOutcome:
    """ECS's own blue/green deployments: a release's deploy is done once production traffic is
    on the new revision, while the previous one still runs through ECS's bake time."""

    GREEN = deployment("PRIMARY", NEW, "IN_PROGRESS", running=2)
    BLUE = deployment("ACTIVE", OLD, "COMPLETED", running=2)

    @pytest.mark.parametrize("stage", ["BAKE_TIME", "CLEAN_UP"])
    def test_traffic_on_the_new_revision_with_the_old_still_running_is_done(self, stage):
        outcome = blue_green_outcome(
            blue_green(self.GREEN, self.BLUE), service_deployment("IN_PROGRESS", stage), NEW
        )

        assert outcome == Outcome(
            "succeeded",
            f"production traffic shifted ({stage}); the previous revision keeps running until "
            "ECS's bake time (15 min) ends",
        )

    @pytest.mark.parametrize(
        "stage", ["RECONCILE_SERVICE", "SCALE_UP", "TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"]
    )
    def test_before_production_traffic_moves_it_is_in_progress(self, stage):
        outcome = blue_green_outcome(
            blue_green(self.GREEN, self.BLUE), service_deployment("IN_PROGRESS", stage), NEW
        )

        assert outcome == Outcome("in_progress", f"blue/green IN_PROGRESS at {stage}")

    @pytest.mark.parametrize("status", ["ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"])
    def test_an_ecs_rollback_is_a_failure(self, status):
        outcome = blue_green_outcome(
            blue_green(self.BLUE),
            service_deployment(status, reason="tasks failed their health checks"),
            NEW,
        )

        assert outcome == Outcome(
            "failed", f"ECS rolled the deployment back ({status}): tasks failed their health checks"
        )

    def test_a_completed_deployment_succeeds(self):
        done = deployment("PRIMARY", NEW, "COMPLETED")
        outcome = blue_green_outcome(blue_green(done), service_deployment("SUCCESSFUL"), NEW)

        assert outcome == Outcome("succeeded", "blue/green deployment completed")

    def test_a_primary_on_another_revision_fails(self):
        other = deployment("PRIMARY", OLD, "COMPLETED")
        outcome = blue_green_outcome(
            blue_green(other), service_deployment("IN_PROGRESS", "SCALE_UP"), NEW
        )

        assert outcome.state == "failed" and f"runs {OLD}, not {NEW}" in outcome.reason

    def test_only_a_blue_green_strategy_counts_as_one(self):
        assert uses_blue_green(blue_green(self.BLUE))
        assert not uses_blue_green(service(self.BLUE))


def test_a_listener_rule_serves_the_target_groups_weighted_above_zero():
    weighted = {
        "Actions": [
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": "arn:tg/blue", "Weight": 0},
                        {"TargetGroupArn": "arn:tg/green", "Weight": 100},
                    ]
                },
            }
        ]
    }
    plain = {"Actions": [{"Type": "forward", "TargetGroupArn": "arn:tg/blue"}]}

    assert serving_target_groups(weighted) == ["arn:tg/green"]
    assert serving_target_groups(plain) == ["arn:tg/blue"]
    assert serving_target_groups({"Actions": [{"Type": "fixed-response"}]}) == []
