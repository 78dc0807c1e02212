"""Containers of the Docker-host target: labelled, host-networked, found by label.

Every container the target creates carries `flowmasters.*` labels, so the live and kept revisions of
a service are a label query, and pruning never touches anything else on the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import docker
import docker.errors
import httpx
from docker.models.containers import Container

from domain.errors import ReleaseError

LABEL = "flowmasters"


@dataclass(frozen=True)
class KeptContainer:
    """What pruning decides on: enough to sort and to protect the live one."""

    id: str
    created: str
    running: bool


def labels(environment: str, service: str, version: str, slot: int) -> dict[str, str]:
    return {
        f"{LABEL}.managed": "true",
        f"{LABEL}.environment": environment,
        f"{LABEL}.service": service,
        f"{LABEL}.version": version,
        f"{LABEL}.slot": str(slot),
    }


def container_name(environment: str, service: str, version: str, slot: int) -> str:
    return f"fm-{environment}-{service}-{version}-s{slot}"


def find(
    client: docker.DockerClient, environment: str, service: str, slot: int | None = None
) -> list[Container]:
    filters = [f"{LABEL}.environment={environment}", f"{LABEL}.service={service}"]
    if slot is not None:
        filters.append(f"{LABEL}.slot={slot}")
    return client.containers.list(all=True, filters={"label": filters})


def find_running(client: docker.DockerClient, environment: str) -> list[Container]:
    """The environment's running containers, every service and slot."""
    return client.containers.list(filters={"label": f"{LABEL}.environment={environment}"})


def created_key(created: str) -> str:
    """Docker's `Created` with the fraction padded to 9 digits, so strings sort by time.

    The engine trims trailing zeros ("...:45.1Z" vs "...:45.123456789Z").
    """
    stamp = created.rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def to_prune(kept: Sequence[KeptContainer], keep: int) -> list[str]:
    """Ids of stopped containers beyond the newest `keep` ones; running ones are never pruned."""
    stopped = sorted(
        (c for c in kept if not c.running), key=lambda c: created_key(c.created), reverse=True
    )
    return [c.id for c in stopped[keep:]]


def wait_healthy(
    container: Container,
    url: str,
    timeout: float,
    log: Callable[[str], None],
) -> float:
    """Poll `url` until it answers 200; fail early if the container exits. Returns seconds taken."""
    started = time.monotonic()
    next_note = started + 5
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        container.reload()
        # With a restart policy, a crashing container shows as "restarting" or running again
        # with a restart count: either way it exited before it became healthy.
        if container.status in ("exited", "dead", "restarting") or container.attrs.get(
            "RestartCount"
        ):
            code = container.attrs["State"].get("ExitCode")
            raise ReleaseError(
                f"{container.name} exited with code {code} before it became healthy; "
                f"its last log lines:\n{tail(container)}"
            )
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = exc.__class__.__name__
        if time.monotonic() > next_note:
            log(f"{container.name}: waiting for {url} to answer 200 (last: {last})")
            next_note += 5
        time.sleep(0.3)
    raise ReleaseError(
        f"{container.name} did not become healthy within {timeout:.0f}s at {url} "
        f"(last: {last}); its last log lines:\n{tail(container)}"
    )


def answers(url: str, timeout: float = 2) -> bool:
    """One health probe: does `url` answer 200 now?"""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


def tail(container: Container, lines: int = 20) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").rstrip()
    except docker.errors.APIError:
        return "(logs unavailable)"


def run_once(
    client: docker.DockerClient,
    image: str,
    command: list[str],
    environment: dict[str, str],
    timeout: float,
    name_labels: dict[str, str],
) -> tuple[int, str, str]:
    """Run a one-off container on the host network; returns (exit code, stdout, stderr)."""
    container = client.containers.run(
        image,
        command,
        environment=environment,
        network_mode="host",
        detach=True,
        labels=name_labels,
    )
    try:
        try:
            status = container.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the engine took longer than `timeout`
            container.kill()
            raise ReleaseError(
                f"`{' '.join(command)}` in {image} ran longer than {timeout:.0f}s"
            ) from exc
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        return int(status["StatusCode"]), out, err
    finally:
        container.remove(force=True)
