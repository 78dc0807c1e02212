"""Flow Masters backend stand-in for Payload CMS: health with schema version, and pages.

GET /api/health  200 {"status":"ok","service":"backend","version":..,"schema_version":N}
                 503 {"status":"error",..,"error":..} when PostgreSQL cannot be queried
                 500 {"status":"broken",..} once up longer than $FM_BREAK_AFTER_SECONDS
GET /api/pages   200 [{"id":..,"title":..,"body":..}, ...] ([] before migration 0001)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import pg
from stdlite import BreakSwitch, Handler, Response, json_response, run

SERVICE = "backend"
VERSION = os.environ.get("APP_VERSION") or "dev"
CACHE_SECONDS = 1.0
T = TypeVar("T")

PAGES_SQL = r"""
SELECT to_regclass('pages') IS NOT NULL AS fm_has_pages \gset
\if :fm_has_pages
SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'title', title, 'body', body)
                          ORDER BY id), '[]'::jsonb) FROM pages;
\else
SELECT '[]';
\endif
"""


class Cached(Generic[T]):
    """At most one psql run per CACHE_SECONDS however often the value is asked for.

    Health is polled by the load balancer and the pipeline, and pages are read far more often
    than they are written; without this every request would start a psql process. The lock is
    held during the query, so concurrent requests wait for the one refresh in flight instead of
    each starting psql. Errors are cached as well.
    """

    def __init__(self, fetch: Callable[[], T]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._expires = 0.0
        self._value: tuple[T | None, str | None] = (None, "not checked yet")

    def get(self) -> tuple[T | None, str | None]:
        """(value, None) or (None, error message)."""
        with self._lock:
            if time.monotonic() >= self._expires:
                try:
                    self._value = (self._fetch(), None)
                except pg.PsqlError as exc:
                    self._value = (None, str(exc))
                self._expires = time.monotonic() + CACHE_SECONDS
            return self._value


def make_handler() -> Handler:
    switch = BreakSwitch()
    schema = Cached(lambda: max(pg.applied_versions(), default=0))
    pages = Cached(lambda: pg.run(PAGES_SQL).strip().encode())
    identity = {"service": SERVICE, "version": VERSION}

    def handle(path: str) -> Response:
        if path == "/api/health":
            broken = switch.response(SERVICE, VERSION)
            if broken:
                return broken
            version, error = schema.get()
            if error is not None:
                return json_response(503, {"status": "error", **identity, "error": error})
            return json_response(200, {"status": "ok", **identity, "schema_version": version})
        if path == "/api/pages":
            body, error = pages.get()
            if error is not None or body is None:
                return json_response(503, {"status": "error", **identity, "error": str(error)})
            return Response(200, body)
        return json_response(404, {"status": "error", "error": f"no route for {path}"})

    return handle


if __name__ == "__main__":
    run(SERVICE, 3001, make_handler())
