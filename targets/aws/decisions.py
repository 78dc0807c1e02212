"""Pure decisions of the AWS target: plain dicts (boto3 responses) in, a verdict out.

No I/O here, so each rule is unit-tested on recorded-shape responses
(tests/unit/targets/aws/test_decisions.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal, NamedTuple

import yaml

State = Literal["in_progress", "succeeded", "failed"]

# What describe_task_definition returns but register_task_definition refuses.
READ_ONLY_TASK_DEFINITION_KEYS = frozenset(
    {
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
        "deregisteredAt",
    }
)


class Outcome(NamedTuple):
    state: State
    reason: str


def primary_deployment(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)


def deployment_outcome(service: dict[str, Any], new_td_arn: str) -> Outcome:
    """Where an ECS rolling deployment of `new_td_arn` stands, from one describe_services entry.

    Success is only the PRIMARY deployment running the new task definition with rolloutState
    COMPLETED and every desired task running. A PRIMARY on another task definition means ECS's
    circuit breaker rolled it back (or someone deployed over it): a failure, never a success,
    even though the service is stable again.
    """
    primary = primary_deployment(service)
    ours = next(
        (d for d in service.get("deployments", []) if d.get("taskDefinition") == new_td_arn), None
    )
    if primary is None:
        return Outcome("in_progress", "no PRIMARY deployment yet")
    if primary.get("taskDefinition") != new_td_arn:
        if ours is not None and ours.get("rolloutState") == "FAILED":
            return Outcome(
                "failed",
                f"ECS rolled the deployment back: {ours.get('rolloutStateReason', 'FAILED')}; "
                f"the service runs {primary.get('taskDefinition')} again",
            )
        return Outcome(
            "failed",
            f"the PRIMARY deployment runs {primary.get('taskDefinition')}, not {new_td_arn}: ECS "
            "rolled it back or another deploy replaced it",
        )
    state = primary.get("rolloutState")
    running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
    counts = (
        f"{running}/{desired} running, {primary.get('pendingCount', 0)} pending, "
        f"{primary.get('failedTasks', 0)} failed tasks"
    )
    if state == "FAILED":
        return Outcome("failed", f"rollout FAILED: {primary.get('rolloutStateReason', '')}")
    if state == "COMPLETED" and running == desired:
        return Outcome("succeeded", f"rollout COMPLETED, {counts}")
    return Outcome("in_progress", f"rollout {state or 'unknown'}, {counts}")


BLUE_GREEN = "BLUE_GREEN"
# ECS's blue/green lifecycle stages once production traffic is on the new revision: the previous
# one keeps running through BAKE_TIME, so going back only shifts traffic.
TRAFFIC_SHIFTED = frozenset({"BAKE_TIME", "CLEAN_UP"})
ROLLED_BACK = frozenset(
    {"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}
)


def uses_blue_green(service: dict[str, Any]) -> bool:
    """The service deploys with ECS's own blue/green strategy (a bake time, two target groups)."""
    return (service.get("deploymentConfiguration") or {}).get("strategy") == BLUE_GREEN


def bake_minutes(service: dict[str, Any]) -> int:
    return int((service.get("deploymentConfiguration") or {}).get("bakeTimeInMinutes") or 0)


