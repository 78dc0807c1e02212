"""The Docker host's CDN (Varnish, between HAProxy's public frontends and the slots) through
releases of the stand-ins: what it keeps and what it never keeps, that a release is seen through
it at once, and what the edge step bans. (The CDN going away during a release:
tests/faults/test_cdn_outage.py.)

The stand-in frontend's /cdn/<case> answers with the caching headers of each case and counts its
renders, so a test tells a cached answer (the same render) from a fresh one. Nothing is faked:
the suite's Varnish, HAProxy, engine and Prefect server.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flows.release import release
from testbed.scratch import create_environment, new_code, remove_environment
from tests.integration.conftest import TestEnvironment, edge_row

REPO = Path(__file__).resolve().parents[3]


def run(env: TestEnvironment, version: str):
    return release(env.name, version, str(new_code(env.source, version)), return_state=True)


def get(env: TestEnvironment, path: str, **headers: str) -> httpx.Response:
    answer = httpx.get(env.url("frontend") + path, headers=headers, timeout=10)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
    return answer


def render(answer: httpx.Response) -> tuple[str, int]:
    body = answer.json()
    return body["version"], body["render"]


def test_v1_goes_live_behind_the_cdn_and_the_edge_says_what_it_banned(
    environment: TestEnvironment,
):
    state = run(environment, "v1")

    assert state.is_completed(), state.message
    assert "CDN: banned every page of backend, frontend (all versions)" in edge_row(
        environment.name
    )


def test_what_the_app_marks_shared_is_kept(environment: TestEnvironment):
    first, second = get(environment, "/cdn/shared"), get(environment, "/cdn/shared")

    assert render(second) == render(first), "the second answer was rendered again"
    assert second.headers["x-cache"] == "HIT"


@pytest.mark.parametrize("case", ["private", "no-store", "cookie", "plain"])
def test_what_is_private_or_not_marked_shared_is_never_kept(environment: TestEnvironment, case):
    answers = [get(environment, f"/cdn/{case}") for _ in range(3)]

    assert len({render(a) for a in answers}) == 3, f"/cdn/{case} came from the cache"
    assert all(a.headers["x-cache"] == "MISS" for a in answers)


@pytest.mark.parametrize(
    "credentials", [{"Cookie": "session=someone"}, {"Authorization": "Bearer someone"}]
)
def test_a_request_with_credentials_is_never_answered_from_the_cache_nor_stored(
    environment: TestEnvironment, credentials
):
    """The shared page is in the cache; a request with a cookie or a token goes to the origin
    (its answer may be that person's), and what it gets is never stored for anyone else."""
    cached = get(environment, "/cdn/shared")
    personal = [get(environment, "/cdn/shared", **credentials) for _ in range(2)]
    anonymous = get(environment, "/cdn/shared")

    assert all(a.headers["x-cache"] == "MISS" for a in personal)
    assert len({render(a) for a in personal} | {render(cached)}) == 3
    assert render(anonymous) == render(cached)


def test_the_switch_is_seen_through_the_cdn_at_once(environment: TestEnvironment):
    """v1's shared answer is in the cache for another minute; the moment v2 is live, the CDN
    answers v2 (it keys answers by the live version), and v1's answers are banned."""
    assert render(get(environment, "/cdn/shared"))[0] == "v1"

    state = run(environment, "v2")

    assert state.is_completed(), state.message
    assert render(get(environment, "/cdn/shared"))[0] == "v2"
    assert get(environment, "/").text.count("v2") >= 1


def test_a_wrong_cdn_secret_is_refused_before_anything_changes(tmp_path: Path):
    """The CDN block's secret is not Varnish's: verify says so and what to do, and the release
    builds, starts and switches nothing (the edge step would have met it after the switch)."""
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret")

    def edit(_name: str, description: dict) -> None:
        description["target"]["cdn"]["password_file"] = str(wrong)

    scratch = create_environment("it-cdnsecret", tmp_path / "envs", edit=edit)
    try:
        env = TestEnvironment(scratch.name, scratch.source, scratch.description)
        state = run(env, "v1")

        assert state.is_failed()
        assert "cdn: the CDN's admin port" in state.message
        assert "refused the secret" in state.message and "register the environment" in state.message
        assert "not-the-secret" not in state.message
        assert env.containers() == []
    finally:
        remove_environment(scratch.name, scratch.database)
