"""Releases and rollbacks of one environment started at the same moment, from every entry point:
the deployment through the server's API (what the UI and `prefect deployment run` do), the main
command (`python -m flows.cli`) and a direct call from code. Exactly one changes the environment;
every other ends with a message that says why; nothing interleaves."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
)

from flows.lock import lock_name
from flows.release import release
from flows.rollback import rollback
from tests.e2e.conftest import (
    SANDBOX,
    SANDBOX_FRONTEND,
    code,
    served_version,
    start,
    wait_final,
    wait_until,
)
from tests.support.matrix import MATRIX, Row

pytestmark = [pytest.mark.e2e, SANDBOX]

REPO = Path(__file__).resolve().parents[2]
REFUSED = (
    "another release or rollback of 'sandbox' is running",
    "concurrency limit",
    "started before this one",
)


def release_runs_since(since: datetime) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
            ),
        )


def in_sandbox(runs: list[Any]) -> list[Any]:
    return [r for r in runs if r.parameters.get("environment") == "sandbox"]


@pytest.mark.parametrize("how_many", [2, 5])
def test_releases_started_at_once_change_the_environment_once(how_many):
    tag = f"{int(time.time())}"
    versions = [f"at-once-{how_many}-{i}-{tag}" for i in range(how_many)]
    sources = [code(v) for v in versions]  # each a change of its own
    since = datetime.now(UTC)
    go = threading.Barrier(how_many)
    answers: dict[str, str] = {}

    def through_the_api(i: int) -> None:
        go.wait()
        start("release/sandbox", version=versions[i], source=sources[i])

    def through_the_cli(i: int) -> None:
        go.wait()
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--environment", "sandbox",
             "--version", versions[i], "--source", sources[i]],
            cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        answers[versions[i]] = done.stdout[-400:]

    def from_code(i: int) -> None:
        go.wait()
        state = release("sandbox", versions[i], sources[i], return_state=True)
        answers[versions[i]] = state.message or state.name

    ways = [through_the_api, through_the_cli, from_code]
    threads = [threading.Thread(target=ways[i % len(ways)], args=(i,)) for i in range(how_many)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)

    runs = wait_until(
        "every release started here ending",
        lambda: (
            (r := in_sandbox(release_runs_since(since)))
            and len(r) >= how_many
            and all(x.state and x.state.is_final() for x in r)
            and r
        ),
        timeout=600,
    )
    finals = [wait_final(r.id).state for r in runs]
    completed = [r for r, s in zip(runs, finals, strict=True) if s.is_completed()]
    others = [s for s in finals if not s.is_completed()]
    MATRIX.append(
        Row(
            fault=f"{how_many} releases at once (API, CLI, code)",
            step="the whole release",
            end_state=f"{len(completed)} changed the environment, {len(others)} refused",
            rows_lost=None,
            recovered_s=None,
            note="; ".join(sorted({(s.message or s.name)[:70] for s in others})),
        )
    )
    assert len(completed) == 1, [
        (r.parameters.get("version"), s) for r, s in zip(runs, finals, strict=True)
    ]
    assert all(any(why in (s.message or "") for why in REFUSED) for s in others), others
    assert served_version(SANDBOX_FRONTEND) == completed[0].parameters["version"]


def lock_windows(since: datetime) -> list[tuple[datetime, datetime]]:
    """When each holder held sandbox's lock: (acquired, released), paired by the released
    event's `follows`, from the events Prefect emits for a global concurrency limit."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=30) as client:
        answer = client.post(
            "/events/filter",
            json={
                "filter": {
                    "occurred": {"since": since.isoformat()},
                    "event": {"prefix": ["prefect.concurrency-limit."]},
                },
                "limit": 50,
            },
        ).json()
        while True:
            found += answer.get("events", [])
            if not answer.get("next_page"):
                break
            answer = client.get(answer["next_page"]).json()
    ours = [e for e in found if e["resource"].get("prefect.resource.name") == lock_name("sandbox")]
    acquired = {e["id"]: e for e in ours if e["event"].endswith(".acquired")}
    return sorted(
        (
            datetime.fromisoformat(acquired[e["follows"]]["occurred"]),
            datetime.fromisoformat(e["occurred"]),
        )
        for e in ours
        if e["event"].endswith(".released") and e.get("follows") in acquired
    )


def test_a_release_and_two_rollbacks_at_once_never_interleave():
    before = f"interleave-base-{int(time.time())}"
    assert wait_final(
        start("release/sandbox", version=before, source=code(before)).id
    ).state.is_completed()
    doomed = f"interleave-{int(time.time())}"
    source = code(doomed)
    since = datetime.now(UTC)
    go = threading.Barrier(3)
    states: dict[str, Any] = {}

    def run(name: str, call) -> None:
        go.wait()
        states[name] = call()

    calls = {
        "release": lambda: release("sandbox", doomed, source, return_state=True),
        "rollback 1": lambda: rollback("sandbox", return_state=True),
        "rollback 2": lambda: rollback("sandbox", return_state=True),
    }
    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    windows = wait_until(
        "the lock's events of all three runs",
        lambda: len(w := lock_windows(since)) >= 2 and w,
        timeout=60,
    )

    served = served_version(SANDBOX_FRONTEND)
    overlaps = [(a, b) for a, b in itertools.pairwise(windows) if b[0] < a[1]]
    MATRIX.append(
        Row(
            fault="a release and two rollbacks at once",
            step="the whole release",
            end_state=f"serves {served}; {len(windows)} lock holds, {len(overlaps)} overlapping",
            rows_lost=None,
            recovered_s=None,
            note="; ".join(
                f"{k}: {v.name} {(v.message or '')[:60]}" for k, v in sorted(states.items())
            ),
        )
    )
    assert set(states) == {"release", "rollback 1", "rollback 2"}
    assert not any(s.is_crashed() for s in states.values()), states
    assert overlaps == [], f"two runs held the lock at once: {overlaps}"
    assert served in (before, doomed)
