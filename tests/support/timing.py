"""Where a run's time went, printed at its end: each tier's tests, their time summed (what one
process would have taken) and the span from the tier's first start to its last end (what it
took with its tests run at once), and each group's time, written for tests/durations.json."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.matrix import RESULTS
from tests.support.schedule import group_of_nodeid

TIERS = ("unit", "flows", "integration", "e2e", "faults")
STARTED: list[float] = []


def start(config: pytest.Config) -> None:
    STARTED.append(time.time())


def tier_of(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def reports(terminalreporter: pytest.TerminalReporter) -> list[Any]:
    """Every phase's report (a passed setup or teardown is filed under "")."""
    return [
        r
        for filed in terminalreporter.stats.values()
        for r in filed
        if isinstance(r, pytest.TestReport)
    ]


def summarize(terminalreporter: pytest.TerminalReporter) -> None:
    done = reports(terminalreporter)
    if not done:
        return
    tests: dict[str, set[str]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    groups: dict[str, float] = defaultdict(float)
    for report in done:
        tier = tier_of(report.nodeid)
        tests[tier].add(report.nodeid)
        busy[tier] += report.duration
        groups[group_of_nodeid(report.nodeid)] += report.duration
        if report.start:
            first[tier] = min(first.get(tier, report.start), report.start)
            last[tier] = max(last.get(tier, report.stop), report.stop)
    terminalreporter.write_sep("=", "time per tier")
    terminalreporter.write_line(f"{'tier':<12} {'tests':>6} {'summed':>14} {'span':>14}")
    for tier in sorted(tests, key=lambda t: TIERS.index(t) if t in TIERS else len(TIERS)):
        span = last.get(tier, 0) - first.get(tier, 0)
        terminalreporter.write_line(
            f"{tier:<12} {len(tests[tier]):>6} {minutes(busy[tier]):>14} {minutes(span):>14}"
        )
    wall = time.time() - STARTED[0] if STARTED else 0
    total = sum(busy.values())
    terminalreporter.write_line(
        f"{'all':<12} {sum(map(len, tests.values())):>6} {minutes(total):>14} {minutes(wall):>14}"
        f"   (pytest's own time; {total / wall if wall else 0:.1f} tests at once on average)"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"durations-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({g: round(s, 1) for g, s in sorted(groups.items())}, indent=1) + "\n")
    terminalreporter.write_line(
        f"each group's seconds: {out} (the order's source: tests/durations.json)"
    )
