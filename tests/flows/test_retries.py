"""The steps' retry policy as Prefect runs it: transient failures are retried, the rest are not.

A real task run under the test server with the steps' own RETRIES; only the delays are made 0
(`with_options`), so that the test does not wait out the backoff.
"""

from __future__ import annotations

import pytest
from prefect import task

from domain.errors import ReleaseError, TransientError
from tasks.retries import RETRIES


def step_failing_with(errors: list[Exception]):
    """A step that raises each of `errors` in turn, then succeeds; counts its attempts."""
    attempts: list[int] = []

    @task(**RETRIES)
    def step() -> str:
        attempts.append(1)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return "done"

    return step.with_options(retry_delay_seconds=0, retry_jitter_factor=None), attempts


def run(step) -> object:
    return step(return_state=True)


def test_a_step_that_fails_transiently_is_retried_until_it_passes():
    step, attempts = step_failing_with([TransientError("registry restarting"), ConnectionError()])

    state = run(step)

    assert state.is_completed() and state.result() == "done"
    assert len(attempts) == 3


def test_a_release_error_fails_at_once():
    step, attempts = step_failing_with([ReleaseError("no Dockerfile")])

    state = run(step)

    assert state.is_failed()
    assert len(attempts) == 1


def test_retries_are_bounded():
    step, attempts = step_failing_with([TimeoutError("socket timed out")] * 10)

    state = run(step)

    assert state.is_failed()
    with pytest.raises(TimeoutError):
        state.result()
    assert len(attempts) == 4  # the first attempt and three retries
