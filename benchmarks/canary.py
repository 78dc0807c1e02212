"""Figures of canary releases against blue/green (docs/canary.md), on a scratch environment of
the stand-ins on the main stack:

    eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.canary

Under wrk at a fixed rate (100 requests/s on 10 connections, on the frontend's `/`, from its own
process), from the same stable version each time, blue/green then canary:
1. a frontend whose every page answers 500 from its start: the user requests each failed
   (blue/green's probes catch it after its switch; the canary's, before any user reaches it);
2. the same, from 15 s after its start, with a 40 s bake: the probes of neither see it before
   users do (blue/green's in its bake, the canary's at 10 % of new users);
3. a frontend 300 ms slower that never fails: blue/green without a bake (its probes pass: it is
   released; it is then replaced by the stable again), then as a canary: aborted, and how long
   from the canary's start to its abort;
4. a good frontend as a canary: promoted through every step by itself, its failed requests and
   its time to 100 %.
The canary: 10 % for 30 s, then 50 % for 30 s, checked every second, judged from 50 requests.
HAProxy checks the frontend's /api/health, as the real stack's does (`local.yaml`): its pages
failing do not take it out of rotation, so what catches them is the pipeline's, not HAProxy's. Prints a
JSON line; the result goes to benchmarks/results/canary-<time>.json.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from deployments.register import register_environment
from flows.release import release
from testbed.reports import step_rows
from testbed.scratch import create_environment, new_code, remove_environment
from testbed.wrk import Wrk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VERSION_IN_PAGE = '<span id="version">([^<]+)</span>'
CANARY = {
    "strategy": "canary",
    "steps": [{"weight": 10, "seconds": 30}, {"weight": 50, "seconds": 30}],
    "check_every_seconds": 1,
}
RATE = 100


def health_checked(_name: str, description: dict[str, Any]) -> None:
    frontend = next(s for s in description["services"] if s["name"] == "frontend")
    frontend["lb_check_path"] = "/api/health"


def with_rollout(description: dict[str, Any], rollout: dict[str, Any] | None) -> dict[str, Any]:
    edited = copy.deepcopy(description)
    frontend = next(s for s in edited["services"] if s["name"] == "frontend")
    frontend.pop("rollout", None)
    if rollout:
        frontend["rollout"] = rollout
    return edited


def rows(environment: str) -> dict[str, dict[str, Any]]:
    return {row["step"]: row for row in step_rows(environment)}


def released(
    env: tuple[str, Path, str], version: str, bake: float = 0, **build_args: str
) -> dict[str, Any]:
    """One frontend release of `env` (name, source, the frontend's URL) under wrk: its outcome,
    the failed user requests, its report's rows."""
    name, source, url = env
    new_code(source, version, services=("frontend",))
    with Wrk(f"{url}/", connections=10, rate=RATE, version_pattern=VERSION_IN_PAGE) as load:
        state = release(
            name,
            version,
            str(source),
            build_args=build_args or None,
            bake_seconds=bake,
            return_state=True,
        )
    return {
        "version": version,
        "completed": state.is_completed(),
        "message": (state.message or "")[:300],
        "requests": load.result.requests,
        "failed": load.result.failed,
        "served": load.result.versions,
        "rows": {k: (r["result"][:240], r["seconds"]) for k, r in rows(name).items()},
    }


def canary_seconds(found: dict[str, Any], until: str) -> float:
    """Seconds from the canary's start to the row `until` (its abort or its promotion), summed
    from the report's rows in between."""
    steps = list(found["rows"])
    first = steps.index("canary frontend")
    last = steps.index(until)
    return round(sum(found["rows"][s][1] for s in steps[first : last + 1]), 1)


def main() -> None:
    scratch = create_environment(
        "bench", Path(tempfile.mkdtemp(prefix="fm-bench-canary-")), edit=health_checked
    )
    name, description = scratch.name, scratch.description
    url = next(s["public_url"] for s in description["services"] if s["name"] == "frontend")
    env = (name, scratch.source, url)
    figures: dict[str, Any] = {"rate": RATE, "canary": CANARY}
    try:
        first = release(name, "v1", str(new_code(scratch.source, "v1")), return_state=True)
        assert first.is_completed(), first.message  # nothing serves yet: no load to put on it
        assert released(env, "v2")["completed"]
        for case, version, bake, args in (
            ("broken", "v3", 0, {"PAGE_FAIL_AFTER_SECONDS": "0"}),
            ("broken_later", "v4", 40, {"PAGE_FAIL_AFTER_SECONDS": "15"}),
        ):
            register_environment(name, with_rollout(description, None))
            blue_green = figures[f"{case}_blue_green"] = released(env, version, bake, **args)
            register_environment(name, with_rollout(description, CANARY))
            canary = figures[f"{case}_canary"] = released(env, version, bake, **args)
            share = canary["failed"] / blue_green["failed"] if blue_green["failed"] else None
            figures[f"{case}_canary_share_of_blue_green"] = share and round(share, 3)
        register_environment(name, with_rollout(description, None))
        figures["slow_blue_green"] = released(env, "v5", SLOW_MS="300")
        assert released(env, "v2")["completed"]  # the stable again
        register_environment(name, with_rollout(description, CANARY))
        slow = released(env, "v5", SLOW_MS="300")
        slow["seconds_to_abort"] = canary_seconds(slow, "abort canary frontend")
        figures["slow_canary"] = slow
        good = released(env, "v6")
        good["seconds_to_100"] = canary_seconds(good, "promote frontend")
        figures["good_canary"] = good
    finally:
        remove_environment(name, scratch.database)
    print(json.dumps(figures))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"canary-{stamp}.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
