"""Read-only questions to the OCI registry (distribution API v2) that docker-py cannot answer.

Each request is retried where it fails (targets/request_retries.py): a 5xx or a refused connection is
retried after a short wait, so one flaky answer is not a failed verify or push check."""

from __future__ import annotations

import httpx

from domain.errors import TransientError
from targets.images import MANIFEST_TYPES, TaggedImage
from targets.request_retries import status_failure, with_retries


class RegistryClient:
    def __init__(self, registry: str, auth: tuple[str, str] | None = None, timeout: float = 10):
        self.base = f"http://{registry}"
        self.registry = registry
        self.auth = auth
        self.timeout = timeout

    def _get(self, path: str, **kwargs) -> httpx.Response:
        try:
            return with_retries(
                lambda: httpx.get(self.base + path, auth=self.auth, timeout=self.timeout, **kwargs),
                f"registry {self.registry}: GET {path}",
                failed=lambda response: status_failure(response.status_code),
                transient=(httpx.TransportError,),
            )
        except httpx.TransportError as exc:
            raise TransientError(
                f"registry {self.registry} is unreachable ({exc.__class__.__name__}: {exc}); "
                "start it with `scripts/stack.sh up`"
            ) from exc

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
