"""Failures a user can cause: each is named, with what to do, before anything changes."""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from deployments.register import register_environment
from domain.errors import ReleaseError
from flows.release import release
from testbed.scratch import make_description, remove_environment


@pytest.fixture
def broken_environment(request):
    """An environment whose registry or database points at a closed loopback port."""
    name = f"it-{uuid.uuid4().hex[:6]}"
    description = make_description(name, "flowmasters_local")
    what = request.param
    if what == "registry":
        description["target"]["registry"] = "127.0.0.1:1"
    else:
        description["target"]["database"]["port"] = 1
    register_environment(name, description)
    yield name, what
    remove_environment(name, database=None)


@pytest.mark.parametrize("broken_environment", ["registry", "database"], indirect=True)
def test_unreachable_dependency_is_named_before_anything_runs(broken_environment, tmp_path):
    name, what = broken_environment

    state = release(name, "v1", return_state=True)

    assert state.is_failed()
    message = state.message
    assert f"environment '{name}' is not ready" in message
    assert f"{what}:" in message and "127.0.0.1:1" in message
    assert "scripts/stack.sh up" in message
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    verify = next(r for r in runs if r.name.startswith("verify-infrastructure"))
    # An unreachable dependency may be restarting: verify was retried (3 times) before it failed.
    assert verify.run_count == 4


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(ReleaseError) as error:
        release("no-such-env", "v1")
    assert "unknown environment 'no-such-env'" in str(error.value)
    assert "local" in str(error.value)
    assert "deployments/environments/no-such-env.yaml" in str(error.value)
