"""One-off ECS tasks: a command run once in a Fargate task of a service's task definition, with
its output read back from CloudWatch Logs. This is how the migrations run on AWS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ReleaseError
from targets.aws.clients import error_code
from targets.aws.decisions import main_container, task_exit
from targets.aws.ecs import Ecs
from targets.migrations import CommandRun


def run_command(
    ecs: Ecs,
    logs: Any,
    service: dict[str, Any],
    owner: str,
    image: str,
    command: list[str],
    network: dict[str, Any],
    complete: Callable[[list[str]], bool],
    interval: float,
) -> CommandRun:
    """Run `command` in a task of the `owner` service's task definition with `image` (the
    family's revision with that image, registered if new); returns its exit and output.

    `complete` says whether output is whole (the migration's JSON line arrived): CloudWatch may
    lag behind the task's end, so a successful task's output is read again a few times.
    """
    current = ecs.live_task_definition(service)
    container = main_container(current, owner)["name"]
    td_arn = ecs.task_definition_for(current, container, image)
    td = ecs.task_definition(td_arn)
    task = ecs.run_one_off(td_arn, container, command, network, f"`{' '.join(command)}` in {image}")
    code, why = task_exit(task, container)
    wanted = complete if code == 0 else None
    lines = read_output(logs, td, container, task["taskArn"], wanted, interval)
    return CommandRun(code, tuple(lines), why=why)


def network_of(
    service: dict[str, Any], subnets: list[str], security_groups: list[str]
) -> dict[str, Any]:
    """The one-off task's network: the given subnets and security groups, else the service's."""
    own = (service.get("networkConfiguration") or {}).get("awsvpcConfiguration", {})
    return {
        "subnets": subnets or own.get("subnets", []),
        "securityGroups": security_groups or own.get("securityGroups", []),
        "assignPublicIp": own.get("assignPublicIp", "DISABLED"),
    }


def read_output(
    logs: Any,
    task_definition: dict[str, Any],
    container: str,
    task_arn: str,
    complete: Callable[[list[str]], bool] | None,
    interval: float,
    attempts: int = 4,
) -> list[str]:
    """The task's output lines, read again until `complete` holds (at most `attempts` reads).
    With no `complete` (a failed task) the output is best effort: a read that fails says so."""
    lines: list[str] = []
    for attempt in range(attempts):
        try:
            lines = task_output(logs, task_definition, container, task_arn)
        except ReleaseError as exc:
            if complete is not None:
                raise
            return [f"(no output: {exc})"]
        if complete is None or complete(lines) or attempt == attempts - 1:
            break
        time.sleep(interval)
    return lines


def task_output(
    logs: Any, task_definition: dict[str, Any], container: str, task_arn: str
) -> list[str]:
    """The task's log lines from CloudWatch Logs (its awslogs group and stream)."""
    config = main_container(task_definition, container).get("logConfiguration") or {}
    options = config.get("options", {})
    if config.get("logDriver") != "awslogs" or "awslogs-group" not in options:
        raise ReleaseError(
            f"task definition {task_definition['taskDefinitionArn']} does not log {container} to "
            "CloudWatch Logs (awslogs): the migration result cannot be read; add a logConfiguration"
        )
    stream = f"{options.get('awslogs-stream-prefix', '')}/{container}/{task_arn.rsplit('/', 1)[-1]}"
    lines: list[str] = []
    kwargs: dict[str, Any] = {
        "logGroupName": options["awslogs-group"],
        "logStreamName": stream.lstrip("/"),
        "startFromHead": True,
    }
    while True:
        try:
            page = logs.get_log_events(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":  # the task never logged a line
                return lines
            raise
        lines += [e["message"] for e in page.get("events", [])]
        if not page.get("events") or page.get("nextForwardToken") == kwargs.get("nextToken"):
            return lines
        kwargs["nextToken"] = page["nextForwardToken"]
