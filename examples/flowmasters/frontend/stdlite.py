"""Small stand-ins for stdlib modules that Debian's python3-minimal does not ship.

The base image carries python3-minimal only: no json, http.server, http.client, socketserver or
html. This module provides what both services need: a JSON codec, a threaded HTTP/1.1 server
(keep-alive, graceful SIGTERM) and a tiny HTTP client. backend/stdlite.py and
frontend/stdlite.py are identical copies (each image builds from its own directory); keep them
in sync. Run as a script it is the Docker HEALTHCHECK probe:
``python3 stdlite.py /api/health`` exits 0 on HTTP 200 from 127.0.0.1:$PORT, else 1.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

# --- JSON -------------------------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\u2028\u2029]')
_TOKEN = re.compile(
    r"""\s*(?:(?P<punct>[\[\]{}:,])
    |(?P<str>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
    |(?P<num>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<lit>true|false|null))""",
    re.VERBOSE,
)
_UNESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None}


def dumps(obj: Any) -> str:
    """Serialise dict/list/tuple/str/int/float/bool/None as compact JSON."""
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot encode {obj} as JSON")
        return repr(obj)
    if isinstance(obj, str):
        return (
            '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), obj) + '"'
        )
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(item) for item in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def loads(text: str | bytes) -> Any:
    """Parse one JSON document (strict RFC 8259 grammar); raise ValueError when invalid."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    value, pos = _parse(text, 0)
    if text[pos:].strip():
        raise ValueError(f"invalid JSON: trailing data at offset {pos}")
    return value


def _token(text: str, pos: int) -> tuple[str, str, int]:
    match = _TOKEN.match(text, pos)
    if not match or match.lastgroup is None:
        raise ValueError(f"invalid JSON at offset {pos}")
    return match.lastgroup, match[match.lastgroup], match.end()


def _unescape(token: str) -> str:
    def one(m: re.Match[str]) -> str:
        return chr(int(m[1], 16)) if m[1] else _SIMPLE[m[2]]

    text = _UNESCAPE.sub(one, token[1:-1])
    # \uD83D\uDE00-style surrogate pairs arrive as two lone surrogates: recombine them.
    return text.encode("utf-16", "surrogatepass").decode("utf-16")


def _parse(text: str, pos: int) -> tuple[Any, int]:
    kind, tok, pos = _token(text, pos)
    if kind == "str":
        return _unescape(tok), pos
    if kind == "num":
        return (float(tok) if any(c in tok for c in ".eE") else int(tok)), pos
    if kind == "lit":
        return _LITERALS[tok], pos
    if tok not in "[{":
        raise ValueError(f"invalid JSON: unexpected {tok!r} at offset {pos - 1}")
    closing, container = ("]", []) if tok == "[" else ("}", {})
    if _token(text, pos)[1] == closing:
        return container, _token(text, pos)[2]
    while True:
        if isinstance(container, list):
            item, pos = _parse(text, pos)
            container.append(item)
        else:
            kind, key, pos = _token(text, pos)
            if kind != "str" or _token(text, pos)[1] != ":":
                raise ValueError(f'invalid JSON: expected "key": at offset {pos}')
            container[_unescape(key)], pos = _parse(text, _token(text, pos)[2])
        _, tok, pos = _token(text, pos)
        if tok == closing:
            return container, pos
        if tok != ",":
            raise ValueError(f"invalid JSON: expected ',' or {closing!r} at offset {pos - 1}")


# --- HTTP server ------------------------------------------------------------------------------


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"
    # Cache-Control (default no-store) and any other header, e.g. (("Set-Cookie", "a=b"),)
    cache_control: str = "no-store"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[str], Response]
