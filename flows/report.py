"""A run's report: its facts and one row per step, published as a markdown and a table artifact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from prefect.artifacts import create_markdown_artifact, create_table_artifact


@dataclass
class StepRow:
    step: str
    result: str
    duration_s: float
    changed: str


@dataclass
class StepLog:
    """Times each step and keeps what it reported; `step()` records a failure too."""

    rows: list[StepRow] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[StepRow]:
        row = StepRow(step=name, result="", duration_s=0.0, changed="")
        started = time.monotonic()
        try:
            yield row
        except BaseException as exc:
            row.result = (
                f"FAILED: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
            )
            raise
        finally:
            row.duration_s = round(time.monotonic() - started, 2)
            self.rows.append(row)


def render_markdown(title: str, outcome: str, facts: dict[str, str], rows: list[StepRow]) -> str:
    lines = [f"# {title}", "", f"**{outcome}**", ""]
    lines += [f"- **{key}**: {value}" for key, value in facts.items()]
    lines += ["", "| step | result | seconds | changed |", "|---|---|---:|---|"]
    for row in rows:
        result = row.result.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row.step} | {result} | {row.duration_s:.2f} | {row.changed or '-'} |")
    return "\n".join(lines) + "\n"


def publish(
    kind: str, environment: str, title: str, outcome: str, facts: dict[str, str], log: StepLog
) -> None:
    create_markdown_artifact(
        key=f"{kind}-report-{environment}",
        markdown=render_markdown(title, outcome, facts, log.rows),
        description=f"{title}: {outcome}",
    )
    create_table_artifact(
        key=f"{kind}-steps-{environment}",
        table=[
            {"step": r.step, "result": r.result, "seconds": r.duration_s, "changed": r.changed}
            for r in log.rows
        ],
        description=f"{title}: steps",
    )


@dataclass
class Report:
    """What a release or rollback run publishes: `<kind>-report-<environment>` (markdown) and
    `<kind>-steps-<environment>` (table), with `facts` above the steps."""

    kind: str
    environment: str
    title: str
    facts: dict[str, str] = field(default_factory=dict)
    steps: StepLog = field(default_factory=StepLog)

    def step(self, name: str) -> AbstractContextManager[StepRow]:
        return self.steps.step(name)

    def publish(self, outcome: str) -> None:
        publish(self.kind, self.environment, self.title, outcome, self.facts, self.steps)