def blue_green_outcome(
    service: dict[str, Any], deployment: dict[str, Any] | None, new_td_arn: str
) -> Outcome:
    """Where an ECS blue/green deployment of `new_td_arn` stands, from describe_services and the
    service deployment (describe_service_deployments) it started.

    A release's deploy is done once production traffic is on the new revision (BAKE_TIME): ECS
    keeps the previous revision running until its bake time ends, so the release's checks run
    while going back is still a traffic shift. ECS rolling it back, or a stop, is a failure.
    """
    if deployment is not None:
        status = deployment.get("status")
        why = deployment.get("statusReason") or (deployment.get("rollback") or {}).get("reason")
        if status in ROLLED_BACK:
            return Outcome("failed", f"ECS rolled the deployment back ({status}): {why or '?'}")
        if status in ("STOPPED", "STOP_REQUESTED"):
            return Outcome("failed", f"the deployment was stopped ({status}): {why or '?'}")
    primary = primary_deployment(service)
    if primary is None or primary.get("taskDefinition") != new_td_arn:
        runs = primary.get("taskDefinition") if primary else "nothing"
        return Outcome(
            "failed", f"the PRIMARY deployment runs {runs}, not {new_td_arn}: another deploy "
            "replaced it"
        )  # fmt: skip
    if deployment is None:
        return Outcome("in_progress", "waiting for ECS to start the service deployment")
    stage = deployment.get("lifecycleStage")
    if deployment.get("status") == "SUCCESSFUL":
        return Outcome("succeeded", "blue/green deployment completed")
    if deployment.get("status") == "IN_PROGRESS" and stage in TRAFFIC_SHIFTED:
        return Outcome(
            "succeeded",
            f"production traffic shifted ({stage}); the previous revision keeps running until "
            f"ECS's bake time ({bake_minutes(service)} min) ends",
        )
    return Outcome("in_progress", f"blue/green {deployment.get('status')} at {stage or 'start'}")


def serving_target_groups(rule: dict[str, Any]) -> list[str]:
    """The target groups a listener rule sends traffic to (weight above 0), from describe_rules:
    on a blue/green service, the one its live revision is registered in."""
    groups: list[str] = []
    for action in rule.get("Actions", []):
        if action.get("Type") != "forward":
            continue
        weighted = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if weighted:
            groups += [g["TargetGroupArn"] for g in weighted if g.get("Weight", 1) > 0]
        elif action.get("TargetGroupArn"):
            groups.append(action["TargetGroupArn"])
    return groups


def rollout_to_stop(service: dict[str, Any], target_td: str) -> dict[str, Any] | None:
    """The deployment a rollback to `target_td` stops (ECS StopServiceDeployment, ROLLBACK):
    a PRIMARY deployment of another revision still IN_PROGRESS while a deployment of `target_td`
    is still ACTIVE, i.e. its tasks still serve. None otherwise: the rollback updates the service.
    """
    primary = primary_deployment(service)
    if primary is None or primary.get("rolloutState") != "IN_PROGRESS":
        return None
    if primary.get("taskDefinition") == target_td:
        return None
    serving = any(
        d.get("status") == "ACTIVE" and d.get("taskDefinition") == target_td
        for d in service.get("deployments", [])
    )
    return primary if serving else None


def new_events(events: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """Service events not logged yet, oldest first (ECS lists them newest first)."""
    return [e for e in reversed(events) if e.get("id") not in seen]


class ImageRef(NamedTuple):
    repository: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageRef:
    """Split `registry:port/name:tag@sha256:...`; the port's colon is not a tag's."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return ImageRef(repository=name, tag=tag, digest=digest or None)


def repository_name(repository: str) -> str:
    """The ECR repository name of an image repository: the path after the registry host."""
    first, _, rest = repository.partition("/")
    return rest if rest and ("." in first or ":" in first or first == "localhost") else repository


def rds_identifier(text: str, max_length: int = 255) -> str:
    """An RDS identifier from free text: letters, digits and single hyphens, starting with a
    letter, not ending with a hyphen, at most `max_length` characters."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9]", "-", text)).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"fm-{cleaned}".rstrip("-")
    return cleaned[:max_length].rstrip("-")


def snapshot_identifier(db_instance: str, backup_id: str) -> str:
    return rds_identifier(f"{db_instance}-{backup_id}")


def main_container(task_definition: dict[str, Any], service: str) -> dict[str, Any]:
    """The service's container: the one named like the service, else the first essential one."""
    containers = task_definition.get("containerDefinitions", [])
    if not containers:
        raise ValueError(f"task definition {task_definition.get('taskDefinitionArn')} has none")
    named = [c for c in containers if c.get("name") == service]
    essential = [c for c in containers if c.get("essential", True)]
    return (named or essential or containers)[0]


