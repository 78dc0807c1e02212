"""Benchmark: what the pipeline costs above the work it does, against a plain shell script.

    scripts/stack.sh up && eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.overhead [--pairs 3]

Two scratch environments of the stand-ins (own databases, ports, repositories; removed after):
`flow` is released by the release flow as the main command does it (`python -m flows.cli`, a
whole process: it starts a run of the environment's deployment, which the stack's worker hands
to the warm launcher, and prints its logs until it ends), `plain` by benchmarks/plain_release.sh
(docker CLI, pg_dump, socat to HAProxy's socket, curl; no caching, no records). Both are first set up by one flow release (HAProxy backends, a
live version, the schema). Then, on the same machine and the same app:
- `--pairs` pairs of releases of a new version (a new file in both build contexts, so both images
  are rebuilt from the COPY on), the flow's and the script's alternating; both wait out the same
  5 s checks window;
- the flow's last version again, nothing changed (`--pairs` times);
- a version where only the frontend's source changed (`--pairs` times, each a new version).
Printed as a table of medians and ratios; written to benchmarks/results/overhead-<time>.json.
Wall time is the process's; CPU is the process and its children (not the Docker engine's, and
not the worker's: the flow's CPU is in the launcher's child). Each flow release's start is read
from the server: the worker submitting the run (Pending) to Running, and to its first task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from testbed.scratch import (
    Scratch,
    create_environment,
    deploy_like,
    remove_environment,
    stack_dir,
)

RESULTS = Path(__file__).resolve().parent / "results"
HERE = Path(__file__).resolve().parent


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, its output); fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def flow_release(
    scratch: Scratch, version: str, starts: list[dict[str, Any]]
) -> tuple[float, float]:
    """The main command's release; its run's start figures go to `starts`."""
    argv = [sys.executable, "-m", "flows.cli", "--environment", scratch.name]
    argv += ["--version", version, "--source", str(scratch.source)]
    wall, cpu, out = timed(argv, dict(os.environ))
    run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", out)
    if run_id is None or "of release/" not in out:
        raise SystemExit(f"the release did not run through the worker:\n{out[-2000:]}")
    starts.append(run_start(run_id.group(1)))
    return wall, cpu


def run_start(run_id: str) -> dict[str, Any]:
    """Seconds from the worker's submission (Pending) to Running, and to the first task."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(UUID(run_id))
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
        )
    at = {state.type.value: state.timestamp for state in states}
    first = min(t.start_time for t in tasks if t.start_time)
    return {
        "flow_run_id": run_id,
        "pending_to_running": (at["RUNNING"] - at["PENDING"]).total_seconds(),
        "pending_to_first_task": (first - at["PENDING"]).total_seconds(),
    }


def plain_release(scratch: Scratch, version: str, workdir: Path) -> tuple[float, float]:
    target = scratch.description["target"]
    db = target["database"]
    urls = {s["name"]: s["public_url"] for s in scratch.description["services"]}
    env = {
        **os.environ,
        "NAME": scratch.name,
        "VERSION": version,
        "SOURCE": str(scratch.source),
        "BASE_IMAGE": scratch.description["build_args"]["BASE_IMAGE"],
        "REGISTRY": target["registry"],
        "PORT_BASE": str(target["port_base"]),
        "BACKEND_URL": urls["backend"],
        "FRONTEND_URL": urls["frontend"],
        "SOCKET": str(stack_dir() / "haproxy" / "admin.sock"),
        "BACKUP": str(workdir / f"{scratch.name}-{version}.dump"),
        "PGHOST": db["host"],
        "PGPORT": str(db["port"]),
        "PGUSER": db["username"],
        "PGDATABASE": db["database"],
        "PGPASSWORD": Path(db["password_file"]).read_text().strip(),
        "WINDOW": str(scratch.description["checks"]["window_seconds"]),
    }
    wall, cpu, _ = timed(["bash", str(HERE / "plain_release.sh")], env)
    return wall, cpu


def mark(scratch: Scratch, services: tuple[str, ...]) -> None:
    """New content in these build contexts: their images must be built again."""
    for service in services:
        (scratch.source / service / "BUILD_MARKER").write_text(uuid.uuid4().hex)


def median(pairs: list[tuple[float, float]], index: int) -> float:
    return statistics.median(p[index] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        flow = create_environment("bench-flow", workdir)
        plain = create_environment("bench-plain", workdir)
        starts: list[dict[str, Any]] = []
        try:
            for scratch in (flow, plain):
                deploy_like(scratch.name)
                flow_release(scratch, "v0", [])
            flows, plains = [], []
            for i in range(1, args.pairs + 1):
                mark(flow, ("backend", "frontend"))
                mark(plain, ("backend", "frontend"))
                flows.append(flow_release(flow, f"r{i}", starts))
                plains.append(plain_release(plain, f"r{i}", workdir))
            unchanged = [flow_release(flow, f"r{args.pairs}", starts) for _ in range(args.pairs)]
            one_changed = []
            for i in range(1, args.pairs + 1):
                mark(flow, ("frontend",))
                one_changed.append(flow_release(flow, f"frontend-only-{i}", starts))
        finally:
            remove_environment(flow.name, flow.database)
            remove_environment(plain.name, plain.database)
    figures = report(flows, plains, unchanged, one_changed, starts)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"overhead-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"written to {out}")


def report(
    flows: list[tuple[float, float]],
    plains: list[tuple[float, float]],
    unchanged: list[tuple[float, float]],
    one_changed: list[tuple[float, float]],
    starts: list[dict[str, Any]],
) -> dict[str, Any]:
    flow_wall, plain_wall = median(flows, 0), median(plains, 0)
    rows = [
        ("release (flow), median wall s", flow_wall, None),
        ("plain script, median wall s", plain_wall, None),
        ("release / plain script, wall", flow_wall / plain_wall, 1.5),
        ("release / plain script, CPU", median(flows, 1) / max(median(plains, 1), 1e-6), None),
        ("no change re-release / release", median(unchanged, 0) / flow_wall, 0.2),
        ("one service changed / all changed", median(one_changed, 0) / flow_wall, 0.7),
        (
            "run start: Pending -> Running, max s",
            max(s["pending_to_running"] for s in starts),
            None,
        ),
        (
            "run start: Pending -> first task, max s",
            max(s["pending_to_first_task"] for s in starts),
            2,
        ),
    ]
    print(f"{'measure':<38} {'value':>8}  goal")
    for label, value, goal in rows:
        print(f"{label:<38} {value:>8.2f}  {'<= ' + str(goal) if goal else ''}")
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "flow_releases": flows,
        "plain_releases": plains,
        "no_change": unchanged,
        "one_service_changed": one_changed,
        "run_starts": starts,
        "table": {label: round(value, 3) for label, value, _ in rows},
    }


if __name__ == "__main__":
    main()
