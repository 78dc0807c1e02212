from types import SimpleNamespace

import pytest

from domain.errors import ReleaseError
from flows import report
from flows.report import StepLog, StepRow, render_markdown


def test_render_markdown():
    rows = [
        StepRow(step="build", result="2 images built", duration_s=12.5, changed="images"),
        StepRow(step="migrate", result="FAILED: a | b\nexit 1", duration_s=0.25, changed=""),
    ]

    text = render_markdown(
        "Release 1.2.0 to staging", "failed", {"version": "1.2.0", "release": "r-1"}, rows
    )

    assert text == (
        "# Release 1.2.0 to staging\n"
        "\n"
        "**failed**\n"
        "\n"
        "- **version**: 1.2.0\n"
        "- **release**: r-1\n"
        "\n"
        "| step | result | seconds | changed |\n"
        "|---|---|---:|---|\n"
        "| build | 2 images built | 12.50 | images |\n"
        "| migrate | FAILED: a \\| b exit 1 | 0.25 | - |\n"
    )


class TestStepLog:
    @pytest.fixture(autouse=True)
    def clock(self, monkeypatch):
        ticks = iter([100.0, 102.5])
        monkeypatch.setattr(report, "time", SimpleNamespace(monotonic=lambda: next(ticks)))

    def test_records_what_the_step_reported_and_its_duration(self):
        log = StepLog()
        with log.step("build") as row:
            row.result = "2 images built"
            row.changed = "images"

        assert log.rows == [StepRow("build", "2 images built", 2.5, "images")]

    def test_failure_records_first_line_and_reraises(self):
        log = StepLog()
        with pytest.raises(ReleaseError, match="migration 0004 failed"), log.step("migrate") as row:
            row.result = "half done"
            raise ReleaseError("migration 0004 failed\nERROR: column exists")

        assert log.rows == [StepRow("migrate", "FAILED: migration 0004 failed", 2.5, "")]

    def test_failure_without_message_records_exception_type(self):
        log = StepLog()
        with pytest.raises(TimeoutError), log.step("deploy"):
            raise TimeoutError()

        assert log.rows[0].result == "FAILED: TimeoutError"

    def test_failure_message_is_cut_to_300_characters(self):
        log = StepLog()
        with pytest.raises(ReleaseError), log.step("deploy"):
            raise ReleaseError("x" * 500)

        assert log.rows[0].result == "FAILED: " + "x" * 300
