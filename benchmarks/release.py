"""Benchmark: how long a release takes, cold and cached, and what users see during one.

    scripts/stack.sh up && eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.release [--rate 25]

It makes a scratch environment (own database, ports and repositories), so `local` is untouched,
and removes it afterwards. Measured:
- cold: first release into the empty environment, from source never built before (a unique file
  in each build context defeats the Prefect cache and Docker's layer cache from the COPY on; the
  base image is already in the engine, as it always is after `scripts/stack.sh up`);
- cached: the same release again (build, push and backup are cache hits; deploy finds it live);
- under load: a release of a new version (with a migration) while wrk (10 connections, paced to
  `--rate` requests/s) hits the frontend's /api/backend (through both services and HAProxy).
Results are printed as a table and written to benchmarks/results/release-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from flows.release import release
from testbed.scratch import create_environment, new_code, remove_environment
from testbed.wrk import Wrk

RESULTS = Path(__file__).resolve().parent / "results"


def timed_release(name: str, version: str, source: Path) -> tuple[float, str]:
    started = time.monotonic()
    state = release(name, version, str(source), {}, return_state=True)
    seconds = time.monotonic() - started
    if not state.is_completed():
        raise SystemExit(f"release {version} failed: {state.message}")
    return seconds, str(state.state_details.flow_run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25, help="requests/s during the release")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        scratch = create_environment("bench", Path(workdir))
        try:
            marker = uuid.uuid4().hex
            for service in ("backend", "frontend"):
                (scratch.source / service / "BUILD_MARKER").write_text(marker)
            cold, _ = timed_release(scratch.name, "v1", scratch.source)
            cached, _ = timed_release(scratch.name, "v1", scratch.source)
            new_code(scratch.source, "v2")  # a new version of both services
            migrations = scratch.source / "backend" / "migrations"
            (migrations / "0002_bench.up.sql").write_text("ALTER TABLE pages ADD COLUMN b int;\n")
            (migrations / "0002_bench.down.sql").write_text("ALTER TABLE pages DROP COLUMN b;\n")
            url = scratch.description["services"][1]["public_url"] + "/api/backend"
            with Wrk(url, connections=10, rate=args.rate) as load:
                under_load, _ = timed_release(scratch.name, "v2", scratch.source)
        finally:
            remove_environment(scratch.name, scratch.database)
    result = load.stop()
    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cold_release_seconds": round(cold, 1),
        "cached_rerun_seconds": round(cached, 1),
        "release_under_load_seconds": round(under_load, 1),
        "load_url": "frontend /api/backend",
        "load_requests": result.requests,
        "load_rate_per_second": round(result.rate, 1),
        "load_failed_requests": result.failed,
        "load_statuses": result.statuses,
        "load_socket_errors": result.errors,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"release-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(figures, indent=2))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value}")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
