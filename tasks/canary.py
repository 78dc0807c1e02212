"""A canary's steps on the target: start it beside the stable, move a share of users, read what
each version's users got, abort. Thin: the decisions are domain/traffic.py's and domain/rollout.py's,
the order is flows/canary.py's. Run inside the release's transaction, so retried within the
attempt (tasks/retries.py): a weight command that fails once is sent again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.results import DeployResult
from domain.traffic import Traffic
from targets.docker_host.metrics import MetricsUnavailable
from tasks.retries import in_transaction, retried


@task(
    name="start-canary",
    task_run_name="start-canary-{service}-{version}",
    cache_policy=NO_CACHE,
    **in_transaction(1200),
)
def start_canary(env: Environment, service: str, image: str, version: str) -> DeployResult:
    """The new version beside the stable one, healthy, with no user yet."""
    return retried(
        lambda: _canary_target(env).start_canary(service, image, version),
        f"start the canary of {service}",
    )


@task(
    name="set-canary-weight",
    task_run_name="canary-{service}-{percent}%",
    cache_policy=NO_CACHE,
    **in_transaction(60),
)
def set_canary_weight(env: Environment, service: str, percent: int) -> str:
    return retried(
        lambda: _canary_target(env).set_canary_weight(service, percent),
        f"set {service}'s canary weight to {percent} %",
    )


@task(
    name="abort-canary",
    task_run_name="abort-canary-{service}",
    cache_policy=NO_CACHE,
    **in_transaction(60),
)
def abort_canary(env: Environment, service: str) -> str:
    return retried(lambda: _canary_target(env).abort_canary(service), f"abort {service}'s canary")


@dataclass(frozen=True)
class Figures:
    """What reached each version of a service in a window, or why it is not known."""

    canary: Traffic | None
    stable: Traffic | None
    missing: str | None = None  # why there are no figures (the metrics source is away, ...)


@task(name="read-traffic", cache_policy=NO_CACHE, timeout_seconds=60)
def read_traffic(env: Environment, service: str, start: float, end: float) -> Figures:
    """What the canary ("beside") and the stable ("live") of `service` answered in the window."""
    target = _canary_target(env)
    try:
        return Figures(
            canary=target.traffic(service, "beside", start, end),
            stable=target.traffic(service, "live", start, end),
        )
    except MetricsUnavailable as exc:
        return Figures(None, None, missing=str(exc))


@task(name="read-bake-traffic", cache_policy=NO_CACHE, timeout_seconds=60)
def read_bake_traffic(
    env: Environment, service: str, bake: tuple[float, float], before: tuple[float, float]
) -> Figures:
    """What the new version (live) answered through the bake (as `canary`), and the previous
    one (kept beside it) in the window `before` the release (as `stable`)."""
    target = env.connect()
    if not hasattr(target, "traffic"):
        return Figures(None, None, missing=f"the {target.name} target reads no traffic here yet")
    try:
        return Figures(
            canary=target.traffic(service, "live", *bake),
            stable=target.traffic(service, "beside", *before),
        )
    except MetricsUnavailable as exc:
        return Figures(None, None, missing=str(exc))


def _canary_target(env: Environment) -> Any:
    """The target, which the release checked runs canaries before anything changed."""
    return env.connect()
