"""Read-only questions to the OCI registry (distribution API v2) that docker-py cannot answer,
and how each request to it is sent, by this client and by a push (targets/docker_host/push.py).

Each request is retried where it fails (targets/request_retries.py): a 5xx or a refused connection is
retried after a short wait, so one flaky answer is not a failed verify or push check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from domain.errors import TransientError
from targets.images import MANIFEST_TYPES, TaggedImage
from targets.request_retries import status_failure, with_retries


def send_registry_request(
    registry: str,
    what: str,
    request: Callable[[], httpx.Response],
    during: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """`request()`, retried where it fails; `what` names it in the log ("GET /v2/"). The last
    answer is returned even if it is a 5xx: the caller judges it. A registry still unreachable
    after the retries is a TransientError that says how to start it and, if given, what the
    request was part of (`during`: "pushing (PUT /v2/...)")."""
    try:
        return with_retries(
            request,
            f"registry {registry}: {what}",
            failed=lambda response: status_failure(response.status_code),
            transient=(httpx.TransportError,),
            sleep=sleep,
        )
    except httpx.TransportError as exc:
        part_of = f" while {during}" if during else ""
        raise TransientError(
            f"registry {registry} is unreachable ({type(exc).__name__}: {exc}){part_of}; "
            "start it with `scripts/stack.sh up`"
        ) from exc


class RegistryClient:
    def __init__(self, registry: str, auth: tuple[str, str] | None = None, timeout: float = 10):
        self.base = f"http://{registry}"
        self.registry = registry
        self.auth = auth
        self.timeout = timeout

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return send_registry_request(
            self.registry,
            f"GET {path}",
            lambda: httpx.get(self.base + path, auth=self.auth, timeout=self.timeout, **kwargs),
        )

    def ping(self) -> None:
        response = self._get("/v2/")
        if response.status_code not in (200, 401):
            raise TransientError(f"registry {self.registry} answered {response.status_code}")

    def manifest(self, repository: str, tag: str) -> TaggedImage | None:
        """The manifest under `tag`, or None if the tag does not exist."""
        response = self._get(
            f"/v2/{repository}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TransientError(
                f"registry {self.registry}: reading {repository}:{tag} gave {response.status_code}"
            )
        return TaggedImage(
            digest=response.headers["Docker-Content-Digest"],
            config_digest=response.json()["config"]["digest"],
        )
