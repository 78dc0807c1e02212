"""A service's canary inside the release: the new version beside the stable one, a share of new
users in steps, each step judged by what its users got against what the stable's users got at
the same time; then everyone (the same deploy as blue/green: the stable kept running through the
bake), or, at the first broken bound, nobody (the canary out of rotation at once).

Runs where blue/green's deploy runs (flows/steps.py, in the release's transaction): after the
migrations, the backend's canary before the frontend's. Every step is its own task in the run's
graph, emits `flowmasters.canary.step` with its numbers, and has a row in the report.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run

from blocks.environment import Environment
from domain.errors import ChecksFailed, ReleaseError
from domain.results import DeployResult
from domain.rollout import CanaryStep, RolloutSpec
from domain.traffic import Traffic, TrafficBounds, Verdict, broken_already, judge_traffic
from flows import events
from flows.forms import CanaryDecision
from flows.report import Report
from tasks.canary import Figures, abort_canary, read_traffic, set_canary_weight, start_canary
from tasks.checks import smoke_check
from tasks.services import deploy_service


def canary_service(
    env: Environment,
    service: str,
    image: str,
    version: str,
    before: Any,
    versions: dict[str, str],
    report: Report,
) -> DeployResult:
    """Run `service`'s canary of `version` to its end: promoted (returns the deploy's result, its
    undo staged like blue/green's) or aborted (raises ChecksFailed with the bound that broke)."""
    spec = env.spec.service(service).rollout
    bounds = spec.bounds or env.spec.checks.traffic
    try:
        with report.step(f"canary {service}") as row:
            started = start_canary(env, service, image, version)
            row.result = started.detail
            row.changed = f"{version} beside {_version(started)}"
    except BaseException:
        # Started but not yet judged (HAProxy never saw it healthy, ...): out of rotation, so
        # no user meets it; the start's own failure is what the release reports.
        try:
            abort_canary(env, service)
        except Exception as exc:
            get_run_logger().error(f"the canary of {service} could not be taken out: {exc}")
        raise
    canary = Canary(env, service, version, _version(started), spec, bounds, versions, report)
    try:
        canary.probe_before_users()
        for step in spec.steps:
            if step.pause:
                canary.wait_for_a_person(step)
            else:
                canary.step(step)
        with report.step(f"promote {service}") as row:
            result = deploy_service(env, service, image, version, True, before)
            row.result = result.detail
            row.changed = f"{canary.stable} -> {version}"
    except BaseException as exc:
        if not canary.aborted:  # a step's own failure (not a verdict): the stable serves all
            canary.abort_after(exc)
        raise
    events.emit(events.CANARY_PROMOTED, env.name, version, service=service, stable=canary.stable)
    return result


def _version(started: DeployResult) -> str:
    return started.previous.version if started.previous else "nothing"


