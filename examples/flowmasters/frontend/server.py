"""Flow Masters frontend stand-in for the Next.js app.

GET /             200 HTML: "Flow Masters", frontend version, page titles from the backend
                  (still 200, saying "content unavailable", when the backend fails)
GET /api/health   200 {"status":"ok","service":"frontend","version":..} (own liveness only)
                  500 {"status":"broken",..} once up longer than $FM_BREAK_AFTER_SECONDS
GET /api/backend  200 {"frontend_version":..,"backend":<backend /api/health JSON>}
                  502 {"status":"error",..,"error":..} if the backend is unreachable or not 200
GET /cdn/<case>   200 {"version":..,"render":n} (n counts this process's renders), with the
                  caching headers of <case> (CDN_CASES): what the CDN may keep and what not

GET /pages/<slug> 200 HTML: the same page under a content page's address (what users browse; the
                  smoke checks probe / only)

$FM_PAGE_FAIL_EVERY=N: every Nth answer of a /pages/<slug> is a 500 (one page of many failing
for some users: the probes never see it); $FM_PAGE_FAIL_AFTER_SECONDS=N: every page (/ and
/pages/*) answers 500 once the process is up longer than N s (0: from the start);
$FM_SLOW_MS=M: every answer takes M ms more. What a canary's analysis catches.
"""

from __future__ import annotations

import itertools
import os
import time

from stdlite import BreakSwitch, Handler, Response, http_get, json_response, loads, run

SERVICE = "frontend"
VERSION = os.environ.get("APP_VERSION") or "dev"
BACKEND_URL = (os.environ.get("BACKEND_URL") or "http://127.0.0.1:3001").rstrip("/")
BACKEND_TIMEOUT = 2.0
PAGE_FAIL_EVERY = int(os.environ.get("FM_PAGE_FAIL_EVERY") or 0)
SLOW_SECONDS = int(os.environ.get("FM_SLOW_MS") or 0) / 1000
PAGE_FAIL_AFTER = os.environ.get("FM_PAGE_FAIL_AFTER_SECONDS") or None  # "0": from the start
STARTED = time.monotonic()
_HTML_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
)


def escape(text: object) -> str:
    return str(text).translate(_HTML_ESCAPES)


def fetch_json(path: str) -> object:
    """GET BACKEND_URL+path and decode it; raise RuntimeError naming the URL on any failure."""
    url = BACKEND_URL + path
    try:
        status, body = http_get(url, timeout=BACKEND_TIMEOUT)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"backend {url} unreachable: {exc}") from exc
    try:
        payload = loads(body)
    except ValueError:
        payload = None
    if status != 200:
        raise RuntimeError(f"backend {url} returned HTTP {status}", payload)
    if payload is None:
        raise RuntimeError(f"backend {url} returned invalid JSON")
    return payload


def home_page() -> Response:
    try:
        pages = fetch_json("/api/pages")
        titles = [str(page["title"]) for page in pages]  # type: ignore[attr-defined]
        content = "".join(f"<li>{escape(t)}</li>" for t in titles) or "<li>(no pages yet)</li>"
        content = f'<ul id="pages">{content}</ul>'
    except (RuntimeError, TypeError, KeyError) as exc:
        print(f"home page: {exc.args[0] if exc.args else exc}", flush=True)
        content = '<p id="pages-error">content unavailable</p>'
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Flow Masters</title>'
        "</head><body><h1>Flow Masters</h1>"
        f'<p>Frontend version <span id="version">{escape(VERSION)}</span></p>{content}'
        "</body></html>\n"
    )
    return Response(200, html.encode(), "text/html; charset=utf-8")


# The answers a CDN meets, by their headers: (Cache-Control, other headers).
CDN_CASES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "shared": ("public, s-maxage=60", ()),
    "private": ("private, max-age=60", ()),
    "no-store": ("no-store", ()),
    "cookie": ("public, s-maxage=60", (("Set-Cookie", "session=s3cr3t; Path=/; HttpOnly"),)),
    "plain": ("", ()),
}


def make_handler() -> Handler:
    switch = BreakSwitch()
    renders = iter(range(1, 1 << 62))
    pages = itertools.count(1)

    def handle(path: str) -> Response:
        if SLOW_SECONDS:
            time.sleep(SLOW_SECONDS)
        if path == "/" or path.startswith("/pages/"):
            late = PAGE_FAIL_AFTER is not None and time.monotonic() - STARTED > int(PAGE_FAIL_AFTER)
            sometimes = path != "/" and PAGE_FAIL_EVERY and next(pages) % PAGE_FAIL_EVERY == 0
            if late or sometimes:
                return json_response(500, {"status": "error", "error": "deliberately failed"})
            return home_page()
        case = CDN_CASES.get(path.removeprefix("/cdn/")) if path.startswith("/cdn/") else None
        if case is not None:
            body = json_response(200, {"version": VERSION, "render": next(renders)}).body
            return Response(200, body, cache_control=case[0], headers=case[1])
        if path == "/api/health":
            broken = switch.response(SERVICE, VERSION)
            return broken or json_response(
                200, {"status": "ok", "service": SERVICE, "version": VERSION}
            )
        if path == "/api/backend":
            try:
                return json_response(
                    200, {"frontend_version": VERSION, "backend": fetch_json("/api/health")}
                )
            except RuntimeError as exc:
                error = {"status": "error", "frontend_version": VERSION, "error": exc.args[0]}
                if len(exc.args) > 1:
                    error["backend"] = exc.args[1]
                return json_response(502, error)
        return json_response(404, {"status": "error", "error": f"no route for {path}"})

    return handle


if __name__ == "__main__":
    run(SERVICE, 3000, make_handler())
