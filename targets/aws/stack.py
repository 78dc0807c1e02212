"""CloudFormation: apply the environment's template through a reviewed change set."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any, NamedTuple

from botocore.exceptions import ClientError, WaiterError

from domain.errors import ReleaseError, TransientError
from targets.aws.clients import error_code
from targets.aws.decisions import (
    change_set_is_empty,
    change_set_summary,
    failed_stack_events,
    required_parameters,
    stack_parameters,
    template_parameters,
)

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
UNUPDATABLE = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED")


def created(stack: dict[str, Any] | None) -> bool:
    """Whether a describe_stacks entry is a stack with resources (not CloudFormation's empty
    REVIEW_IN_PROGRESS record of a CREATE change set)."""
    return stack is not None and stack["StackStatus"] != "REVIEW_IN_PROGRESS"


class Proposal(NamedTuple):
    kind: str  # CREATE or UPDATE
    change_set: str
    summary: str
    changes: int


class Stack:
    def __init__(
        self, client: Any, name: str, waiter_config: dict[str, Any], log: Callable[[str], None]
    ):
        self.client, self.name, self.waiter_config, self.log = client, name, waiter_config, log

    def describe(self) -> dict[str, Any] | None:
        """The stack's describe_stacks entry, or None when there is no stack of that name."""
        try:
            return self.client.describe_stacks(StackName=self.name)["Stacks"][0]
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                return None
            raise

    def status(self) -> str | None:
        stack = self.describe()
        return stack["StackStatus"] if stack else None

    def exists(self) -> bool:
        """A stack with resources: not missing, and not the empty shell a CREATE change set makes."""
        return created(self.describe())

    def verify(self) -> str:
        """verify's probe: the stack's status, or that provisioning will create it."""
        stack = self.describe()
        if not created(stack):
            return f"stack {self.name} does not exist yet: provisioning creates it"
        assert stack is not None
        return f"stack {self.name} {stack['StackStatus']}"

    def outputs(self) -> dict[str, str]:
        stack = self.describe()
        if not created(stack):
            return {}
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def propose(
        self,
        template: str,
        given: dict[str, str],
        bootstrap: dict[str, str],
        live: Callable[[], dict[str, str]],
        description: str,
        role_arn: str | None = None,
    ) -> Proposal | None:
        """Create a change set (CREATE or UPDATE) and leave it for review; None when it is empty.

        A CREATE adds `bootstrap` to the parameters. On an UPDATE `live()` overrides the given
        image and task-count parameters (a stack update must never undo a release or a scale)
        and every other parameter the stack has keeps its previous value.
        """
        stack = self.describe()
        kind = self._change_kind(stack)
        parameters = self._parameters(template, stack, {**given, **bootstrap}, given, live)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        change_set = f"flowmasters-{stamp}-{uuid.uuid4().hex[:6]}"  # the IAM policy: flowmasters-*
        try:
            self.client.create_change_set(
                StackName=self.name,
                ChangeSetName=change_set,
                ChangeSetType=kind,
                TemplateBody=template,
                Parameters=parameters,
                Capabilities=CAPABILITIES,
                Description=description,
                **({"RoleARN": role_arn} if role_arn else {}),
            )
        except ClientError as exc:  # moto (like UpdateStack) refuses an empty change at once
            if change_set_is_empty("FAILED", str(exc)):
                return None
            raise
        return self._review(change_set, kind)

    def _change_kind(self, stack: dict[str, Any] | None) -> str:
        """CREATE or UPDATE; a stack busy with another change, or one that cannot be updated any
        more, is refused with what to do."""
        status = stack["StackStatus"] if stack else None
        if status and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
            raise TransientError(f"stack {self.name} is busy ({status}); retry when it settles")
        if status in UNUPDATABLE:
            raise ReleaseError(
                f"stack {self.name} is {status} and cannot be updated: read its events, delete "
                "it, then provision again"
            )
        return "UPDATE" if created(stack) else "CREATE"

    def _parameters(
        self,
        template: str,
        stack: dict[str, Any] | None,
        create: dict[str, str],
        update: dict[str, str],
        live: Callable[[], dict[str, str]],
    ) -> list[dict[str, Any]]:
        """The change set's parameters: `create` for a new stack; for an existing one `update`
        with what runs now (`live()`) over it, and every other parameter it has kept."""
        previous: set[str] = set()
        given = create
        if created(stack):
            assert stack is not None
            previous = {p["ParameterKey"] for p in stack.get("Parameters", [])}
            given = {**update, **live()}
        missing = required_parameters(template) - set(given) - previous
        if missing:
            raise ReleaseError(
                f"stack {self.name}: the template needs {', '.join(sorted(missing))}; give them "
                "in the environment's stack_parameters (or bootstrap_parameters, for a new stack)"
            )
        return stack_parameters(template_parameters(template), previous, given)

    def _review(self, change_set: str, kind: str) -> Proposal | None:
        """Wait until CloudFormation has computed the change set; an empty one is deleted."""
        state, reason, changes = self._described(change_set)
        if change_set_is_empty(state, reason) or (state == "CREATE_COMPLETE" and not changes):
            self.client.delete_change_set(StackName=self.name, ChangeSetName=change_set)
            return None
        if state != "CREATE_COMPLETE":
            raise ReleaseError(f"change set {change_set} of stack {self.name} is {state}: {reason}")
        summary = change_set_summary(changes)
        self.log(f"stack {self.name}: change set {change_set} ({kind}) proposed:\n{summary}")
        return Proposal(kind, change_set, summary, len(changes))

    def execute(self, change_set: str, kind: str) -> None:
        """Execute a proposed change set and wait. Run again after a success (a task retry), it
        only waits: an executed change set is never executed twice."""
        try:
            described = self.client.describe_change_set(
                StackName=self.name, ChangeSetName=change_set
            )
        except ClientError as exc:
            raise ReleaseError(
                f"change set {change_set} of stack {self.name} is gone ({error_code(exc)}): run "
                "the release again to propose a new one"
            ) from exc
        execution = described.get("ExecutionStatus", "AVAILABLE")
        if execution == "AVAILABLE":
            self.client.execute_change_set(StackName=self.name, ChangeSetName=change_set)
            self.log(f"stack {self.name}: executing change set {change_set} ({kind})")
        elif execution not in ("EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE"):
            raise ReleaseError(
                f"change set {change_set} of stack {self.name} is {execution}: the stack changed "
                "since it was proposed; run the release again to propose a new one"
            )
        waiter = "stack_create_complete" if kind == "CREATE" else "stack_update_complete"
        try:
            self.client.get_waiter(waiter).wait(
                StackName=self.name, WaiterConfig=self.waiter_config
            )
        except WaiterError as exc:
            events = self.client.describe_stack_events(StackName=self.name)["StackEvents"]
            raise ReleaseError(
                f"stack {self.name} did not reach {kind}_COMPLETE ({self.status()}): "
                f"{failed_stack_events(events)}"
            ) from exc

    def discard(self, change_set: str, kind: str) -> None:
        """Delete a proposed change set that was not approved.

        A CREATE change set also made CloudFormation's empty REVIEW_IN_PROGRESS stack record. It
        holds no resources and stays: the pipeline's IAM policy has no DeleteStack (it must never
        be able to delete an environment), and the next proposal reuses the record."""
        with suppress(ClientError):
            self.client.delete_change_set(StackName=self.name, ChangeSetName=change_set)
        self.log(f"stack {self.name}: change set {change_set} ({kind}) discarded; nothing changed")

    def _described(self, change_set: str) -> tuple[str, str | None, list[dict[str, Any]]]:
        with suppress(WaiterError):  # a FAILED change set ends the waiter; its status says why
            self.client.get_waiter("change_set_create_complete").wait(
                StackName=self.name, ChangeSetName=change_set, WaiterConfig=self.waiter_config
            )
        page = self.client.describe_change_set(StackName=self.name, ChangeSetName=change_set)
        changes = list(page.get("Changes", []))
        while page.get("NextToken"):
            page = self.client.describe_change_set(
                StackName=self.name, ChangeSetName=change_set, NextToken=page["NextToken"]
            )
            changes += page.get("Changes", [])
        return page["Status"], page.get("StatusReason"), changes
