"""The main command's set-up is redone exactly when something it is made from changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments import fingerprints as setup


@pytest.fixture
def described(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A description folder with one environment whose secret is a file."""
    secret = tmp_path / "payload-secret"
    secret.write_text("first")
    (tmp_path / "demo.yaml").write_text(
        "target: {type: docker-host}\n"
        f"secrets: {{demo-secret: {{password_file: {secret}}}}}\n"
        "services: []\n"
        'build_args: {NODE_IMAGE: "${FM_NODE_IMAGE}"}\n'
    )
    monkeypatch.setattr("deployments.descriptions.HERE", tmp_path)
    monkeypatch.setenv("FM_NODE_IMAGE", "node:24")
    return tmp_path


def test_the_same_inputs_give_the_same_fingerprint(described: Path):
    assert setup.environment_fingerprint("demo") == setup.environment_fingerprint("demo")


def test_a_changed_secret_file_variable_or_description_changes_it(
    described: Path, monkeypatch: pytest.MonkeyPatch
):
    seen = {setup.environment_fingerprint("demo")}
    (described / "payload-secret").write_text("rotated")
    seen.add(setup.environment_fingerprint("demo"))
    monkeypatch.setenv("FM_NODE_IMAGE", "node:24.1")
    seen.add(setup.environment_fingerprint("demo"))
    (described / "demo.yaml").write_text((described / "demo.yaml").read_text() + "checks: {}\n")
    seen.add(setup.environment_fingerprint("demo"))

    assert len(seen) == 4


def test_a_change_to_the_code_that_makes_blocks_changes_it(
    described: Path, monkeypatch: pytest.MonkeyPatch
):
    before = setup.environment_fingerprint("demo")
    real = setup.code
    monkeypatch.setattr(setup, "code", lambda folders: [*real(folders), b"blocks/new.py\0x = 1"])

    assert setup.environment_fingerprint("demo") != before


def test_secret_files_are_found_wherever_the_description_names_them():
    description = {
        "target": {"database": {"password_file": "/a"}},
        "secrets": {"s": {"password_file": "/b"}, "t": {"password_env": "X"}},
        "services": [{"env": {"password_file": "/c"}}],
    }

    assert sorted(map(str, setup.secret_files(description))) == ["/a", "/b", "/c"]


def test_the_deployments_fingerprint_follows_the_variables_prefect_yaml_reads(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("FM_REPO_ROOT", "/srv/one")
    one = setup.deployments_fingerprint()
    monkeypatch.setenv("FM_REPO_ROOT", "/srv/two")

    assert setup.deployments_fingerprint() != one
    monkeypatch.setenv("UNRELATED", "x")
    assert setup.deployments_fingerprint() == setup.deployments_fingerprint()
