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


Approval = ReleaseApproval | RestoreApproval
