"""Benchmark: how long the steps before any change take, per environment, as a dry run.

    scripts/stack.sh up && eval "$(scripts/stack.sh env)" && .venv/bin/python -m deployments.register
    .venv/bin/python -m benchmarks.dry_run [--runs 3] [ENVIRONMENT ...]   # default: local production

A dry run verifies the infrastructure, proposes its change (on AWS: a CloudFormation change set of
infra/cloudformation/flowmasters.yaml), plans the release and deletes the proposal: everything a
production release does before its first approval. On this machine `production` runs against the
stack's moto server, so its figures are the pipeline's own cost plus moto's, not AWS's (a real
change set takes CloudFormation tens of seconds). Nothing changes in any environment.
Results are printed and written to benchmarks/results/dry-run-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from flows.release import release

RESULTS = Path(__file__).resolve().parent / "results"


def timed_dry_run(environment: str) -> float:
    started = time.monotonic()
    state = release(environment, f"bench-{uuid.uuid4().hex[:8]}", dry_run=True, return_state=True)
    seconds = time.monotonic() - started
    if not state.is_completed():
        raise SystemExit(f"dry run of {environment} failed: {state.message}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environments", nargs="*", default=["local", "production"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for environment in args.environments:
        seconds = [timed_dry_run(environment) for _ in range(args.runs)]
        results[environment] = {"runs": seconds, "median": statistics.median(seconds)}
    print(f"\n{'environment':<14}{'median':>9}  runs")
    for environment, result in results.items():
        runs = ", ".join(f"{s:.1f}" for s in result["runs"])
        print(f"{environment:<14}{result['median']:>8.1f}s  {runs}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"dry-run-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
