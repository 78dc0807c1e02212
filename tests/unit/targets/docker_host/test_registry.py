"""What the registry's requests say when the registry cannot be reached, and what they retry."""

import logging

import httpx
import pytest

from domain.errors import TransientError
from targets.docker_host.push import Uploader
from targets.docker_host.registry import RegistryClient, send_registry_request
from targets.request_retries import REQUEST_DELAYS

REGISTRY = "127.0.0.1:5000"
UNREACHABLE = "registry 127.0.0.1:5000 is unreachable (ConnectError: Connection refused)"
START_IT = "start it with `scripts/stack.sh up`"


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("Connection refused", request=request)


@pytest.fixture
def one_attempt(monkeypatch):
    """No retries, so an unreachable registry fails at once instead of after the waits."""
    monkeypatch.setattr("targets.request_retries.REQUEST_DELAYS", ())


def test_a_read_from_an_unreachable_registry_says_to_start_it(monkeypatch, one_attempt):
    def get(url: str, **kwargs) -> httpx.Response:
        return refused(httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)

    with pytest.raises(TransientError) as raised:
        RegistryClient(REGISTRY).ping()

    assert str(raised.value) == f"{UNREACHABLE}; {START_IT}"


def test_a_push_to_an_unreachable_registry_says_what_it_was_pushing(one_attempt):
    uploader = Uploader(REGISTRY, None)
    uploader.close()
    uploader.http = httpx.Client(
        base_url=f"http://{REGISTRY}", transport=httpx.MockTransport(refused)
    )

    with pytest.raises(TransientError) as raised:
        uploader.has_blob("flowmasters/backend", "sha256:abc")
    uploader.close()

    assert str(raised.value) == (
        f"{UNREACHABLE} while pushing (HEAD /v2/flowmasters/backend/blobs/sha256:abc); {START_IT}"
    )


class Answers:
    """A registry's transport answering from a list, one per request: an exception is raised, a
    status answered."""

    def __init__(self, *answers: int | Exception):
        self.answers = list(answers)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)


def get_v2(answers: Answers, slept: list[float], during: str | None = None) -> httpx.Response:
    with httpx.Client(
        base_url=f"http://{REGISTRY}", transport=httpx.MockTransport(answers)
    ) as http:
        return send_registry_request(
            REGISTRY, "GET /v2/", lambda: http.get("/v2/"), during=during, sleep=slept.append
        )


def test_a_503_is_retried_and_logged_under_the_requests_name(caplog):
    answers, slept = Answers(503, 200), []

    with caplog.at_level(logging.WARNING):
        assert get_v2(answers, slept).status_code == 200

    assert answers.requests == 2 and len(slept) == 1
    assert "registry 127.0.0.1:5000: GET /v2/: answered 503; attempt 2 of 5 in" in caplog.text


def test_a_5xx_on_every_attempt_is_the_callers_to_judge():
    answers, slept = Answers(503, 503, 503, 503, 502), []

    assert get_v2(answers, slept).status_code == 502
    assert answers.requests == len(REQUEST_DELAYS) + 1 and len(slept) == len(REQUEST_DELAYS)


@pytest.mark.parametrize(
    ("during", "message"),
    [
        (None, f"{UNREACHABLE}; {START_IT}"),
        ("pushing (GET /v2/)", f"{UNREACHABLE} while pushing (GET /v2/); {START_IT}"),
    ],
)
def test_a_registry_unreachable_on_every_attempt_says_to_start_it(during, message):
    answers = Answers(*[httpx.ConnectError("Connection refused")] * (len(REQUEST_DELAYS) + 1))

    with pytest.raises(TransientError) as raised:
        get_v2(answers, [], during=during)

    assert str(raised.value) == message
    assert answers.requests == len(REQUEST_DELAYS) + 1
