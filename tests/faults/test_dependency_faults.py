"""Each step's dependency fails for real, for good (a permanent fault) and once (a transient
one), on a scratch environment that reaches the registry, the Docker engine, PostgreSQL and
HAProxy's admin socket through fault proxies (tests/support/faultproxy.py): the registry answers
503 to its ping or its layer uploads, the engine to a build or to the create of one service's
container, the database closes the connection of the backup (`pg_dump`) or of the migrations
(each names itself with PGAPPNAME, as the pipeline's sessions do), and HAProxy's admin socket
closes the connection of the edge step's reads of its state without answering, as an HAProxy
worker that goes away in a reload does.

After a permanent fault the release fails, says which dependency failed, and leaves the
environment as it was: both services on the previous version, the schema unchanged, no row lost,
the lock free. After a transient one the release succeeds through its retries, on the new
version, with no row lost. A clean release at the end proves the environment still works.

The edge step's "permanent" fault lasts for every attempt of that step (four reads), not for
good: the admin socket is also how the failed release switches both services back, and with
HAProxy gone for good neither version could serve. The fault starts after the frontend's deploy
parked its old slot and wrote the config file from one more read (the deploy's last use of the
socket), so it falls on the edge step alone; the test asserts the edge task is the one that
failed or retried, so a change to that order fails it loudly.

Not here, and why: the record step writes a Prefect variable (test_prefect_api.py); the checks
and bake steps fail through the new version's own health
(tests/integration/flows/test_release_docker_host.py, benchmarks/mttr.py), and a failed probe is
never retried, by design (tasks/checks.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prefect.variables import Variable

from domain.records import ReleaseRecord
from flows.release import release
from tasks.records import variable_name
from tasks.retries import DELAYS
from testbed.scratch import (
    Scratch,
    app_psql,
    app_query,
    create_environment,
    lock_slots,
    remove_environment,
    served_versions,
    with_migration,
)
from tests.faults.conftest import Proxies
from tests.integration.conftest import task_states
from tests.support.faultproxy import LineRule, Rule
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration


@dataclass
class Fault:
    step: str
    what: str  # the dependency's failure, for the table
    arm: Callable[[Proxies, str, int | None], None]  # (proxies, environment, times)
    says: str  # what a permanent fault's message must name


def registry_rule(pattern: str) -> Callable[[Proxies, str, int | None], None]:
    return lambda p, _env, times: p.registry.rules.append(Rule(pattern, times))


def engine_rule(pattern: str) -> Callable[[Proxies, str, int | None], None]:
    return lambda p, _env, times: p.engine.rules.append(Rule(pattern, times))


def container_create(service: str) -> Callable[[Proxies, str, int | None], None]:
    def arm(p: Proxies, env: str, times: int | None) -> None:
        p.engine.rules.append(
            Rule(rf"^POST /v[\d.]+/containers/create\?name=fm-{env}-{service}-", times)
        )

    return arm


def refuse_session(name: str) -> Callable[[Proxies, str, int | None], None]:
    def arm(p: Proxies, _env: str, times: int | None) -> None:
        p.database.refuse[name] = times

    return arm


FAULTS = [
    Fault("verify", "registry answers 503 to its ping", registry_rule(r"^GET /v2/$"), "registry"),
    Fault("build", "engine answers 503 to the build", engine_rule(r"^POST /v[\d.]+/build"), "503"),
    Fault(
        "push",
        "registry answers 503 to layer uploads",
        registry_rule(r"^(POST|PATCH|PUT) /v2/.+/blobs/uploads"),
        "503",
    ),
    Fault(
        "backup",
        "database closes pg_dump's connection",
        refuse_session("flowmasters-backup"),
        "pg_dump",
    ),
    Fault(
        "migrate",
        "database closes the migrations' connection",
        refuse_session("flowmasters-migrate"),
        "exited 75",
    ),
    Fault(
        "deploy backend",
        "engine answers 503 to the backend's container create",
        container_create("backend"),
        "503",
    ),
    Fault(
        "deploy frontend",
        "engine answers 503 to the frontend's container create",
        container_create("frontend"),
        "503",
    ),
]
TRANSIENT_TIMES = 1
EDGE_ATTEMPTS = len(DELAYS) + 1  # the edge step's attempts (tasks/retries.retried)


def edge_reads(p: Proxies, env: str, times: int | None) -> None:
    p.admin.rules.append(
        LineRule(
            r"^show stat$",
            times=EDGE_ATTEMPTS if times is None else times,
            after=rf"^set server be_{re.escape(env)}_frontend/slot\d state maint$",
            skip=1,  # the frontend's deploy writes the config file from one more read
        )
    )


FAULTS.append(
    Fault(
        "edge",
        "HAProxy's admin socket closes the edge's reads unanswered",
        edge_reads,
        "closed the connection without answering `show stat`",
    )
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, proxies: Proxies) -> Iterator[Scratch]:
    scratch = create_environment(
        "it-step", tmp_path_factory.mktemp("step"), edit=proxies.through(checks_window=1)
    )
    first = release(scratch.name, "v0", str(with_migration(scratch, "v0")), return_state=True)
    assert first.is_completed(), first.message
    yield scratch
    proxies.clear()
    remove_environment(scratch.name, scratch.database)


def rows(env: Scratch, title: str) -> int:
    return int(app_query(f"SELECT count(*) FROM pages WHERE title = '{title}'", env.database))


CASES = [(f, kind) for f in FAULTS for kind in ("permanent", "transient")]


@pytest.mark.parametrize(("fault", "kind"), CASES, ids=[f"{f.step}-{kind}" for f, kind in CASES])
def test_a_fault_in_each_step(env, proxies, fault, kind):
    before = served_versions(env)
    title = f"written before the {kind} {fault.step} fault {time.time_ns()}"
    app_psql(f"INSERT INTO pages (title, body) VALUES ('{title}', 'x')", database=env.database)
    version = f"{kind}-{fault.step.replace(' ', '-')}"
    source = with_migration(env, version)
    fault.arm(proxies, env.name, None if kind == "permanent" else TRANSIENT_TIMES)
    proxies.admin.log.clear()
    started = time.monotonic()
    try:
        state = release(env.name, version, str(source), return_state=True)
    finally:
        took = time.monotonic() - started
        proxies.clear()

    now = served_versions(env)
    lost = 1 - rows(env, title)
    record = ReleaseRecord.model_validate(Variable.get(variable_name(env.name)))
    held = lock_slots(env.name)
    services = (now["frontend"], now["backend"])
    ends = (
        "old" if services == (before["frontend"], before["backend"])
        else "new" if services == (version, version)
        else "MIXED"
    )  # fmt: skip
    schema = "old" if now["schema"] == before["schema"] else "new"
    message = " ".join((state.message or "").split())
    MATRIX.append(
        Row(
            fault=f"{kind}: {fault.what}",
            step=fault.step,
            end_state=f"{'released' if state.is_completed() else 'failed'}; services {ends}, "
            f"schema {schema}",
            rows_lost=lost,
            recovered_s=took,
            note=(f"record {record.status}" if record.version == version else "no record written")
            + f"; lock {'free' if held == 0 else 'HELD'}"
            + ("" if state.is_completed() else f"; {message[:150]}"),
        )
    )
    assert lost == 0
    assert held == 0, "the release left its lock held"
    if kind == "permanent":
        assert not state.is_completed()
        assert fault.says.lower() in message.lower(), message
        assert ends == "old", f"{now} != {before}"
        if fault.step in ("verify", "build", "push", "backup", "migrate"):
            assert schema == "old", now  # after the migrations, they stay (backward compatible)
        assert record.status in ("failed", "rolled_back") or record.version != version, record
    else:
        assert state.is_completed(), state.message
        assert ends == "new", now
        assert now["schema"] > before["schema"], now
        assert record.status == "succeeded", record
    if fault.step == "edge":
        assert_the_edge_met_it(proxies, state, kind)


def assert_the_edge_met_it(proxies: Proxies, state: Any, kind: str) -> None:
    """The admin socket's fault fell on the edge step: as many reads went unanswered as the
    fault allowed, and a permanent one failed the edge task (not a deploy)."""
    unanswered = sum(faulted for _, faulted in proxies.admin.log)
    assert unanswered == (EDGE_ATTEMPTS if kind == "permanent" else TRANSIENT_TIMES), unanswered
    if kind == "permanent":
        tasks = task_states(state.state_details.flow_run_id)
        edge = [s for name, s in tasks.items() if name.startswith("update-edge")]
        assert "Failed" in edge, tasks


def test_a_clean_release_after_every_fault(env):
    state = release(
        env.name, "after-faults", str(with_migration(env, "after-faults")), return_state=True
    )
    assert state.is_completed(), state.message
    assert served_versions(env)["frontend"] == "after-faults"
