"""The fault matrix: what the pipeline survives, on the real stack, with faults from real means
(a loopback fault proxy in front of a real service, a killed process). Each test adds its rows to
MATRIX; the table is printed at the end of the run and written to
benchmarks/results/faults-<time>.md (`scripts/test.sh tests/faults` runs only this tier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.conftest import stack  # noqa: F401  (the stack must be up)

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MATRIX:
        return
    table = render(MATRIX)
    terminalreporter.write_sep("=", "fault matrix")
    terminalreporter.write(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    out.write_text(table)
    terminalreporter.write_line(f"written to {out}")