def with_image(task_definition: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    """register_task_definition arguments: a copy of `task_definition` with only one image changed."""
    spec = {
        k: v
        for k, v in task_definition.items()
        if k not in READ_ONLY_TASK_DEFINITION_KEYS and v is not None
    }
    spec["containerDefinitions"] = [
        {**c, "image": image} if c.get("name") == container else dict(c)
        for c in task_definition.get("containerDefinitions", [])
    ]
    return spec


def change_set_summary(changes: list[dict[str, Any]]) -> str:
    """One line per resource change of a CloudFormation change set, for people to review."""
    lines = []
    for change in changes:
        rc = change.get("ResourceChange", {})
        replace = rc.get("Replacement")
        suffix = f" (replacement: {replace})" if replace and replace != "False" else ""
        lines.append(
            f"{rc.get('Action', '?')} {rc.get('ResourceType', '?')} "
            f"{rc.get('LogicalResourceId', '?')}{suffix}"
        )
    return "\n".join(lines) or "no resource changes"


def change_set_is_empty(status: str, reason: str | None) -> bool:
    """True for the FAILED change set CloudFormation makes when the template changed nothing."""
    text = (reason or "").lower()
    return status == "FAILED" and ("didn't contain changes" in text or "no updates" in text)


def task_exit(task: dict[str, Any], container: str) -> tuple[int | None, str]:
    """The exit code of `container` in a STOPPED task (None if it never ran) and why it stopped."""
    found = next((c for c in task.get("containers", []) if c.get("name") == container), None)
    why = "; ".join(
        str(x)
        for x in (task.get("stopCode"), task.get("stoppedReason"), (found or {}).get("reason"))
        if x
    )
    return ((found or {}).get("exitCode"), why)


class _CfnLoader(yaml.SafeLoader):
    """YAML that tolerates CloudFormation's short-form tags (!Ref, !Sub, ...)."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_parameters(template: str) -> set[str]:
    """The parameter names a CloudFormation template (YAML or JSON) declares."""
    document = yaml.load(template, Loader=_CfnLoader) or {}  # a SafeLoader
    return set((document.get("Parameters") or {}).keys())


def required_parameters(template: str) -> set[str]:
    """The parameters a template declares without a Default: a stack cannot be created without
    them."""
    document = yaml.load(template, Loader=_CfnLoader) or {}  # a SafeLoader
    return {
        name
        for name, spec in (document.get("Parameters") or {}).items()
        if "Default" not in (spec or {})
    }


def stack_parameters(
    declared: set[str], previous: set[str], given: dict[str, str]
) -> list[dict[str, Any]]:
    """CreateChangeSet parameters: the given values, and for the rest of the parameters the stack
    already has, its previous values (left out, CloudFormation would reset them to defaults)."""
    values: list[dict[str, Any]] = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(given.items()) if k in declared
    ]
    kept = sorted((declared & previous) - given.keys())
    return values + [{"ParameterKey": k, "UsePreviousValue": True} for k in kept]


def failed_stack_events(events: list[dict[str, Any]], limit: int = 5) -> str:
    """Why a stack operation failed: its latest *_FAILED events, oldest first."""
    failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")][:limit]
    return (
        "; ".join(
            f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason', e.get('ResourceStatus'))}"
            for e in reversed(failed)
        )
        or "no failed resource events"
    )


class AwsNames(NamedTuple):
    """The AWS resources an environment uses: named in the target block, or read from the
    stack's outputs (the block wins, so an environment can point at resources the stack does not
    own)."""

    cluster: str | None
    services: dict[str, str]
    repositories: dict[str, str]
    db_instance_identifier: str | None
    distribution_id: str | None
    target_groups: dict[str, str]
    subnets: list[str]
    security_groups: list[str]


def output_key(name: str, suffix: str) -> str:
    """The stack output of a service or image: backend-migrator -> BackendMigratorRepositoryUri."""
    return "".join(part.capitalize() for part in name.split("-")) + suffix


def resolve_names(given: dict[str, Any], outputs: dict[str, str], services: list[str]) -> AwsNames:
    """Block fields first, then infra/cloudformation/flowmasters.yaml's outputs
    (ClusterName, <Service>ServiceName, <Image>RepositoryUri, DBInstanceIdentifier,
    DistributionId, <Service>TargetGroupArn, PrivateSubnetIds, ServiceSecurityGroupId)."""

    def per_service(field: str, suffix: str, convert=lambda v: v) -> dict[str, str]:
        found = {s: convert(outputs[output_key(s, suffix)]) for s in services
                 if output_key(s, suffix) in outputs}  # fmt: skip
        return {**found, **(given.get(field) or {})}

    def listed(field: str, output: str) -> list[str]:
        if given.get(field):
            return list(given[field])
        return [x for x in outputs.get(output, "").split(",") if x]

    return AwsNames(
        cluster=given.get("cluster") or outputs.get("ClusterName"),
        services=per_service("services", "ServiceName"),
        repositories=per_service("repositories", "RepositoryUri", repository_name),
        db_instance_identifier=given.get("db_instance_identifier")
        or outputs.get("DBInstanceIdentifier"),
        distribution_id=given.get("distribution_id") or outputs.get("DistributionId"),
        target_groups=per_service("target_groups", "TargetGroupArn"),
        subnets=listed("subnets", "PrivateSubnetIds"),
        security_groups=listed("security_groups", "ServiceSecurityGroupId"),
    )


# describe_db_instances key -> restore_db_instance_from_db_snapshot argument: what a restored
# instance does not inherit from the instance it replaces, and the restore call accepts.
_RESTORE_SETTINGS = (
    ("DeletionProtection", "DeletionProtection"),
    ("CopyTagsToSnapshot", "CopyTagsToSnapshot"),
    ("IAMDatabaseAuthenticationEnabled", "EnableIAMDatabaseAuthentication"),
    ("AutoMinorVersionUpgrade", "AutoMinorVersionUpgrade"),
    ("EnabledCloudwatchLogsExports", "EnableCloudwatchLogsExports"),
)
# ... and what only modify_db_instance sets (applied to the restored instance before the swap).
_MODIFY_SETTINGS = (
    ("BackupRetentionPeriod", "BackupRetentionPeriod"),
    ("PreferredBackupWindow", "PreferredBackupWindow"),
    ("PreferredMaintenanceWindow", "PreferredMaintenanceWindow"),
    ("MaxAllocatedStorage", "MaxAllocatedStorage"),
    ("PerformanceInsightsEnabled", "EnablePerformanceInsights"),
    ("MonitoringInterval", "MonitoringInterval"),
    ("MonitoringRoleArn", "MonitoringRoleArn"),
)


def _given(value: Any) -> bool:
    """None and empty strings/lists/dicts are "not set"; False and 0 are settings to carry."""
    return value is not None and value != "" and value != [] and value != {}


def restore_settings(
    old: dict[str, Any], tags: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a snapshot restore must carry over from the instance it replaces.

    `old` is the replaced instance's describe_db_instances entry, `tags` its
    list_tags_for_resource TagList. Returns (restore_db_instance_from_db_snapshot arguments,
    modify_db_instance arguments), leaving out what the old instance does not set. Tags whose key
    starts with "aws:" (CloudFormation's) are AWS's own and refused by the restore call: left out.
    MonitoringRoleArn goes only with a MonitoringInterval above 0 (RDS refuses it otherwise).
    """
    restore = {arg: old[key] for key, arg in _RESTORE_SETTINGS if _given(old.get(key))}
    groups = [
        g["DBParameterGroupName"]
        for g in old.get("DBParameterGroups") or []
        if _given(g.get("DBParameterGroupName"))
    ]
    if groups:
        restore["DBParameterGroupName"] = groups[0]
    kept_tags = [
        {"Key": t["Key"], "Value": t.get("Value", "")}
        for t in tags or []
        if _given(t.get("Key")) and not str(t["Key"]).lower().startswith("aws:")
    ]
    if kept_tags:
        restore["Tags"] = kept_tags
    modify = {arg: old[key] for key, arg in _MODIFY_SETTINGS if _given(old.get(key))}
    if not modify.get("MonitoringInterval"):
        modify.pop("MonitoringRoleArn", None)
    return restore, modify


def live_desired_count(counts: dict[str, int]) -> str | None:
    """The stack's one task-count parameter for what the services run now: their common count,
    or None (keep the stack's value) when they differ or run nothing."""
    values = set(counts.values())
    if len(values) != 1:
        return None
    (count,) = values
    return str(count) if count > 0 else None
