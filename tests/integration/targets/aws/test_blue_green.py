"""ECS's own blue/green deployments through the AWS target, against moto (never a real account).

moto does not model ECS deployments at all, nor DescribeServiceDeployments: `FakeBlueGreen`
(tests/support/moto_world.py) plays ECS's part on moto's service and real moto ELBv2 resources (a
production listener rule with weighted blue and green target groups), and says so.
"""

from __future__ import annotations

import pytest

from domain.errors import ReleaseError
from tests.support.moto_world import FakeBlueGreen, moto_service, no_secret

pytestmark = pytest.mark.integration


@pytest.fixture
def blue_green(monkeypatch, aws, world) -> FakeBlueGreen:
    return FakeBlueGreen(monkeypatch, aws, "backend")


def test_a_deploy_is_done_once_traffic_shifted_and_the_previous_revision_still_runs(
    target, blue_green, world, aws
):
    before = target.live_revision("backend")
    image = f"{world['repos']['backend']}:2.0.0"

    result = no_secret(target.deploy_service("backend", image, "2.0.0", keep_previous=True))

    assert result.changed and result.previous == before
    assert "production traffic shifted (BAKE_TIME)" in result.detail
    assert blue_green.deployment["lifecycleStage"] == "BAKE_TIME", "ECS's bake was not waited out"
    assert blue_green.serving == blue_green.groups["green"]
    previous = moto_service("backend").deployments[1]
    assert previous["taskDefinition"] == before.revision_id and previous["runningCount"] > 0
    assert "bake time (15 min)" in target.retire_previous("backend")
    # The edge checks the group the production rule serves (green), not the configured one.
    assert "backend 1/1 targets healthy" in target.update_edge([result]).load_balancer
    aws("elbv2").deregister_targets(
        TargetGroupArn=blue_green.groups["green"], Targets=[{"Id": "100.64.1.21"}]
    )
    with pytest.raises(ReleaseError, match=f"no healthy target in {blue_green.groups['green']}"):
        target.update_edge([result])


def test_a_switch_back_during_the_bake_shifts_traffic_and_starts_no_task(target, blue_green, world):
    before = target.live_revision("backend")
    target.deploy_service("backend", f"{world['repos']['backend']}:2.1.0", "2.1.0", True)
    started = blue_green.started

    back = target.deploy_service("backend", before.image, before.version, keep_previous=True)

    assert blue_green.stopped == ["ROLLBACK"]
    assert blue_green.started == started, "no task was started to go back"
    assert back.changed and back.current == before
    assert blue_green.serving == blue_green.groups["blue"]
    assert target.live_revision("backend") == before