"""Maps a request path (query string removed) to a response; only GET and HEAD are routed."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_MAX_LINE = 8192


def json_response(status: int, payload: Any) -> Response:
    return Response(status, dumps(payload).encode())


class Server:
    """Thread-per-connection HTTP/1.1 server with keep-alive.

    stop() (called from the SIGTERM handler) closes the listener, answers remaining requests
    with ``Connection: close`` and lets serve_forever() return once in-flight requests are
    done. Idle keep-alive connections live in daemon threads and die with the process.
    """

    def __init__(self, host: str, port: int, handler: Handler, idle_timeout: float = 30.0):
        self.listener = socket.create_server((host, port), backlog=128)
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.access_log = os.environ.get("FM_ACCESS_LOG", "") not in ("", "0")
        self._stopping = threading.Event()
        self._busy = 0
        self._idle = threading.Condition()

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def serve_forever(self, drain_timeout: float = 10.0) -> None:
        self.listener.settimeout(0.5)  # wake regularly to notice stop()
        with self.listener:
            while not self._stopping.is_set():
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=drain_timeout)

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            conn.settimeout(self.idle_timeout)
            try:
                while self._serve_request(conn, rfile):
                    pass
            except (OSError, ValueError):  # client gone, idle timeout, undecodable request
                pass

    def _serve_request(self, conn: socket.socket, rfile: Any) -> bool:
        """Answer one request; return whether the connection stays open."""
        line = rfile.readline(_MAX_LINE + 1)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        malformed = len(parts) != 3 or not line.endswith(b"\n")
        for _ in range(100):
            raw = rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            malformed = malformed or not raw.endswith(b"\n")
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            malformed = True  # more than 100 header lines
        with self._idle:
            self._busy += 1
        try:
            method = parts[0] if len(parts) == 3 else ""
            response = self._route(method, parts, headers, rfile, malformed)
            keep = (
                parts[2:] == ["HTTP/1.1"]
                and headers.get("connection", "").lower() != "close"
                and response.status not in (400, 413)  # request framing may be off: close
                and not self._stopping.is_set()  # checked late: tell clients we are going away
            )
            head = (
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                + (f"Cache-Control: {response.cache_control}\r\n" if response.cache_control else "")
                + "".join(f"{name}: {value}\r\n" for name, value in response.headers)
                + f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
            )
            conn.sendall(head.encode("latin-1") + (b"" if method == "HEAD" else response.body))
            if self.access_log:
                print(
                    f"{method} {parts[1] if len(parts) > 1 else '-'} {response.status}", flush=True
                )
            return keep
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _route(
        self, method: str, parts: list[str], headers: dict[str, str], rfile: Any, malformed: bool
    ) -> Response:
        if malformed or not (headers.get("content-length") or "0").isdigit():
            return json_response(400, {"error": "malformed request"})
        if "transfer-encoding" in headers:
            return json_response(400, {"error": "chunked request bodies are not supported"})
        length = int(headers.get("content-length") or 0)
        if length > 1 << 20:
            return json_response(413, {"error": "request body too large"})
        rfile.read(length)  # no route takes a body; drain it so keep-alive stays in sync
        if method not in ("GET", "HEAD"):
            return json_response(405, {"error": f"method {method} not allowed (GET, HEAD only)"})
        try:
            return self.handler(urlsplit(parts[1]).path)
        except Exception:
            traceback.print_exc()
            return json_response(500, {"status": "error", "error": "internal error"})


def run(service: str, default_port: int, handler: Handler) -> None:
    """Serve ``handler`` on $HOST:$PORT (default 127.0.0.1) until SIGTERM/SIGINT."""
    host = os.environ.get("HOST") or "127.0.0.1"
    port_text = os.environ.get("PORT") or str(default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        sys.exit(f"{service}: PORT must be a TCP port number, got {port_text!r}")
    try:
        server = Server(host, int(port_text), handler)
    except OSError as exc:
        sys.exit(f"{service}: cannot listen on {host}:{port_text}: {exc}")
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    version = os.environ.get("APP_VERSION") or "dev"
    print(f"{service} {version} listening on http://{host}:{port_text}", flush=True)
    server.serve_forever()
    print(f"{service} {version} stopped", flush=True)


# --- deliberate breakage ----------------------------------------------------------------------


class BreakSwitch:
    """Health turns to HTTP 500 once the process is up longer than $FM_BREAK_AFTER_SECONDS.

    Lets demos and tests build a release that passes its first health checks and then fails.
    Empty/unset disables it; 0 means broken from the start.
    """

    def __init__(self) -> None:
        raw = os.environ.get("FM_BREAK_AFTER_SECONDS", "").strip()
        if raw and not raw.isdigit():
            sys.exit(f"FM_BREAK_AFTER_SECONDS must be a whole number of seconds, got {raw!r}")
        self.after = int(raw) if raw else None
        self.started = time.monotonic()

    def response(self, service: str, version: str) -> Response | None:
        """The 500 health response if the switch has tripped, else None."""
        uptime = time.monotonic() - self.started
        if self.after is None or (self.after and uptime <= self.after):
            return None
        return json_response(
            500,
            {
                "status": "broken",
                "service": service,
                "version": version,
                "uptime_seconds": round(uptime, 1),
                "error": f"deliberately broken: FM_BREAK_AFTER_SECONDS={self.after}",
            },
        )


# --- HTTP client ------------------------------------------------------------------------------


def _complete(data: bytes | bytearray) -> bool:
    end = data.find(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:[ \t]*(\d+)", data[:end]) if end >= 0 else None
    return bool(length) and len(data) >= end + 4 + int(length[1])  # type: ignore[index]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a plain-http URL; return (status, body). ``timeout`` bounds the whole exchange.

    Raises OSError (incl. TimeoutError/ConnectionError) or ValueError for a bad URL/response.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported URL {url!r}: expected http://host[:port]/path")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout) as sock:
            request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode("latin-1"))
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))  # overall deadline
                if not (chunk := sock.recv(65536)):
                    break
                data += chunk
                if _complete(data):  # do not rely on the server closing the connection
                    break
    except TimeoutError as exc:
        raise TimeoutError(f"no complete response within {timeout:g}s") from exc
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = status_line.split(" ", 2)[1] if status_line.count(" ") else ""
    if not sep or not status_line.startswith("HTTP/") or not status.isdigit():
        raise ConnectionError(f"malformed HTTP response from {url}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ConnectionError(f"{url} sent a chunked response, which this client does not support")
    if headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return int(status), body


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "/api/health"
    url = target if "://" in target else f"http://127.0.0.1:{os.environ.get('PORT', '')}{target}"
    try:
        code, payload = http_get(url, timeout=3.0)
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
        sys.exit(1)
    print(f"{url}: HTTP {code} {payload[:300].decode('utf-8', 'replace')}")
    sys.exit(0 if code == 200 else 1)
