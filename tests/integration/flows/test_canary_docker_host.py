"""Canary releases of the stand-ins on the Docker host: the new frontend beside the stable one on
a share of new users (HAProxy's weights through its runtime API), each step judged by what its
users got (the suite's Prometheus scraping HAProxy), then everyone, or nobody at the first
broken bound; a step that waits for a person, answered in the Prefect UI's form in Chromium; and
a blue/green bake judged by its users' traffic. Load from wrk, outside the test's process;
nothing is faked.

The steps are short (a few seconds): what is measured is the behaviour, not a production's
minutes (benchmarks/canary.py measures with longer ones).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
)

from deployments.register import register_environment
from flows import events
from flows.release import release
from targets.docker_host import proxy
from testbed.reports import latest_artifact, step_rows
from testbed.scratch import create_environment, new_code, remove_environment, stack_dir
from testbed.wrk import Wrk
from tests.integration.conftest import TestEnvironment, read_events
from tests.support import stack
from tests.support.browser import chromium, new_page, screenshot_on_failure

UI = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").removesuffix("/api")
VERSION_IN_PAGE = '<span id="version">([^<]+)</span>'
STEPS = [{"weight": 20, "seconds": 8}, {"weight": 50, "seconds": 6}]


def canary_frontend(name: str, description: dict[str, Any]) -> None:
    frontend = next(s for s in description["services"] if s["name"] == "frontend")
    frontend["rollout"] = {
        "strategy": "canary",
        "steps": STEPS,
        "check_every_seconds": 2,
        "bounds": {"min_requests": 30},
    }
    # The probes' window, before any user and after the promotion: what is under test here is
    # the steps (a shorter window keeps the module inside the suite's budget).
    description["checks"]["window_seconds"] = 2


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory):
    scratch = create_environment("it", tmp_path_factory.mktemp("envs"), edit=canary_frontend)
    try:
        yield TestEnvironment(scratch.name, scratch.source, scratch.description)
    finally:
        remove_environment(scratch.name, scratch.database)


def run(env: TestEnvironment, version: str, **build_args: str):
    source = new_code(env.source, version, services=("frontend",))
    return release(env.name, version, str(source), build_args=build_args or None, return_state=True)


def version_now(env: TestEnvironment) -> str:
    return httpx.get(env.url("frontend") + "/api/health", timeout=5).json()["version"]


def report_rows(environment: str) -> list[dict[str, str]]:
    return step_rows(environment)


def latest_plan(environment: str) -> str:
    return str(latest_artifact(f"release-plan-{environment}"))


class Visitor(threading.Thread):
    """One browser: keeps its cookies, loads the page every 0.2 s, notes the version it got."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.seen, self.running = url, [], True

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while self.running:
                body = client.get(self.url).text
                self.seen.append(body.split('<span id="version">')[1].split("<")[0])
                time.sleep(0.2)


