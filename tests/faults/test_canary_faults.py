"""A canary's weight command failing, once and for good, on a scratch environment that reaches
HAProxy's admin socket through a fault proxy (tests/support/faultproxy.py): the command's
connection is closed unanswered, as an HAProxy worker that goes away in a reload does.

Once: the step sends it again (tasks/retries.py) and the canary is promoted. For good: the
release fails saying which command, and every user is on the stable version, the canary out of
rotation. (Prometheus stopping in the middle of a canary:
tests/integration/flows/test_canary_docker_host.py.)

No load here: with fewer requests than the bounds need, each step is decided by the canary's
own probes, which is what is under test in neither case.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flows.release import release
from targets.docker_host.proxy import HaproxyAdmin, backend_name, live_slot
from testbed.scratch import Scratch, create_environment, new_code, remove_environment, stack_dir
from tests.faults.conftest import Proxies
from tests.support.faultproxy import LineRule

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, proxies: Proxies) -> Iterator[Scratch]:
    through = proxies.through(checks_window=1)

    def edit(name: str, description: dict[str, Any]) -> None:
        through(name, description)
        frontend = next(s for s in description["services"] if s["name"] == "frontend")
        frontend["rollout"] = {
            "strategy": "canary",
            "steps": [{"weight": 20, "seconds": 3}],
            "check_every_seconds": 1,
        }

    scratch = create_environment("it-cf", tmp_path_factory.mktemp("canary"), edit=edit)
    first = release(scratch.name, "v0", str(new_code(scratch.source, "v0")), return_state=True)
    assert first.is_completed(), first.message
    yield scratch
    proxies.clear()
    remove_environment(scratch.name, scratch.database)


def frontend_versions(env: Scratch, times: int = 20) -> set[str]:
    url = next(s["public_url"] for s in env.description["services"] if s["name"] == "frontend")
    return {httpx.get(url + "/api/health", timeout=5).json()["version"] for _ in range(times)}


def weight_commands(env: Scratch, times: int | None) -> LineRule:
    return LineRule(rf"^set weight {re.escape(backend_name(env.name, 'frontend'))}/", times=times)


def test_a_weight_command_that_fails_once_is_sent_again(env, proxies):
    proxies.admin.rules.append(weight_commands(env, times=1))
    proxies.admin.log.clear()
    try:
        state = release(
            env.name, "v1", str(new_code(env.source, "v1", ("frontend",))), return_state=True
        )
    finally:
        faulted = [c for c, failed in proxies.admin.log if failed]
        proxies.clear()

    assert state.is_completed(), state.message
    assert len(faulted) == 1 and faulted[0].startswith("set weight"), faulted
    assert frontend_versions(env) == {"v1"}


def test_a_weight_command_that_fails_for_good_aborts_onto_the_stable(env, proxies):
    proxies.admin.rules.append(weight_commands(env, times=None))
    try:
        state = release(
            env.name, "v2", str(new_code(env.source, "v2", ("frontend",))), return_state=True
        )
    finally:
        proxies.clear()

    assert state.is_failed()
    assert "closed the connection without answering `set weight" in (state.message or "")
    assert frontend_versions(env) == {"v1"}
    # Straight from HAProxy (not through the proxy): the canary's slot is out of rotation.
    admin = HaproxyAdmin(str(stack_dir() / "haproxy" / "admin.sock"))
    states = admin.states()
    backend = backend_name(env.name, "frontend")
    canary = 1 - live_slot(states, backend)
    assert states[(backend, f"slot{canary}")].status.startswith("MAINT")
