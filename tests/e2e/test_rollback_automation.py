"""A broken release to `sandbox` switches back by itself, with no failed request; the
automation's rollback, triggered by the same failure, then finds nothing left to change."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import docker
import pytest
from prefect.variables import Variable

from domain.records import ReleaseRecord
from tasks.records import variable_name
from testbed.wrk import Wrk
from tests.e2e.conftest import (
    SANDBOX,
    SANDBOX_FRONTEND,
    code,
    new_version,
    rolled_back_to,
    served_version,
    start,
    wait_final,
)

pytestmark = [pytest.mark.e2e, SANDBOX]

VERSION_IN_PAGE = '<span id="version">([^<]+)</span>'


def running(version: str) -> set[str]:
    """Ids of sandbox's running containers of `version`."""
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        labels = ["flowmasters.environment=sandbox", f"flowmasters.version={version}"]
        return {c.id for c in client.containers.list(filters={"label": labels})}
    finally:
        client.close()


def test_broken_release_switches_back_by_itself_without_failed_requests():
    good = new_version("e2e-good")
    assert wait_final(
        start("release/sandbox", version=good, source=code(good)).id
    ).state.is_completed()
    assert served_version(SANDBOX_FRONTEND) == good
    good_containers = running(good)
    assert len(good_containers) == 2
    since = datetime.now(UTC)

    # wrk from its own process, 10 connections each pausing 100 ms: the page goes through the
    # frontend to the backend's pages. Health turns to 500 five seconds after start: the deploy
    # passes, the smoke checks fail.
    with Wrk(
        SANDBOX_FRONTEND + "/",
        connections=10,
        version_pattern=VERSION_IN_PAGE,
        flag_text="content unavailable",
    ) as load:
        broken = wait_final(
            start(
                "release/sandbox",
                version=f"{good}-broken",
                source=code(f"{good}-broken"),
                build_args={"BREAK_AFTER_SECONDS": "5"},
            ).id
        )
        assert broken.state.is_failed()
        # When the release run reports, it has switched back already: no rollback run yet.
        served_when_failed = served_version(SANDBOX_FRONTEND)
        rollbacks = rolled_back_to(good, since)

    result = load.stop()
    print(f"\nbroken release and its rollback run(s), under load: {result.summary()}")
    assert served_when_failed == good
    record = ReleaseRecord.model_validate(Variable.get(variable_name("sandbox")))
    assert record.switched_back
    assert all(r.state.is_completed() for r in rollbacks), [r.state for r in rollbacks]
    # Neither the switch back nor the rollback runs started anything: the same containers serve.
    assert running(good) == good_containers
    assert running(f"{good}-broken") == set()
    assert result.failed == 0, result.summary()
    assert result.rate >= 20, result.summary()
    assert result.versions.get(f"{good}-broken", 0) > 0, "the broken version served meanwhile"
