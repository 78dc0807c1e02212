"""Benchmark: time to recover from a broken release, and what users see meanwhile.

    scripts/stack.sh up && eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.mttr [--runs 5] [--rate 50]

In a scratch environment of the stand-ins (own database, ports, repositories; removed after),
v1 is released, then `--runs` broken versions one after another. A broken version answers its
health check for BREAK_AFTER_SECONDS (3 s: it passes the deploy's health gate, which takes well
under a second here, and fails inside the 5 s checks window), then 500 on /api/health, so the
release's smoke checks fail and it switches back to v1 in process.

Measured from outside the flow, through the public URLs:
- a prober process (benchmarks/probe.py) asks every URL the smoke checks probe, every 20 ms;
  time to recover = from its first failed answer to the moment from which every probe answers
  200 with v1 again;
- wrk, one process per public URL (frontend /, backend /api/pages), each paced at `--rate`
  requests/s, counts every answer by status and socket error, and a page that rendered
  "content unavailable" as failed. The health endpoints (/api/health, and the frontend's
  /api/backend, which passes the backend's health on) are not among them: they are what fails.
Before the broken releases, each load URL's capacity is measured (wrk, 20 connections, no pause),
so the figures are known to measure the pipeline, not the stand-in's limits.
Results are printed as a table and written to benchmarks/results/mttr-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.release import release
from testbed.scratch import create_environment, remove_environment
from testbed.wrk import Wrk, WrkResult

RESULTS = Path(__file__).resolve().parent / "results"
BREAK_AFTER_SECONDS = "3"
CONNECTIONS = 10  # per URL, paced by wrk to the rate: enough to cover slow answers


def recovery(samples: list[dict[str, Any]], good: str) -> tuple[float, float] | None:
    """(first failed answer, recovered) times from the prober's samples; None when nothing
    failed. A sample is good when it is a 200 carrying `good` (or no version at all, like `/`);
    recovered is when, for every URL, the first good answer after the last bad one came."""
    bad = [s for s in samples if s["status"] != 200 or s["version"] not in (None, good)]
    failed = [s["t"] for s in samples if s["status"] != 200]
    if not failed:
        return None
    last_bad = max(s["t"] for s in bad)
    back = []
    for url in {s["url"] for s in samples}:
        after = [s["t"] for s in samples if s["url"] == url and s["t"] > last_bad]
        if not after:
            raise ValueError(f"{url} never answered {good} again")
        back.append(min(after))
    return min(failed), max(back)


def probe_urls(description: dict[str, Any]) -> list[str]:
    urls = {s["name"]: s["public_url"] for s in description["services"]}
    return [urls[p["service"]] + p["path"] for p in description["checks"]["probes"]]


def load_urls(description: dict[str, Any]) -> list[str]:
    urls = {s["name"]: s["public_url"] for s in description["services"]}
    return [urls["frontend"] + "/", urls["backend"] + "/api/pages"]


def capacity(url: str, seconds: float = 10) -> WrkResult:
    """What one URL serves flat out: wrk with 20 connections and no pause."""
    with Wrk(url, connections=20, delay_ms=0) as load:
        time.sleep(seconds)
    return load.stop()


def broken_release(name: str, source: Path, version: str, description: dict, rate: float) -> dict:
    """One broken release under load; what the prober and wrk saw."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        samples_file = Path(f.name)
    prober = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.probe",
            "--out",
            str(samples_file),
            *probe_urls(description),
        ],
        env=os.environ,
    )
    loads = [
        Wrk(u, connections=CONNECTIONS, rate=rate, flag_text="content unavailable")
        for u in load_urls(description)
    ]
    try:
        for load in loads:
            load.__enter__()
        started = time.monotonic()
        state = release(
            name, version, str(source), {"BREAK_AFTER_SECONDS": BREAK_AFTER_SECONDS},
            return_state=True,
        )  # fmt: skip
        seconds = time.monotonic() - started
        time.sleep(2)  # the load goes on after the release reported
    finally:
        results: list[WrkResult] = [load.stop() for load in loads]
        prober.terminate()
        prober.wait(timeout=10)
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line]
    samples_file.unlink()
    if state.is_completed():
        raise SystemExit(f"{version} was meant to fail its checks, and passed")
    found = recovery(samples, "v1")
    return {
        "version": version,
        "release_seconds": round(seconds, 1),
        "failed_at": found[0] if found else None,
        "mttr_seconds": round(found[1] - found[0], 3) if found else None,
        "state": state.message[:120],
        "load": [
            {
                "url": r.url,
                "requests": r.requests,
                "rate": round(r.rate, 1),
                "failed": r.failed,
                "statuses": r.statuses,
                "errors": r.errors,
                "p99_ms": r.p99_ms,
            }
            for r in results
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50, help="requests/s on each public URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        scratch = create_environment("bench-mttr", Path(workdir))
        try:
            good = release(scratch.name, "v1", str(scratch.source), return_state=True)
            if not good.is_completed():
                raise SystemExit(f"v1 failed: {good.message}")
            flat_out = [capacity(u) for u in load_urls(scratch.description)]
            runs = [
                broken_release(
                    scratch.name, scratch.source, f"broken{i}", scratch.description, args.rate
                )
                for i in range(1, args.runs + 1)
            ]
        finally:
            remove_environment(scratch.name, scratch.database)
    for result in flat_out:
        print(f"capacity, 20 connections: {result.summary()}")
    print_table(runs)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"mttr-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    figures = {
        "when": datetime.now(UTC).isoformat(),
        "capacity": [{"url": r.url, "rate": round(r.rate), "failed": r.failed} for r in flat_out],
        "runs": runs,
    }
    out.write_text(json.dumps(figures, indent=2))
    print(f"written to {out}")


def print_table(runs: list[dict]) -> None:
    urls = [entry["url"] for entry in runs[0]["load"]]
    head = ["run", "release s", "MTTR s"] + [f"{u} req/s, failed" for u in urls]
    print(" | ".join(head))
    for run in runs:
        cells = [run["version"], f"{run['release_seconds']}", f"{run['mttr_seconds']}"]
        cells += [f"{entry['rate']}/s, {entry['failed']}" for entry in run["load"]]
        print(" | ".join(cells))
    mttrs = [r["mttr_seconds"] for r in runs if r["mttr_seconds"] is not None]
    failed = sum(entry["failed"] for r in runs for entry in r["load"])
    print(f"MTTR median {statistics.median(mttrs):.3f} s, max {max(mttrs):.3f} s; "
          f"failed requests in all: {failed}")  # fmt: skip


if __name__ == "__main__":
    main()
