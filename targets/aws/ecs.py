"""ECS: task definitions, deploys, one-off tasks.

A service deploys the way its deploymentConfiguration says. Rolling (the default): ECS replaces
the tasks and stops the previous ones itself; done when the rollout COMPLETED
(`decisions.deployment_outcome`). Blue/green (ECS's own strategy, `strategy: BLUE_GREEN`): done
once production traffic is on the new revision (`decisions.blue_green_outcome`); the previous
revision keeps running through ECS's bake time, so a switch back during it (StopServiceDeployment
with ROLLBACK) shifts traffic and starts no task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ReleaseError
from domain.results import DeployResult, Revision
from targets.aws.clients import PROVISION_HINT, poll
from targets.aws.decisions import (
    Outcome,
    blue_green_outcome,
    deployment_outcome,
    main_container,
    new_events,
    parse_image,
    primary_deployment,
    rollout_to_stop,
    uses_blue_green,
    with_image,
)


class Ecs:
    def __init__(
        self,
        client: Any,
        cluster: str,
        timeout: float,
        interval: float,
        log: Callable[[str], None],
        scale_from_zero: int = 2,
    ):
        self.client, self.cluster = client, cluster
        self.timeout, self.interval, self.log = timeout, interval, log
        self.scale_from_zero = scale_from_zero

    def service(self, name: str) -> dict[str, Any]:
        found = self.client.describe_services(cluster=self.cluster, services=[name])
        service = next(iter(found.get("services", [])), None)
        if service is None or service.get("status") != "ACTIVE":
            state = service.get("status") if service else "missing"
            raise ReleaseError(
                f"ECS service {name} in cluster {self.cluster} is {state}: {PROVISION_HINT}"
            )
        return service

    def verify_cluster(self) -> str:
        """verify's probe: the cluster is ACTIVE, or what to do."""
        found = self.client.describe_clusters(clusters=[self.cluster])["clusters"]
        status = found[0]["status"] if found else "missing"
        if status != "ACTIVE":
            raise ReleaseError(f"ECS cluster {self.cluster} is {status}: {PROVISION_HINT}")
        return f"ECS cluster {self.cluster} ACTIVE"

    def verify_service(self, name: str) -> str:
        """verify's probe: the service is ACTIVE, and which revision it runs."""
        described = self.service(name)
        return f"{described['serviceName']} runs {described['taskDefinition'].rsplit('/', 1)[-1]}"

    def task_definition(self, arn: str) -> dict[str, Any]:
        return self.client.describe_task_definition(taskDefinition=arn)["taskDefinition"]

    def live_task_definition(self, service: dict[str, Any]) -> dict[str, Any]:
        """What the service runs: the PRIMARY deployment's task definition."""
        primary = primary_deployment(service)
        return self.task_definition((primary or service)["taskDefinition"])

    def task_definition_for(self, current: dict[str, Any], container: str, image: str) -> str:
        """A task definition like `current` with `container` running `image`: `current` itself,
        an ACTIVE revision of the family that is exactly that (the latest after a re-run or the
        migration step; an older one on a rollback, so the service returns to the revision it
        ran), else a new revision. Older revisions are never deregistered."""
        if main_container(current, container)["image"] == image:
            return current["taskDefinitionArn"]
        wanted = with_image(current, container, image)
        for arn in [current["family"], *self._older_revisions(current["family"])]:
            candidate = self.task_definition(arn)
            if (
                with_image(candidate, container, image) == wanted
                and _image(candidate, container) == image
            ):
                return candidate["taskDefinitionArn"]
        registered = self.client.register_task_definition(**wanted)["taskDefinition"]
        self.log(f"registered {registered['taskDefinitionArn']} ({container}: {image})")
        return registered["taskDefinitionArn"]

    def _older_revisions(self, family: str, limit: int = 20) -> list[str]:
        """ARNs of the family's ACTIVE revisions but the latest, newest first (at most `limit`)."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE", "sort": "DESC"}
        for page in self.client.get_paginator("list_task_definitions").paginate(**kwargs):
            arns += page.get("taskDefinitionArns", [])
        # familyPrefix is a prefix: keep this family's own revisions only, newest first.
        revisions = sorted(
            (
                (int(arn.rsplit(":", 1)[1]), arn)
                for arn in arns
                if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
            ),
            reverse=True,
        )
        return [arn for _, arn in revisions[1 : limit + 1]]

    def revision(
        self, service: str, task_definition: dict[str, Any], image_id: Callable[[str], str]
    ) -> Revision:
        image = main_container(task_definition, service)["image"]
        return Revision(
            service=service,
            version=parse_image(image).tag or "untagged",
            image=image,
            image_id=image_id(image),
            revision_id=task_definition["taskDefinitionArn"],
        )

    def deploy(
        self,
        service: str,
        ecs_name: str,
        image: str,
        version: str,
        image_id: Callable[[str], str],
    ) -> DeployResult:
        """Roll `ecs_name` to `image`; given an older image, the same call is the rollback."""
        described = self.service(ecs_name)
        seen = {e["id"] for e in described.get("events", [])}
        current_td = self.live_task_definition(described)
        previous = self.revision(service, current_td, image_id)
        label = f"{service} {version}"
        if previous.image == image:
            return self._already_live(described, ecs_name, previous, version, seen)
        container = main_container(current_td, service)["name"]
        new_arn = self.task_definition_for(current_td, container, image)
        how = self._start_rollout(ecs_name, described, new_arn, label, previous)
        # A stopped rollout is done when the revision it returns to is the service's again.
        reason = self.wait(ecs_name, new_arn, label, seen, forward=how is None)
        return DeployResult(
            service=service,
            changed=True,
            previous=previous,
            current=self.revision(service, self.task_definition(new_arn), image_id),
            detail=f"{how}: {reason}"
            if how
            else f"{new_arn}: {reason}; previous {previous.revision_id} kept for rollback",
        )

    def _already_live(
        self,
        described: dict[str, Any],
        ecs_name: str,
        previous: Revision,
        version: str,
        seen: set[str],
    ) -> DeployResult:
        """The service runs the image already: done, or a deployment that an earlier attempt
        started and did not see finish, which is waited for."""
        if self.outcome(described, previous.revision_id).state == "succeeded":
            detail = f"{version} already live ({previous.revision_id}); nothing changed"
            return DeployResult.unchanged(previous, detail)
        label = f"{previous.service} {version}"
        reason = self.wait(ecs_name, previous.revision_id, label, seen)
        return DeployResult(
            service=previous.service,
            changed=False,
            previous=None,
            current=previous,
            detail=f"waited for the deployment already under way: {reason}",
        )

    def _start_rollout(
        self,
        ecs_name: str,
        described: dict[str, Any],
        new_arn: str,
        label: str,
        previous: Revision,
    ) -> str | None:
        """Stop the rollout in flight with ROLLBACK where that returns the service to `new_arn`
        (and say so), else point the service at `new_arn` (None)."""
        in_flight = rollout_to_stop(described, new_arn)
        if in_flight is not None and self._stop_with_rollback(ecs_name, in_flight, label):
            return (
                f"stopped the deployment of {in_flight['taskDefinition']} in progress; "
                f"ECS rolled back to {new_arn}"
            )
        self._update_service(ecs_name, new_arn, described, label, previous)
        return None

    def _update_service(
        self,
        ecs_name: str,
        new_arn: str,
        described: dict[str, Any],
        label: str,
        previous: Revision,
    ) -> None:
        """Point the service at `new_arn`; a service that runs no task (a bootstrapped stack)
        also gets `scale_from_zero` tasks."""
        scale = {"desiredCount": self.scale_from_zero} if described.get("desiredCount") == 0 else {}
        self.client.update_service(
            cluster=self.cluster,
            service=ecs_name,
            taskDefinition=new_arn,
            forceNewDeployment=False,
            **scale,
        )
        self.log(
            f"{label}: {ecs_name} updated to {new_arn} (previous {previous.revision_id} kept)"
            + (f"; scaled from 0 to {self.scale_from_zero} tasks" if scale else "")
        )

    def _stop_with_rollback(self, ecs_name: str, in_flight: dict[str, Any], label: str) -> bool:
        """StopServiceDeployment with ROLLBACK: ECS ends the rollout in progress and returns the
        service to its last completed revision, the one still serving. False (and a log line)
        when ECS cannot: the caller then updates the service to that revision instead."""
        try:
            found = self.client.list_service_deployments(
                cluster=self.cluster, service=ecs_name, status=["PENDING", "IN_PROGRESS"]
            )["serviceDeployments"]
            if not found:
                return False
            arn = found[0]["serviceDeploymentArn"]
            self.client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
        except ClientError as exc:
            self.log(f"{label}: could not stop the deployment in progress ({exc}); updating the "
                     "service instead")  # fmt: skip
            return False
        self.log(f"{label}: stopped {arn} (deploying {in_flight['taskDefinition']}) with rollback")
        return True

    def restart(self, ecs_name: str, label: str) -> str:
        """A new deployment of the same task definition (fresh tasks), waited for."""
        described = self.service(ecs_name)
        seen = {e["id"] for e in described.get("events", [])}
        self.client.update_service(cluster=self.cluster, service=ecs_name, forceNewDeployment=True)
        return self.wait(ecs_name, described["taskDefinition"], label, seen)

    def outcome(self, service: dict[str, Any], new_arn: str, forward: bool = True) -> Outcome:
        """Where the deployment of `new_arn` stands, by the service's strategy. `forward`: the
        service was updated to `new_arn` (not returned to it by a stopped rollout)."""
        if forward and uses_blue_green(service):
            return blue_green_outcome(service, self.service_deployment(service), new_arn)
        return deployment_outcome(service, new_arn)

    def service_deployment(self, service: dict[str, Any]) -> dict[str, Any] | None:
        """The service's current service deployment (describe_service_deployments), if any."""
        arn = service.get("currentServiceDeployment")
        if not arn:
            return None
        found = self.client.describe_service_deployments(serviceDeploymentArns=[arn])
        return next(iter(found.get("serviceDeployments", [])), None)

    def wait(
        self, ecs_name: str, new_arn: str, label: str, seen: set[str], forward: bool = True
    ) -> str:
        """Poll the service until the deployment of `new_arn` succeeds; log its new events."""
        recent: list[str] = []

        def probe() -> tuple[bool, str, str]:
            service = self.service(ecs_name)
            for event in new_events(service.get("events", []), seen):
                seen.add(event["id"])
                recent.append(event["message"])
                self.log(f"{label}: {event['message']}")
            outcome = self.outcome(service, new_arn, forward)
            if outcome.state == "failed":
                raise ReleaseError(
                    f"deploy of {label} to ECS service {ecs_name} failed: {outcome.reason}. "
                    f"Last events: {_last(recent)}"
                )
            return outcome.state == "succeeded", outcome.reason, outcome.reason

        return poll(
            f"deploy of {label} to ECS service {ecs_name}",
            probe,
            self.timeout,
            self.interval,
            self.log,
            hint=lambda: f"last events: {_last(recent)}",
        )

    def run_one_off(
        self, td_arn: str, container: str, command: list[str], network: dict[str, Any], label: str
    ) -> dict[str, Any]:
        """Run `command` once in a Fargate task of `td_arn`; returns the STOPPED task."""
        started = self.client.run_task(
            cluster=self.cluster,
            taskDefinition=td_arn,
            launchType="FARGATE",
            count=1,
            startedBy="flowmasters",
            networkConfiguration={"awsvpcConfiguration": network},
            overrides={"containerOverrides": [{"name": container, "command": command}]},
        )
        if started.get("failures") or not started.get("tasks"):
            raise ReleaseError(f"{label}: ECS could not start the task: {started.get('failures')}")
        arn = started["tasks"][0]["taskArn"]
        self.log(f"{label}: started task {arn}")

        def probe() -> tuple[bool, dict[str, Any], str]:
            task = self.client.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]
            return task.get("lastStatus") == "STOPPED", task, f"task {task.get('lastStatus')}"

        return poll(label, probe, self.timeout, self.interval, self.log)


def _image(task_definition: dict[str, Any], container: str) -> str:
    return main_container(task_definition, container)["image"]


def _last(messages: list[str], n: int = 5) -> str:
    return " | ".join(messages[-n:]) or "none"
