"""The example CI workflow starts release/staging the way that survives all-digit versions."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[3] / ".github" / "workflows" / "release-staging.yml"


def release_step() -> dict:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return next(s for s in jobs["release"]["steps"] if "deployment run" in s.get("run", ""))


def test_starts_release_staging_and_watches_it():
    command = release_step()["run"]

    assert "prefect deployment run release/staging" in command
    assert "--watch" in command


def test_passes_the_version_as_json_never_as_a_bare_param():
    command = release_step()["run"]

    assert '--params "$params"' in command and "json.dumps" in command
    assert "-p version=" not in command


def test_no_expression_is_expanded_inside_the_shell_script():
    # ${{ }} inside `run:` is template injection; values reach the script through env only.
    assert "${{" not in release_step()["run"]
