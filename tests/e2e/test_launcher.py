"""Deployment runs start warm: the worker's command hands them to the stack's launcher, which
forks an already-imported process (launcher/warm.py), instead of starting Python cold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import SANDBOX, new_version, start, wait_final, wait_until

pytestmark = [pytest.mark.e2e, SANDBOX]


def launcher_log() -> str:
    return (Path(os.environ["FM_STACK_DIR"]) / "logs" / "launcher.log").read_text()


def test_a_deployment_run_is_a_fork_of_the_warm_launcher():
    run = start("release/sandbox", version=new_version("e2e-warm"), dry_run=True)

    final = wait_final(run.id, timeout=300)

    assert final.state.is_completed(), final.state.message
    assert f"flow run {run.id}: started as pid" in launcher_log()
    # The server has the run Completed a moment before its process has drained its logs and ended.
    ended = wait_until(
        "the run's process ending",
        lambda: [line for line in launcher_log().splitlines() if f"{run.id}: pid" in line],
        timeout=60,
    )
    assert "ended {'exit': 0}" in ended[0]
