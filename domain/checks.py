"""Smoke checks: what to probe, and the pure rule that judges one answer.

The checks probe for a window rather than once, so a version that passes its health check at
start and fails seconds later is caught by the release, not by users.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from domain.frozen import Frozen
from domain.traffic import TrafficBounds


class ProbeSpec(Frozen):
    """One smoke check: GET a service's public URL + path, expect 200 (and the released version)."""

    service: str = Field(description="Service whose public URL is probed.")
    path: str = Field(description="Path to GET, e.g. /api/health.")
    version_field: str | None = Field(
        default="version",
        description="Dotted JSON field that must equal the released version (None: status only).",
    )
    version_of: str | None = Field(
        default=None,
        description="The service whose version `version_field` reports. Default: the service "
        "the field's first part names (`backend.version` on the frontend's health: the "
        "backend's), else the probed service.",
    )

    def expects(self, services: list[str]) -> str:
        """The service whose released version this probe's answer must show."""
        if self.version_of:
            return self.version_of
        first = (self.version_field or "").split(".")[0]
        if "." in (self.version_field or "") and first in services and first != self.service:
            return first
        return self.service


class CheckSpec(Frozen):
    """How long and how often the smoke checks probe the public URLs."""

    probes: tuple[ProbeSpec, ...] = Field(default=(), description="What to probe.")
    window_seconds: float = Field(default=5, ge=0, description="Checks keep probing this long.")
    interval_seconds: float = Field(default=0.5, gt=0, description="Pause between probes.")
    request_timeout_seconds: float = Field(default=3, gt=0, description="Timeout of one request.")
    traffic: TrafficBounds = Field(
        default=TrafficBounds(),
        description="Bounds on the users' traffic (through the metrics source), judged in the "
        "bake and in each canary step beside the probes.",
    )


def expected_versions(
    probes: tuple[ProbeSpec, ...], versions: dict[str, str]
) -> list[tuple[ProbeSpec, str]]:
    """Each probe with the version its answer must show: that of the service it reports on.
    A release keeps a service whose source did not change, so services may differ."""
    names = list(versions)
    return [(probe, versions[probe.expects(names)]) for probe in probes]


class CheckReport(Frozen):
    version: str
    probes: int
    rounds: int
    failures: tuple[str, ...]


def field(document: Any, dotted: str) -> Any:
    """The value at a dotted path of a JSON document, or None where the path does not exist."""
    for key in dotted.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def judge(probe: ProbeSpec, url: str, version: str, status: int, body: Any) -> str | None:
    """The problem with one answer, or None if it is what a healthy release serves."""
    if status != 200:
        return f"{url} answered HTTP {status}"
    if probe.version_field is None:
        return None
    served = field(body, probe.version_field)
    if served != version:
        return f"{url} serves version {served!r} at `{probe.version_field}`, expected {version!r}"
    return None
