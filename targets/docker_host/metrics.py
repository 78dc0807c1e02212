"""Prometheus as the Docker host's metrics source: what HAProxy's exporter counted for one
server (one slot of one service) at one moment. The release judges versions by the difference
between two readings (domain/traffic.py)."""

from __future__ import annotations

from typing import Any

import httpx

from domain.errors import TransientError
from domain.traffic import Reading

ANSWERS = "haproxy_server_http_responses_total"
MEAN = "haproxy_server_response_time_average_seconds"
# A reading older than this at the moment asked for is no reading: HAProxy's exporter is not
# being scraped (Prometheus keeps answering with its last sample for 5 minutes).
FRESH_SECONDS = 10


class MetricsUnavailable(Exception):
    """The metrics source cannot answer (not running, or not scraping): the caller decides by
    its probes and says so, never passes on missing data."""


class Prometheus:
    def __init__(self, url: str, timeout: float = 5):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _query(self, expression: str, at: float) -> list[dict[str, Any]]:
        try:
            response = httpx.get(
                f"{self.url}/api/v1/query",
                params={"query": expression, "time": f"{at:.3f}"},
                timeout=self.timeout,
            )
        except httpx.TransportError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} does not answer ({exc})") from exc
        if response.status_code >= 500:
            raise TransientError(f"Prometheus at {self.url} answered {response.status_code}")
        body = response.json()
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus at {self.url} refused `{expression}`: {body}")
        return body["data"]["result"]

    def reading(self, backend: str, server: str, at: float) -> Reading:
        """HAProxy's counters for `backend`/`server` as Prometheus last scraped them at `at`."""
        labels = f'proxy="{backend}",server="{server}"'
        series = self._query(f'{{__name__=~"{ANSWERS}|{MEAN}",{labels}}}', at)
        selector = f"{{{labels}}}"
        stamps = self._query(f"timestamp({MEAN}{selector})", at)
        if not stamps or at - float(stamps[0]["value"][1]) > FRESH_SECONDS:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} has no sample of {backend}/{server} from the last "
                f"{FRESH_SECONDS} s: is it scraping HAProxy's exporter (`scripts/stack.sh up`)?"
            )
        answers = {
            s["metric"]["code"]: float(s["value"][1])
            for s in series
            if s["metric"]["__name__"] == ANSWERS
        }
        means = [float(s["value"][1]) for s in series if s["metric"]["__name__"] == MEAN]
        return Reading(at=at, answers=answers, mean_seconds=means[0] if means else 0.0)
