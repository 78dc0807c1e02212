import pytest

from domain.traffic import (
    Reading,
    Traffic,
    TrafficBounds,
    Verdict,
    broken_already,
    judge_traffic,
    traffic_between,
    window_mean,
)

BOUNDS = TrafficBounds(max_error_share=0.01, max_latency_ratio=1.5, min_requests=50)


def moving_average(start: float, answers: list[float], weight: int = 1024) -> float:
    """HAProxy's running mean, each answer moving it by 1/weight of the difference."""
    for value in answers:
        start += (value - start) / weight
    return start


class TestWindowMean:
    def test_the_windows_mean_comes_out_of_an_average_holding_older_answers(self):
        # The slot's average still holds 2 s answers of the version that ran there before.
        after = moving_average(2.0, [0.3] * 400)

        assert window_mean(2.0, after, 400) == pytest.approx(0.3)

    def test_no_answers_no_mean(self):
        assert window_mean(0.1, 0.1, 0) is None


class TestTrafficBetween:
    def test_counts_the_answers_and_the_5xx_between_two_readings(self):
        before = Reading(0, {"2xx": 100, "5xx": 1, "4xx": 3}, 0.010)
        after = Reading(60, {"2xx": 280, "5xx": 21, "4xx": 3}, 0.010)

        assert traffic_between(before, after) == Traffic(200, 20, pytest.approx(0.010))

    def test_after_a_reload_the_figures_are_those_since_it(self):
        # HAProxy reloaded in the window: its new process counts from zero, and its average
        # starts from zero too (30 answers of 0.2 s each moved it from 0).
        after = Reading(9, {"2xx": 20, "5xx": 10}, moving_average(0.0, [0.2] * 30))

        traffic = traffic_between(Reading(0, {"2xx": 500, "5xx": 0}, 0.01), after)

        assert (traffic.requests, traffic.errors) == (30, 10)
        assert traffic.latency_seconds == pytest.approx(0.2)


class TestJudgeTraffic:
    def test_a_canary_failing_one_request_in_twenty_breaks_the_error_bound(self):
        verdict = judge_traffic("v2", Traffic(200, 10, 0.01), Traffic(1800, 0, 0.01), BOUNDS)

        assert verdict == Verdict(
            False,
            "error share 5.0% above the bound 1.0% (v2: 200 requests, 10 5xx (5.0%), mean 10 ms; "
            "the stable version: 1800 requests, 0 5xx (0.0%), mean 10 ms)",
        )

    def test_a_canary_300_ms_slower_breaks_the_latency_bound(self):
        verdict = judge_traffic("v2", Traffic(250, 0, 0.320), Traffic(900, 0, 0.020), BOUNDS, "v1")

        assert verdict.passed is False
        assert verdict.reason.startswith("mean latency 320 ms above 1.5 x v1's 20 ms")

    def test_tens_of_milliseconds_slower_on_a_busy_machine_is_noise(self):
        # Seen in CI: a new container's first answers at 97 ms against the stable's 24 ms.
        verdict = judge_traffic("v2", Traffic(250, 0, 0.097), Traffic(900, 0, 0.024), BOUNDS)

        assert verdict.passed is True

    def test_latencies_are_compared_only_past_their_own_minimum_of_answers(self):
        # 100 answers: HAProxy's whole-millisecond average leaves the mean off by about 10 ms.
        verdict = judge_traffic("v2", Traffic(100, 0, 0.320), Traffic(900, 0, 0.020), BOUNDS)

        assert verdict.passed is True

    def test_errors_the_stable_has_as_much_of_are_not_the_canarys(self):
        verdict = judge_traffic("v2", Traffic(100, 5, 0.01), Traffic(900, 90, 0.01), BOUNDS)

        assert verdict.passed is True

    def test_too_few_requests_are_not_judged(self):
        verdict = judge_traffic("v2", Traffic(12, 12, 0.01), Traffic(900, 0, 0.01), BOUNDS)

        assert verdict == Verdict(
            None, "v2: 12 requests, fewer than the 50 needed to judge by traffic"
        )

    def test_no_figures_are_never_a_pass(self):
        assert judge_traffic("v2", None, None, BOUNDS).passed is None

    def test_a_healthy_canary_passes_with_both_versions_numbers(self):
        verdict = judge_traffic("v2", Traffic(100, 0, 0.012), Traffic(900, 1, 0.011), BOUNDS, "v1")

        assert verdict == Verdict(
            True,
            "v2: 100 requests, 0 5xx (0.0%), mean 12 ms; v1: 900 requests, 1 5xx (0.1%), mean 11 ms",
        )


class TestBrokenAlready:
    def test_a_version_failing_every_request_is_stopped_before_the_minimum(self):
        # 10 requests a second at 10 %, for a 30 s step: about 300 expected; 10 of 10 failed.
        verdict = broken_already("v3", Traffic(10, 10, 0.01), BOUNDS, expected_requests=300)

        assert verdict == Verdict(
            False,
            "error share already above the bound 1.0% for the step: 10 5xx of 10 requests so "
            "far, of ~300 expected (v3: 10 requests, 10 5xx (100.0%), mean 10 ms)",
        )

    def test_the_stable_versions_numbers_are_beside_the_canarys(self):
        verdict = broken_already(
            "v3", Traffic(10, 10, 0.01), BOUNDS, 300, Traffic(90, 0, 0.01), "stable v2"
        )

        assert verdict is not None
        assert verdict.reason.endswith("; stable v2: 90 requests, 0 5xx (0.0%), mean 10 ms)")

    def test_a_stray_error_waits_for_the_rest_of_the_step(self):
        assert broken_already("v3", Traffic(10, 1, 0.01), BOUNDS, expected_requests=300) is None

    def test_past_the_minimum_the_full_judgement_decides(self):
        assert broken_already("v3", Traffic(60, 60, 0.01), BOUNDS, expected_requests=300) is None
