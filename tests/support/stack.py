"""A component of the suite's stack going away in the middle of a test, and coming back: stopped
by the PID its stack recorded (the suite's stack started it) and started again by
`scripts/stack.sh up`, which starts what is not running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]


def stop(component: str, timeout: float = 30) -> None:
    """SIGTERM to the stack's `component` (varnish, redis, ...), until its process is gone."""
    pidfile = Path(os.environ["FM_STACK_DIR"]) / "pids" / f"{component}.pid"
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{component} (pid {pid}) did not stop within {timeout:.0f}s")
        time.sleep(0.1)


def start_again() -> None:
    subprocess.run([str(REPO / "scripts" / "stack.sh"), "up"], check=True, capture_output=True)


def wait_for_container(environment: str, service: str, version: str, timeout: float) -> float:
    """Seconds until a container of `service` at `version` runs (its deploy started; one kept
    stopped for a rollback does not count)."""
    labels = [
        f"flowmasters.environment={environment}",
        f"flowmasters.service={service}",
        f"flowmasters.version={version}",
    ]
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    started = time.monotonic()
    try:
        while not client.containers.list(filters={"label": labels}):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no {service} {version} container within {timeout:.0f}s")
            time.sleep(0.05)
    finally:
        client.close()
    return time.monotonic() - started
