"""The forms a person fills in in the Prefect UI (a paused run's Resume button)."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field


class ReleaseApproval(RunInput):
    """The release plan's approval: images to build, versions before and after, migrations."""

    approve: bool = Field(
        default=False, description="Tick to go ahead with this plan; leave it to reject."
    )
    comment: str = Field(default="", description="Why; kept in the release report.")

    @property
    def approved(self) -> bool:
        return self.approve


class InfrastructureApproval(ReleaseApproval):
    """The form for a proposed infrastructure change (on AWS: a CloudFormation change set).

    A separate, earlier approval than the release plan's: the plan reads what the
    infrastructure runs, so it can only be made once the infrastructure is what it will be.
    """


class RestoreApproval(RunInput):
    """The form a person fills in before a backup replaces the database."""

    restore: bool = Field(
        default=False, description="Tick to restore the backup and lose every write since it."
    )
    comment: str = Field(default="", description="Why; kept in the rollback report.")

    @property
    def approved(self) -> bool:
        return self.restore


class CanaryDecision(RunInput):
    """A canary's step that waits for a person: the canary's numbers against the stable's are
    in the description; promote, or leave unticked to abort."""

    promote: bool = Field(
        default=False,
        description="Tick to send every user to the canary; leave it to abort (every user back "
        "on the stable version at once).",
    )
    comment: str = Field(default="", description="Why; kept in the release report.")


Approval = ReleaseApproval | RestoreApproval
