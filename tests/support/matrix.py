"""The fault matrix's table: each test of tests/faults adds its rows to MATRIX while it runs.

Tests run in several processes at once (pytest-xdist), and the table is printed by the one that
reports. So a row does not stay where it was added: when its test's report is made, the rows it
added go with the report (`user_properties`), and the table is rendered from the reports, in the
order the tests ended, by whichever process prints the summary (the only one without xdist).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PROPERTY = "fault-matrix-row"


@dataclass
class Row:
    fault: str
    step: str
    end_state: str
    rows_lost: int | None
    recovered_s: float | None
    note: str = ""


MATRIX: list[Row] = []


def render(rows: list[Row]) -> str:
    lines = [
        "| fault | step | end state | rows lost | time to recover | note |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        lost = "-" if r.rows_lost is None else str(r.rows_lost)
        took = "-" if r.recovered_s is None else f"{r.recovered_s:.1f} s"
        lines.append(f"| {r.fault} | {r.step} | {r.end_state} | {lost} | {took} | {r.note} |")
    return "\n".join(lines) + "\n"


def attach(report: pytest.TestReport) -> None:
    """Move the rows added since the last report onto this one."""
    while MATRIX:
        report.user_properties.append((PROPERTY, asdict(MATRIX.pop(0))))


def collected(reports: list[Any]) -> list[Row]:
    return [
        Row(**value)
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == PROPERTY
    ]


def summarize(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        r for kind in ("passed", "failed", "error") for r in terminalreporter.stats.get(kind, [])
    ]
    rows = collected(sorted(reports, key=lambda r: getattr(r, "stop", 0)))
    if not rows:
        return
    table = render(rows)
    terminalreporter.write_sep("=", "fault matrix")
    terminalreporter.write(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    terminalreporter.write_line(f"written to {out}")
