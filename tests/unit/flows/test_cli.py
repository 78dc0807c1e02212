"""The command's requests to the Prefect server: which answers are retried, how long it waits,
and that starting a run twice (a retry after a lost answer) names the same run. The server here
is httpx's MockTransport, a stand-in that answers from a list; the real server behind a fault
proxy is tests/faults/test_prefect_api.py."""

from __future__ import annotations

import json

import httpx
import pytest

from flows import cli
from flows.cli import RETRY_DELAYS, Server, answer_failure, retry_delays, waiting_for


def test_retry_delays_stay_within_half_of_the_plan_either_way():
    n = len(RETRY_DELAYS)
    assert retry_delays([0.0] * n) == [d * 0.5 for d in RETRY_DELAYS]
    assert retry_delays([0.5] * n) == list(RETRY_DELAYS)
    assert sum(retry_delays([0.0] * n)) > 30  # a server's restart (14 s here) even at the least
    assert sum(retry_delays([0.999] * n)) < 100  # not a hang


@pytest.mark.parametrize(
    ("status", "retried"), [(200, False), (404, False), (500, False), (502, True), (503, True)]
)
def test_which_answers_are_retried(status, retried):
    answer = httpx.Response(status)
    assert (answer_failure(answer) is not None) == retried


def test_a_dropped_connection_is_retried_a_bug_is_not():
    server, (seen, waits) = server_answering(
        [httpx.ConnectError("refused"), httpx.UnsupportedProtocol("ftp"), httpx.Response(200)]
    )
    assert server.request("GET", "/health").status_code == 200
    assert (len(seen), len(waits)) == (3, 2)

    server, (seen, waits) = server_answering([httpx.DecodingError("bad"), httpx.Response(200)])
    with pytest.raises(httpx.DecodingError):
        server.request("GET", "/health")
    assert (len(seen), waits) == (1, [])


def server_answering(answers: list[httpx.Response | Exception]) -> tuple[Server, list]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    waits: list[float] = []
    server = Server("http://127.0.0.1:1/api", sleep=waits.append)
    server.client = httpx.Client(
        base_url="http://127.0.0.1:1/api", transport=httpx.MockTransport(handler)
    )
    return server, [seen, waits]


def test_a_run_is_started_once_through_503s_and_a_dropped_answer(capsys):
    run = {"id": "r1", "name": "clever-fox"}
    server, (seen, waits) = server_answering(
        [httpx.Response(503), httpx.ReadError("reset"), httpx.Response(201, json=run)]
    )
    assert server.start("d1", {"environment": "local"}) == run
    keys = {json.loads(r.content)["idempotency_key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1, keys
    assert len(waits) == 2
    err = capsys.readouterr().err
    assert "(POST /deployments/d1/create_flow_run): answered 503; attempt 2 of 12" in err
    assert "ReadError: reset" in err


def test_a_server_that_stays_away_fails_the_command_after_the_last_attempt():
    server, (seen, waits) = server_answering([httpx.Response(503)] * (len(RETRY_DELAYS) + 1))
    with pytest.raises(httpx.HTTPStatusError):
        server.flow_run("r1")
    assert len(seen) == len(RETRY_DELAYS) + 1 and len(waits) == len(RETRY_DELAYS)


def test_an_answer_that_is_an_error_is_not_retried():
    server, (seen, waits) = server_answering([httpx.Response(404), httpx.Response(200)])
    assert server.deployment_id("release/none") is None
    assert len(seen) == 1 and waits == []


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ({"type": "PAUSED", "name": "Suspended"}, "approval"),
        ({"type": "SCHEDULED", "name": "AwaitingConcurrencySlot"}, "AwaitingConcurrencySlot"),
        ({"type": "SCHEDULED", "name": "Late"}, "scripts/stack.sh up"),
        ({"type": "RUNNING", "name": "Running"}, None),
        ({"type": "PENDING", "name": "Pending"}, None),
    ],
)
def test_a_run_that_waits_says_what_for(state, said):
    told = waiting_for(state)
    assert (told is None) if said is None else (said in told)


def test_the_addresses_printed_at_the_end_name_the_monitoring(capsys, monkeypatch):
    monkeypatch.setenv("FM_PROMETHEUS_PORT", "9090")
    cli.print_addresses(
        [{"name": "backend", "public_url": "http://127.0.0.1:8081", "admin_path": "/admin"}]
    )

    assert capsys.readouterr().out.splitlines() == [
        "backend: http://127.0.0.1:8081",
        "backend admin: http://127.0.0.1:8081/admin",
        "monitoring (Prometheus): http://127.0.0.1:9090",
    ]
