"""How a service moves its users to a new version: all at once (blue/green, the default) or a
canary, in steps of traffic weight, each judged by what its users got (domain/traffic.py).

A canary runs beside the stable version on the same database schema: migrations run before it,
so a release whose pending migrations are declared not backward compatible refuses a canary
(`refuse_canary`). Pure: the flows and targets carry it out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from domain.frozen import Frozen
from domain.traffic import TrafficBounds


class CanaryStep(Frozen):
    """One step: `weight` percent of new users for `seconds`, or (`pause`) wait for a person to
    promote or abort, with the canary's numbers against the stable version's in the form."""

    weight: int | None = Field(
        default=None, ge=1, le=99, description="Percent of new users sent to the canary."
    )
    seconds: float = Field(default=60, ge=1, description="How long the step lasts.")
    pause: bool = Field(
        default=False,
        description="Wait for a person (the Prefect UI's form: promote or abort) at the weight "
        "of the step before; `seconds` is then how long to wait before aborting.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CanaryStep:
        if self.pause == (self.weight is not None):
            raise ValueError("a canary step has either a weight (and seconds) or pause: true")
        return self


class RolloutSpec(Frozen):
    """A service's rollout strategy."""

    strategy: Literal["blue-green", "canary"] = Field(
        default="blue-green",
        description="blue-green: every user moves at once after the new version is healthy; "
        "canary: a share of users first, in `steps`, then everyone.",
    )
    steps: tuple[CanaryStep, ...] = Field(
        default=(
            CanaryStep(weight=10, seconds=60),
            CanaryStep(weight=50, seconds=60),
        ),
        description="The canary's steps, in order; after the last, everyone gets the new version.",
    )
    check_every_seconds: float = Field(
        default=1,
        gt=0,
        description="How often a step reads the traffic: a breach aborts at once, not at the "
        "step's end.",
    )
    bounds: TrafficBounds | None = Field(
        default=None,
        description="This service's bounds; default: the environment's (checks.traffic).",
    )

    @property
    def canary(self) -> bool:
        return self.strategy == "canary"

    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps if not s.pause)


def refuse_canary(
    canaries: list[str],
    pending: tuple[int | str, ...],
    not_backward_compatible: tuple[int | str, ...],
) -> str | None:
    """Why this release may not run a canary, or None. During a canary the stable version runs on
    the new schema: a migration that it cannot run on (a dropped or renamed column) breaks it."""
    declared = {str(m) for m in not_backward_compatible}  # 2 in YAML is migration 0002's id
    breaking = [m for m in pending if str(m) in declared]
    if not canaries or not breaking:
        return None
    return (
        f"{', '.join(canaries)} would release as a canary, but the pending migrations "
        f"{breaking} are declared not backward compatible: the stable version would run on a "
        "schema it cannot use. Release with the blue-green strategy (set `rollout: {strategy: "
        "blue-green}` for this release), or split the migration: first one both versions can run "
        "on (add the column), and the breaking part (drop the old one) in a later release"
    )
