import logging

import pytest

from targets.request_retries import REQUEST_DELAYS, request_delays, status_failure, with_retries


class Flaky:
    """Answers from a list, one per call: an exception is raised, anything else returned."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def call(flaky: Flaky, slept: list[float]):
    return with_retries(
        flaky,
        "registry 127.0.0.1:5000: GET /v2/",
        failed=status_failure,
        transient=(ConnectionError,),
        sleep=slept.append,
    )


def test_a_503_then_a_200_costs_one_short_wait(caplog):
    slept: list[float] = []
    flaky = Flaky(503, 200)

    with caplog.at_level(logging.WARNING):
        assert call(flaky, slept) == 200

    assert flaky.calls == 2 and len(slept) == 1 and slept[0] <= REQUEST_DELAYS[0] * 1.5
    assert "registry 127.0.0.1:5000: GET /v2/: answered 503; attempt 2 of 5 in" in caplog.text


def test_a_refused_connection_is_retried_like_a_503():
    slept: list[float] = []

    assert call(Flaky(ConnectionError("refused"), 200), slept) == 200
    assert len(slept) == 1


def test_retries_are_bounded_and_the_last_answer_or_error_is_the_callers():
    slept: list[float] = []
    assert call(Flaky(503, 503, 503, 503, 502), slept) == 502
    assert len(slept) == len(REQUEST_DELAYS)

    with pytest.raises(ConnectionError):
        call(Flaky(*[ConnectionError("refused")] * (len(REQUEST_DELAYS) + 1)), [])


def test_an_answer_that_cannot_pass_by_itself_is_not_retried():
    slept: list[float] = []
    flaky = Flaky(404)

    assert call(flaky, slept) == 404
    assert flaky.calls == 1 and slept == []


def test_the_waits_spread_around_their_schedule():
    n = len(REQUEST_DELAYS)
    assert request_delays([0.5] * n) == list(REQUEST_DELAYS)
    assert request_delays([0.0] * n) == [d * 0.5 for d in REQUEST_DELAYS]
    assert max(request_delays([0.999] * n)) < REQUEST_DELAYS[-1] * 1.5
