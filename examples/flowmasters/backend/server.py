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

import pg
from stdlite import BreakSwitch, Handler, Response, json_response, run

SERVICE = "backend"
VERSION = os.environ.get("APP_VERSION") or "dev"
CACHE_SECONDS = 1.0

PAGES_SQL = r"""
SELECT to_regclass('pages') IS NOT NULL AS fm_has_pages \gset
\if :fm_has_pages
SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'title', title, 'body', body)
                          ORDER BY id), '[]'::jsonb) FROM pages;
\else
SELECT '[]';
\endif
"""


class SchemaVersionCache:
    """At most one psql run per CACHE_SECONDS however often health is polled.

    The lock is held during the query, so concurrent health requests wait for the one refresh
    in flight instead of each starting psql. Errors are cached as well.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expires = 0.0
        self._value: tuple[int | None, str | None] = (None, "not checked yet")

    def get(self) -> tuple[int | None, str | None]:
        """(schema_version, None) or (None, error message)."""
        with self._lock:
            if time.monotonic() >= self._expires:
                try:
                    self._value = (max(pg.applied_versions(), default=0), None)
                except pg.PsqlError as exc:
                    self._value = (None, str(exc))
                self._expires = time.monotonic() + CACHE_SECONDS
            return self._value


def make_handler() -> Handler:
    switch = BreakSwitch()
    schema = SchemaVersionCache()
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
            try:
                return Response(200, pg.run(PAGES_SQL).strip().encode())
            except pg.PsqlError as exc:
                return json_response(503, {"status": "error", **identity, "error": str(exc)})
        return json_response(404, {"status": "error", "error": f"no route for {path}"})

    return handle


if __name__ == "__main__":
    run(SERVICE, 3001, make_handler())
