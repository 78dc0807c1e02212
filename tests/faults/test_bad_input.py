"""Bad input, each refused before anything changes, with a message that names the problem and
what to do. One scratch environment serves v1 throughout; after each case it still serves v1,
from the same containers. Cases that need another environment (a broken target) register their
own, named after this one, and remove it.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from deployments.descriptions import read_description
from deployments.register import register_environment
from domain.errors import ReleaseError
from flows.release import release
from flows.rollback import rollback
from testbed.scratch import (
    Scratch,
    create_environment,
    move_ports,
    new_code,
    remove_environment,
)
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration


@dataclass
class Case:
    name: str
    run: Callable[[Scratch], Any]  # returns a final state, or raises
    says: tuple[str, ...]  # what the message must name: the problem and what to do


def outcome(call: Callable[[], Any]) -> str:
    """The refusal's message: a failed state's, or a ReleaseError's; anything else is a bug."""
    try:
        state = call()
    except (ReleaseError, ValueError) as exc:
        return str(exc)
    if hasattr(state, "is_failed"):
        assert not state.is_completed(), f"accepted: {state}"
        return state.message or ""
    raise AssertionError(f"accepted: {state!r}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    scratch = create_environment("it-bad", tmp_path_factory.mktemp("bad"))
    state = release(scratch.name, "v1", str(new_code(scratch.source, "v1")), return_state=True)
    assert state.is_completed(), state.message
    yield scratch
    remove_environment(scratch.name, scratch.database)


def serving(env: Scratch) -> tuple[str | None, set[str]]:
    """(the frontend's version, the ids of the environment's running containers)."""
    url = next(s["public_url"] for s in env.description["services"] if s["name"] == "frontend")
    try:
        version = httpx.get(url + "/api/backend", timeout=5).json().get("frontend_version")
    except (httpx.HTTPError, ValueError):
        version = None
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        running = client.containers.list(filters={"label": f"flowmasters.environment={env.name}"})
        return version, {c.id for c in running}
    finally:
        client.close()


# -- cases on the environment itself ---------------------------------------------------------


def with_code(change: Callable[[Path], None]) -> Callable[[Scratch], Any]:
    """Release v2 of code changed by `change` (a copy: the environment's own stays v1)."""

    def run(env: Scratch) -> Any:
        copy_dir = env.source.parent / f"case-{uuid.uuid4().hex[:6]}"
        shutil.copytree(env.source, copy_dir)
        new_code(copy_dir, "v2")
        change(copy_dir)
        return release(env.name, "v2", str(copy_dir), return_state=True)

    return run


def drop_dockerfile(source: Path) -> None:
    (source / "frontend" / "Dockerfile").unlink()


def failing_build(source: Path) -> None:
    dockerfile = source / "frontend" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nRUN exit 3\n")


def failing_migration(source: Path) -> None:
    folder = source / "backend" / "migrations"
    (folder / "0099_broken.up.sql").write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    (folder / "0099_broken.down.sql").write_text("SELECT 1;\n")


def same_tag_other_content(env: Scratch) -> Any:
    """v1 again, from changed code: the tag v1 already names another image."""
    copy_dir = env.source.parent / f"case-{uuid.uuid4().hex[:6]}"
    shutil.copytree(env.source, copy_dir)
    new_code(copy_dir, "not-v1-anymore")
    return release(env.name, "v1", str(copy_dir), return_state=True)


def slot_taken(env: Scratch) -> Any:
    """Another process listens on the port the new frontend would start on."""
    with socket.socket() as squatter:
        base = env.description["target"]["port_base"]
        for port in (base + 2, base + 3):  # the frontend's two slots: one is free, take it
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        squatter.listen()
        return with_code(lambda _: None)(env)


# -- cases that need an environment of their own ----------------------------------------------


def broken(edit: Callable[[dict[str, Any]], None]) -> Callable[[Scratch], Any]:
    """Release v1 to a copy of the environment whose description `edit` broke."""

    def run(env: Scratch) -> Any:
        name = f"{env.name}-x{uuid.uuid4().hex[:4]}"
        description = copy.deepcopy(env.description)
        move_ports(description)  # a copy on the same ports would be refused for that
        edit(description)
        try:
            register_environment(name, description)
            return release(name, "v1", str(env.source), return_state=True)
        finally:
            remove_environment(name, database=None)

    return run


def target(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["target"].update(changes)


def wrong_password(tmp: Path) -> Callable[[dict[str, Any]], None]:
    def edit(description: dict[str, Any]) -> None:
        wrong = tmp / "wrong-password"
        wrong.write_text("not-the-password\n")
        description["target"]["database"]["password_file"] = str(wrong)

    return edit


def health_path(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(description: dict[str, Any]) -> None:
        for service in description["services"]:
            service["health_path"] = path
            service["health_timeout_seconds"] = 5

    return edit


def described(edit: Callable[[dict[str, Any]], None]) -> Callable[[Scratch], Any]:
    """Register a description `edit` broke (refused before any block is saved)."""

    def run(env: Scratch) -> Any:
        description = copy.deepcopy(env.description)
        edit(description)
        return register_environment(f"{env.name}-d{uuid.uuid4().hex[:4]}", description)

    return run


def duplicate_service(d: dict[str, Any]) -> None:
    d["services"].append(copy.deepcopy(d["services"][0]))


def two_owners(d: dict[str, Any]) -> None:
    for service in d["services"]:
        service["owns_migrations"] = True


def unknown_field(d: dict[str, Any]) -> None:
    d["services"][0]["helth_path"] = "/api/health"


def no_services(d: dict[str, Any]) -> None:
    d["services"] = []


def missing_secret(d: dict[str, Any]) -> None:
    d["services"][0]["secret_env"] = {"PAYLOAD_SECRET": "no-such-secret-block"}


def unknown_section(env: Scratch) -> Any:
    path = env.source.parent / "described.yaml"
    path.write_text("target: {type: docker-host}\nservices: []\nhealthchecks: {}\n")
    return read_description(path)


def restore_without_backup(env: Scratch) -> Any:
    """v1 released again, unchanged: that release takes no backup (it changes nothing), so
    a restore has nothing to restore, and must say so before it touches a service."""
    again = release(env.name, "v1", str(env.source), return_state=True)
    assert again.is_completed(), again.message
    return rollback(env.name, restore_backup=True, return_state=True)


TMP = Path(os.environ.get("TMPDIR", "/tmp"))

CASES = [
    Case(
        "unknown environment",
        lambda env: release("no-such-environment", "v2"),
        ("unknown environment 'no-such-environment'", "deployments/environments/"),
    ),
    Case(
        "malformed version",
        lambda env: release(env.name, "v 2", str(env.source), return_state=True),
        ("'v 2' is not usable as an image tag", "letters, digits"),
    ),
    Case(
        "reserved version",
        lambda env: release(env.name, "latest", str(env.source), return_state=True),
        ("'latest'", "never 'latest'"),
    ),
    Case(
        "a version that exists with other content",
        same_tag_other_content,
        ("already exists and holds a different image", "release under a new version"),
    ),
    Case("missing Dockerfile", with_code(drop_dockerfile), ("no Dockerfile at", "frontend")),
    Case("a build that fails", with_code(failing_build), ("building frontend failed", "exit")),
    Case(
        "a migration that fails",
        with_code(failing_migration),
        ("0099_broken", "no_such_table"),
    ),
    Case(
        "a source folder that does not exist",
        lambda env: release(env.name, "v2", "/nonexistent/app", return_state=True),
        ("/nonexistent/app",),
    ),
    Case(
        "a git repository that does not exist",
        lambda env: release(
            env.name, "v2", ".", git_repository="/nonexistent/repo.git", return_state=True
        ),
        ("/nonexistent/repo.git",),
    ),
    Case(
        "unreachable engine",
        broken(target(docker_host="unix:///nonexistent/docker.sock")),
        ("docker engine", "/nonexistent/docker.sock", "scripts/stack.sh up"),
    ),
    Case(
        "unreachable load balancer",
        broken(target(proxy_dir="/nonexistent/haproxy")),
        ("load balancer", "/nonexistent/haproxy", "scripts/stack.sh up"),
    ),
    Case(
        "wrong database password",
        broken(wrong_password(TMP)),
        ("database", "password"),
    ),
    Case(
        "a health path that answers 404",
        broken(health_path("/no-such-health")),
        ("/no-such-health", "404"),
    ),
    Case(
        "a slot port taken by another process",
        slot_taken,
        ("taken by another process", "ss -ltnp", "choose another port_base"),
    ),
    Case(
        "a description with an unknown field",
        described(unknown_field),
        ("helth_path",),
    ),
    Case(
        "a description with an unknown section",
        unknown_section,
        ("unknown section", "healthchecks"),
    ),
    Case(
        "a description with a duplicate service",
        described(duplicate_service),
        ("service names must be unique",),
    ),
    Case(
        "two services claiming the migrations",
        described(two_owners),
        ("at most one service may own the migrations",),
    ),
    Case("a description with no service", described(no_services), ("at least one service",)),
    Case(
        "a secret naming a block that does not exist",
        broken(missing_secret),
        ("no-such-secret-block", "PAYLOAD_SECRET"),
    ),
    Case(
        "a to_version that never existed",
        lambda env: rollback(env.name, to_version="v404", return_state=True),
        ("v404",),
    ),
    Case(
        "a restore without a backup",
        restore_without_backup,
        ("has no backup to restore", "roll back without restore_backup"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_before_anything_changes(env, case):
    before = serving(env)

    message = outcome(lambda: case.run(env))

    after = serving(env)
    missing = [phrase for phrase in case.says if phrase.lower() not in message.lower()]
    MATRIX.append(
        Row(
            fault="bad input",
            step=case.name,
            end_state="refused, unchanged" if after == before else f"CHANGED {after}",
            rows_lost=None,
            recovered_s=None,
            note=" ".join(message.replace("|", "/").split())[:200] or "(no message)",
        )
    )
    assert missing == [], f"the message does not name {missing}: {message}"
    assert after == before, "something changed"