class Newcomers(threading.Thread):
    """New visitors, one after another, each with no cookie: the page (which assigns it a
    version while a canary runs), then a page the CDN keeps (`/cdn/shared`), with its cookie.
    Notes the pair of versions each got."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.pairs, self.running = url, [], True

    def run(self) -> None:
        while self.running:
            with httpx.Client(timeout=5) as client:
                page = client.get(self.url + "/").text.split('<span id="version">')[1]
                cached = client.get(self.url + "/cdn/shared").json()["version"]
                self.pairs.append((page.split("<")[0], cached))
            time.sleep(0.1)


def test_the_first_release_is_blue_green_there_is_no_stable_to_compare_with(environment):
    state = run(environment, "v1")

    assert state.is_completed(), state.message
    assert not [r for r in report_rows(environment.name) if r["step"].startswith("canary")]


def reload_haproxy_in_the_middle_of(environment: TestEnvironment, version: str) -> None:
    """What another environment's provisioning does on the same host, in the canary's first
    step: HAProxy reloads (its new process reads every environment's file)."""
    stack.wait_for_container(environment.name, "frontend", version, timeout=120)
    time.sleep(5)  # past the probes before any user (2 s), into the first step (8 s)
    conf = stack_dir() / "haproxy" / "conf.d"
    with proxy.config_lock(str(conf)):
        proxy.reload(str(conf), str(stack_dir() / "pids" / "haproxy.pid"))


def test_a_good_version_is_promoted_step_by_step_and_a_visitor_never_flips(environment):
    """With a reload of HAProxy in its first step: the canary keeps its weights and its users."""
    visitor = Visitor(environment.url("frontend") + "/")
    reloader = threading.Thread(target=reload_haproxy_in_the_middle_of, args=(environment, "v2"))
    newcomers = Newcomers(environment.url("frontend"))
    url = environment.url("frontend") + "/"
    assert httpx.get(url + "cdn/shared").json()["version"] == "v1"  # v1's copy in the CDN
    with Wrk(url, connections=10, rate=100, version_pattern=VERSION_IN_PAGE) as load:
        visitor.start()
        newcomers.start()
        reloader.start()
        state = run(environment, "v2")
        visitor.running = newcomers.running = False
    visitor.join(10)
    newcomers.join(10)
    reloader.join(10)

    assert state.is_completed(), state.message
    assert load.result.failed == 0, load.result.summary()
    # Both versions answered users while the canary ran; v2 serves everyone now.
    assert load.result.versions.get("v1", 0) > 0 and load.result.versions.get("v2", 0) > 0
    assert version_now(environment) == "v2"
    # A visitor kept the version it first got: one change at most, v1 to v2 (the promotion).
    changes = [b for a, b in zip(visitor.seen, visitor.seen[1:], strict=False) if a != b]
    assert changes in ([], ["v2"]), visitor.seen
    # A newcomer sent to the canary never got the stable's copy of a page the CDN keeps.
    assert ("v2", "v2") in newcomers.pairs, newcomers.pairs
    assert ("v2", "v1") not in newcomers.pairs, newcomers.pairs
    rows = {r["step"]: r for r in report_rows(environment.name)}
    for step in STEPS:
        row = rows[f"canary frontend {step['weight']} %"]
        assert "requests" in row["result"] and "stable v1" in row["result"], row
    assert "promote frontend" in rows
    assert "both versions run on the new schema" in latest_plan(environment.name)
    found = read_events(
        "flowmasters.canary.",
        f"flowmasters.environment.{environment.name}",
        expect=events.CANARY_PROMOTED,
    )
    weights = sorted(e["payload"]["weight"] for e in found if e["event"] == events.CANARY_STEP)
    assert weights == [20, 50]


def test_a_version_failing_one_page_in_ten_is_aborted_at_its_first_step(environment):
    """One page of many fails for one user in ten; the probes (of /) never see it, its users'
    traffic does."""
    url = environment.url("frontend") + "/pages/about"
    with Wrk(url, connections=10, rate=100, version_pattern=VERSION_IN_PAGE) as load:
        state = run(environment, "v3", PAGE_FAIL_EVERY="10")
        time.sleep(1)
        after = version_now(environment)

    assert state.is_failed()
    message = state.message or ""
    assert "the canary of frontend v3 was aborted at 20 %" in message, message
    assert "error share" in message and "stable v2" in message
    assert after == "v2"
    # Only the canary's users met its failures: a tenth of a fifth of them, at most.
    assert load.result.failed <= 0.05 * load.result.requests, load.result.summary()
    rows = {r["step"]: r for r in report_rows(environment.name)}
    assert "abort canary frontend" in rows
    assert "canary frontend 50 %" not in rows


def test_without_its_metrics_a_canary_is_aborted_never_promoted(environment):
    """Prometheus stopped in the middle of a canary: no figures, so no promotion, and why."""
    url = environment.url("frontend") + "/"
    result: dict[str, Any] = {}

    def release_v4() -> None:
        result["state"] = run(environment, "v4")

    with Wrk(url, connections=10, rate=100):
        worker = threading.Thread(target=release_v4)
        worker.start()
        try:
            stack.wait_for_container(environment.name, "frontend", "v4", timeout=120)
            stack.stop("prometheus")
            worker.join(300)
        finally:
            stack.start_again()

    state = result["state"]
    assert state.is_failed()
    assert "a canary is never promoted on missing data" in (state.message or "")
    assert "Prometheus" in (state.message or "")
    assert version_now(environment) == "v2"


def test_an_aborted_canary_is_kept_running_out_of_rotation_until_the_next_release(environment):
    running = {
        c.labels["flowmasters.version"]
        for c in environment.containers(service="frontend")
        if c.status == "running"
    }

    assert running == {"v2", "v4"}  # v3's was replaced by the next release's canary
    assert version_now(environment) == "v2"


def test_a_migration_declared_not_backward_compatible_refuses_a_canary(tmp_path: Path):
    def canary_backend(name: str, description: dict[str, Any]) -> None:
        backend = next(s for s in description["services"] if s["name"] == "backend")
        backend["rollout"] = {"strategy": "canary", "steps": STEPS}
        backend.pop("owns_migrations", None)
        from domain.services import ServiceSpec

        contract = ServiceSpec.model_validate({**backend, "owns_migrations": True}).migration_spec()
        assert contract is not None
        backend["migrations"] = {
            **contract.model_dump(mode="json"),
            "not_backward_compatible": ["2"],
        }

    scratch = create_environment("it", tmp_path, edit=canary_backend)
    try:
        first = release(scratch.name, "v1", str(new_code(scratch.source, "v1")), return_state=True)
        assert first.is_completed(), first.message
        migrations = scratch.source / "backend" / "migrations"
        (migrations / "0002_drop_title.up.sql").write_text("ALTER TABLE pages DROP COLUMN title;\n")
        (migrations / "0002_drop_title.down.sql").write_text("SELECT 1;\n")

        state = release(scratch.name, "v2", str(new_code(scratch.source, "v2")), return_state=True)

        assert state.is_failed()
        assert "declared not backward compatible" in (state.message or "")
        assert "split the migration" in (state.message or "")
        backend = httpx.get(scratch.description["services"][0]["public_url"] + "/api/health").json()
        assert backend["version"] == "v1"
        assert backend.get("schema_version") in (1, "1", None)
    finally:
        remove_environment(scratch.name, scratch.database)


def paused_release(environment: str, timeout: float = 120) -> Any:
    """The release run of `environment` paused for a person, once it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["release"]))
            )
        for run_ in runs:
            paused = run_.state is not None and run_.state.is_paused()
            if paused and run_.parameters.get("environment") == environment:
                return run_
        time.sleep(0.5)
    raise AssertionError(f"no paused release of {environment} within {timeout:.0f}s")


def answer_in_the_ui(page: Page, run_id: Any, promote: bool, comment: str) -> str:
    """On the paused run's page, as a person does: Resume, the form, Submit. Returns the text the
    form showed above its fields."""
    page.goto(f"{UI}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Resume").first.click()
    form = page.locator(".p-modal__card")
    expect(form.get_by_text("Promote (Optional)")).to_be_visible(timeout=30_000)
    shown = form.locator("article").first.inner_text()
    if promote:  # the form's one toggle: its `promote` field
        toggle = form.get_by_role("switch")
        toggle.click()
        expect(toggle).to_have_attribute("aria-checked", "true")
    if comment:
        form.locator("textarea").fill(comment)
    form.get_by_role("button", name="Submit").click()
    expect(form).to_be_hidden(timeout=30_000)
    return shown


def released_with_a_person(
    environment: TestEnvironment, page: Page, version: str, promote: bool, comment: str = ""
) -> tuple[Any, str]:
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.setdefault("state", run(environment, version)))
    worker.start()
    try:
        paused = paused_release(environment.name)
        shown = answer_in_the_ui(page, paused.id, promote, comment)
    finally:
        worker.join(300)
    return result["state"], shown


def test_a_canary_that_waits_for_a_person_is_promoted_or_aborted_from_its_form(
    environment, tmp_path: Path
):
    description = copy.deepcopy(environment.description)
    frontend = next(s for s in description["services"] if s["name"] == "frontend")
    frontend["rollout"]["steps"] = [{"weight": 20, "seconds": 4}, {"pause": True, "seconds": 300}]
    register_environment(environment.name, description)
    try:
        with (
            Wrk(environment.url("frontend") + "/", connections=4, rate=40),
            chromium() as browser,
        ):
            page = new_page(browser)
            with screenshot_on_failure(page, tmp_path / "form.png"):
                promoted, shown = released_with_a_person(environment, page, "v5", promote=True)
                assert promoted.is_completed(), promoted.message
                # The form showed both versions' numbers from the step before it.
                assert "Canary of frontend v5 at 20 % of new users" in shown, shown
                assert "canary v5:" in shown and "stable v2:" in shown and "requests" in shown
                assert version_now(environment) == "v5"
                rows = {r["step"]: r["result"] for r in report_rows(environment.name)}
                assert rows["canary frontend decision"] == "promoted by a person"

                aborted, _ = released_with_a_person(
                    environment, page, "v6", promote=False, comment="the new header is off"
                )
        assert aborted.is_failed()
        assert "aborted by a person: the new header is off" in (aborted.message or "")
        assert version_now(environment) == "v5"
    finally:
        register_environment(environment.name, environment.description)


def test_a_bake_fails_a_slower_version_on_its_users_traffic_though_every_probe_passes(environment):
    """Blue/green: a frontend 300 ms slower passes its probes; its users' traffic through the
    bake, against the previous version's just before the release, fails it."""
    description = copy.deepcopy(environment.description)
    next(s for s in description["services"] if s["name"] == "frontend").pop("rollout")
    register_environment(environment.name, description)
    try:
        with Wrk(environment.url("frontend") + "/", connections=10, rate=100):
            # The previous version's traffic, what the bake compares with; at 300 ms an answer,
            # 10 connections give v7 about 33 requests/s: past the 200 needed to compare means.
            time.sleep(12)
            source = new_code(environment.source, "v7", services=("frontend",))
            state = release(
                environment.name,
                "v7",
                str(source),
                build_args={"SLOW_MS": "300"},
                bake_seconds=12,
                return_state=True,
            )
    finally:
        register_environment(environment.name, environment.description)

    assert state.is_failed()
    message = state.message or ""
    assert "the bake of frontend failed on its users' traffic: mean latency" in message, message
    assert "x the previous version's" in message
    rows = {r["step"]: r["result"] for r in report_rows(environment.name)}
    assert "passed" in rows["smoke checks"]
    assert version_now(environment) == "v5"
