"""A steady, bounded HTTP load on loopback, counting every failed request.

Used by the integration tests (zero failed requests during a release) and by the benchmark.
Requests are paced to a fixed rate from one keep-alive client; the load stops by itself after
`max_seconds` even if nobody stops it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx


@dataclass
class LoadResult:
    url: str
    seconds: float
    ok: int
    failures: list[str] = field(default_factory=list)
    samples: list[tuple[float, int, str]] = field(
        default_factory=list, repr=False
    )  # (wall-clock time, HTTP status or 0 for a transport error, body excerpt)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


class SteadyLoad:
    """`with SteadyLoad(url, rate=25) as load: ...` then `load.result`."""

    def __init__(self, url: str, rate: float = 25, max_seconds: float = 600, check=None):
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"load is only ever sent to loopback, not {host}")
        self.url = url
        self.interval = 1 / rate
        self.max_seconds = max_seconds
        self.check = check or (lambda response: response.status_code == 200)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.result = LoadResult(url=url, seconds=0, ok=0)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _record(self, status: int, body: str, ok: bool) -> None:
        self.result.samples.append((time.time(), status, body[:300]))
        if ok:
            self.result.ok += 1
        else:
            self.result.failures.append(f"HTTP {status}: {body[:200]}" if status else body)

    def _run(self) -> None:
        started = time.monotonic()
        next_at = started
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
                try:
                    response = client.get(self.url)
                    self._record(response.status_code, response.text, self.check(response))
                except httpx.HTTPError as exc:
                    self._record(0, f"{exc.__class__.__name__}: {exc}", ok=False)
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self.result.seconds = time.monotonic() - started