class Canary:
    """One service's canary while it runs: its steps, its last figures, its abort."""

    def __init__(
        self,
        env: Environment,
        service: str,
        version: str,
        stable: str,
        spec: RolloutSpec,
        bounds: TrafficBounds,
        versions: dict[str, str],
        report: Report,
    ):
        self.env, self.service, self.version, self.stable = env, service, version, stable
        self.spec, self.bounds, self.versions, self.report = spec, bounds, versions, report
        self.weight = 0
        self.figures = Figures(None, None, missing="no step has run yet")
        self.aborted = False
        self.probes = 0  # probes of the canary that passed, in all its steps

    def step(self, step: CanaryStep) -> None:
        """`step.weight` % of new users for `step.seconds`, read every `check_every_seconds`:
        a broken bound or missing figures abort at once; a step with too few requests to judge
        is decided by probing the canary itself."""
        assert step.weight is not None
        with self.report.step(f"canary {self.service} {step.weight} %") as row:
            row.changed = set_canary_weight(self.env, self.service, step.weight)
            self.weight = step.weight
            verdict = self.watch(step.seconds)
            row.result = f"{verdict.reason} over {step.seconds:g} s"
            self.emit_step(verdict)
            if verdict.passed is None and not self.figures.missing:
                row.result += f"; too few requests: decided by {self.probes} probes of the canary"
        if self.figures.missing:
            self.abort(
                f"no traffic figures ({self.figures.missing}): a canary is never promoted on "
                "missing data"
            )
        if verdict.passed is False:
            self.abort(verdict.reason)

    def watch(self, seconds: float) -> Verdict:
        """Every `check_every_seconds` until the step ends: the canary's own probes (a failure
        aborts at once, as blue/green's smoke checks switch back), then both versions' traffic
        so far (a broken bound, or 5xx that already exceed what the bound allows over the step,
        end the step)."""
        start = time.time()
        end = start + seconds
        while True:
            self.probe_canary()
            time.sleep(max(0.0, min(self.spec.check_every_seconds, end - time.time())))
            now = time.time()
            self.figures = read_traffic(self.env, self.service, start, now)
            verdict = self.judge()
            if verdict.passed is None and not self.figures.missing:
                rate = (self.figures.canary.requests if self.figures.canary else 0) / (now - start)
                early = broken_already(
                    self.version,
                    self.figures.canary,
                    self.bounds,
                    rate * seconds,
                    self.figures.stable,
                    f"stable {self.stable}",
                )
                verdict = early or verdict
            if verdict.passed is False or self.figures.missing or now >= end:
                return verdict

    def judge(self) -> Verdict:
        if self.figures.missing:
            return Verdict(None, f"no traffic figures: {self.figures.missing}")
        return judge_traffic(
            self.version,
            self.figures.canary,
            self.figures.stable,
            self.bounds,
            against=f"stable {self.stable}",
        )

    def probe_before_users(self) -> None:
        """The service's probes against the canary for the checks' window, before any user is
        sent to it: a version broken from its start never reaches one (blue/green's probes
        can only run after its switch)."""
        with self.report.step(f"canary {self.service} 0 %") as row:
            try:
                checks = smoke_check(
                    self.env.spec,
                    self.versions,
                    only=self.service,
                    urls={self.service: self.env.connect().slot_url(self.service, "beside")},
                )
            except ChecksFailed as exc:
                row.result = f"its probes failed before any user reached it: {exc}"
                failed = str(exc)
            else:
                row.result = f"{checks.probes} probes x {checks.rounds} rounds passed, no user yet"
                return
        self.abort(f"its probes failed before any user reached it: {failed}")

    def probe_canary(self) -> None:
        """The service's own probes, once, against the canary's slot (through the public URL
        they would reach either version); a failure aborts."""
        try:
            checks = smoke_check(
                self.env.spec,
                self.versions,
                window_seconds=0,
                only=self.service,
                urls={self.service: self.env.connect().slot_url(self.service, "beside")},
            )
        except ChecksFailed as exc:
            self.abort(f"its probes failed: {exc}")
        self.probes += checks.probes

    def wait_for_a_person(self, step: CanaryStep) -> None:
        """Pause the run until a person promotes or aborts in the Prefect UI's form, which
        shows the canary's latest numbers against the stable's."""
        description = (
            f"Canary of {self.service} {self.version} at {self.weight} % of new users, beside "
            f"stable {self.stable}, over its last step:\n\n{self.figures_now()}\n\nTick "
            "`promote` to send everyone to the canary; leave it to abort (everyone back on the "
            "stable at once)."
        )
        with self.report.step(f"canary {self.service} decision") as row:
            get_run_logger().info(f"waiting for a person in the Prefect UI:\n{description}")
            try:
                answer = pause_flow_run(
                    wait_for_input=CanaryDecision.with_initial_data(description=description),
                    timeout=int(step.seconds),
                )
            except Exception as exc:  # the pause timed out (or was refused): never promote
                answer = None
                why = f"no answer within {step.seconds:g} s ({type(exc).__name__})"
            else:
                why = f"aborted by a person{': ' + answer.comment if answer.comment else ''}"
            row.result = "promoted by a person" if answer and answer.promote else why
        if answer is None or not answer.promote:
            self.abort(why)

    def figures_now(self) -> str:
        """Both versions' numbers of the last step, and what the bounds say of them."""
        if self.figures.missing:
            return f"- no figures: {self.figures.missing}"
        lines = [
            f"- canary {self.version}: {_described(self.figures.canary)}",
            f"- stable {self.stable}: {_described(self.figures.stable)}",
            f"- verdict: {self.judge().reason}",
        ]
        return "\n".join(lines)

    def emit_step(self, verdict: Verdict) -> None:
        events.emit(
            events.CANARY_STEP,
            self.env.name,
            self.version,
            service=self.service,
            weight=self.weight,
            stable=self.stable,
            canary_traffic=_numbers(self.figures.canary),
            stable_traffic=_numbers(self.figures.stable),
            verdict={True: "passed", False: "failed", None: "not judged"}[verdict.passed],
            reason=verdict.reason,
        )

    def abort_after(self, failure: BaseException) -> None:
        """A step failed (HAProxy refused a weight for good, ...): everyone back on the stable,
        as far as the load balancer still answers; the step's failure is what the release
        reports."""
        try:
            self.abort(f"{type(failure).__name__}: {failure}")
        except ChecksFailed:
            pass
        except Exception as exc:  # the failure being raised is the one to report
            get_run_logger().error(f"the canary of {self.service} could not be aborted: {exc}")

    def abort(self, reason: str) -> None:
        """Everyone back on the stable at once, then fail the release with why."""
        self.aborted = True
        with self.report.step(f"abort canary {self.service}") as row:
            row.result = abort_canary(self.env, self.service)
            row.changed = f"{self.version} out of rotation; {self.stable} serves everyone"
        events.emit(
            events.CANARY_ABORTED,
            self.env.name,
            self.version,
            service=self.service,
            weight=self.weight,
            reason=reason,
        )
        raise ChecksFailed(
            f"the canary of {self.service} {self.version} was aborted at {self.weight} %: {reason}"
        )


def _described(traffic: Traffic | None) -> str:
    return traffic.describe() if traffic is not None else "no figures (its counters restarted)"


def _numbers(traffic: Traffic | None) -> dict[str, Any] | None:
    if traffic is None:
        return None
    return {
        "requests": traffic.requests,
        "errors": traffic.errors,
        "error_share": round(traffic.error_share, 4),
        "latency_seconds": traffic.latency_seconds,
    }


def canaries_of(env: Environment, changed: list[str], live: dict[str, Any]) -> list[str]:
    """The services this release moves by canary: those that declare it, change, and have a
    version live to compare with (a first release is blue/green: nothing to compare with)."""
    services = {s.name: s for s in env.spec.services}  # `changed` names migrator images too
    return [
        name
        for name in changed
        if name in services and services[name].rollout.canary and live.get(name) is not None
    ]


def refuse_unsupported(env: Environment, canaries: list[str]) -> None:
    """Before anything changes: a target without canaries of its own refuses them."""
    target = env.connect() if canaries else None
    if target is not None and not hasattr(target, "start_canary"):
        raise ReleaseError(
            f"{', '.join(canaries)} {'declares' if len(canaries) == 1 else 'declare'} a canary "
            f"rollout, which the {target.name} "
            "target does not run yet: set `rollout: {strategy: blue-green}` for them in this "
            "environment's description"
        )
