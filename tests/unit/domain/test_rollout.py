import pytest
from pydantic import ValidationError

from domain.rollout import CanaryStep, RolloutSpec, refuse_canary


class TestRolloutSpec:
    def test_blue_green_is_the_default(self):
        assert RolloutSpec().canary is False

    def test_a_canary_of_two_steps_and_a_pause(self):
        spec = RolloutSpec.model_validate(
            {
                "strategy": "canary",
                "steps": [
                    {"weight": 10, "seconds": 60},
                    {"pause": True, "seconds": 3600},
                    {"weight": 50, "seconds": 60},
                ],
            }
        )

        assert spec.canary and spec.total_seconds() == 120
        assert spec.steps[1] == CanaryStep(pause=True, seconds=3600)

    @pytest.mark.parametrize(
        "step", [{"seconds": 60}, {"weight": 10, "pause": True}, {"weight": 100}, {"weight": 0}]
    )
    def test_a_step_is_a_weight_below_100_or_a_pause(self, step):
        with pytest.raises(ValidationError):
            CanaryStep.model_validate(step)


class TestRefuseCanary:
    def test_a_breaking_migration_refuses_the_canary_saying_what_to_do(self):
        why = refuse_canary(["backend"], ("3", "4"), ("4",))

        assert why is not None
        assert "pending migrations ['4'] are declared not backward compatible" in why
        assert "blue-green" in why and "split the migration" in why

    def test_backward_compatible_migrations_allow_it(self):
        assert refuse_canary(["backend"], ("3",), ("4",)) is None

    def test_blue_green_releases_are_never_refused(self):
        assert refuse_canary([], ("4",), ("4",)) is None
