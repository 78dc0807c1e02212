"""Payload CMS as an editor uses it: its REST API (the real stack's backend)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

# The real stack's versions, the same in every module that releases it. The same version of the
# same code is the same image, so the modules of one run build each once: the first `next build`s
# it, the next finds every layer in the engine's cache. They are one group (one worker runs them
# one after the other, tests/support/schedule.py), so the second does not build it beside the first.
V1, V2 = "rs-v1", "rs-v2"
REAL_STACK = pytest.mark.xdist_group("real-stack")


class Editor:
    """An editor using Payload's REST API: the first user, then uploads and pages."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.headers: dict[str, str] = {}
        self.email = f"editor-{uuid.uuid4().hex[:8]}@example.invalid"
        self.password = f"pw-{uuid.uuid4().hex}"

    def sign_up(self) -> None:
        """The first user, through the API (an empty database only)."""
        body = {"email": self.email, "password": self.password}
        answer = httpx.post(f"{self.base}/api/users/first-register", json=body, timeout=30)
        answer.raise_for_status()
        self.headers = {"Authorization": f"JWT {answer.json()['token']}"}

    def log_in(self) -> None:
        body = {"email": self.email, "password": self.password}
        answer = httpx.post(f"{self.base}/api/users/login", json=body, timeout=30)
        answer.raise_for_status()
        self.headers = {"Authorization": f"JWT {answer.json()['token']}"}

    def upload(self, name: str, content: bytes) -> str:
        answer = httpx.post(
            f"{self.base}/api/media",
            headers=self.headers,
            files={"file": (name, content, "image/png")},
            data={"_payload": '{"alt": "the logo"}'},
            timeout=30,
        )
        assert answer.status_code == 201, f"upload: {answer.status_code} {answer.text[:2000]}"
        return answer.json()["doc"]["filename"]

    def media(self, filename: str) -> bytes:
        answer = httpx.get(f"{self.base}/api/media/file/{filename}", timeout=30)
        answer.raise_for_status()
        return answer.content

    def add_page(self, **fields: str) -> dict:
        answer = httpx.post(f"{self.base}/api/pages", headers=self.headers, json=fields, timeout=30)
        answer.raise_for_status()
        return answer.json()["doc"]


def until_shown(url: str, text: str, within: float = 15) -> float:
    """Seconds until `text` is on the page at `url` (the public site renders pages incrementally
    and its CDN keeps them for their s-maxage: a change is not there at once). Fails after
    `within` seconds, naming what the page showed."""
    started = time.monotonic()
    while True:
        answer = httpx.get(url, timeout=30)
        if answer.status_code == 200 and text in answer.text:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(
                f"{text!r} not on {url} within {within:.0f}s: {answer.status_code} "
                f"{answer.text[:300]!r}"
            )
        time.sleep(0.1)
