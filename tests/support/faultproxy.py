"""A fault proxy on 127.0.0.1, in front of a real service (test scaffolding, like toxiproxy).

It speaks enough HTTP/1.1 to pass requests and answers through one by one on keep-alive
connections, so it can fail a share of *requests*, not of connections:

- `share_503`: that share of requests is answered `503 Service Unavailable` (the request's body
  is read first; the client's connection is closed after, as a restarting registry's would be);
- `delay`: seconds to wait before passing each request on;
- `refuse`: every new connection is closed at once (the service is down); `go_down()` also
  closes the open ones, as a server's restart does, and `come_back()` ends it;
- `rules`: requests whose "METHOD path" matches a rule's pattern get its status, `times` times
  (None: always), so one kind of request can fail (a layer upload, a container create) while the
  rest pass.

`upstream_unix` puts it in front of a unix socket (the Docker engine's) instead of a TCP port.
`PostgresFaultProxy` does the same for PostgreSQL's protocol, by the client's application_name,
and `LineFaultProxy` for HAProxy's runtime API (a unix socket, one command line per connection).

Everything it passed or failed is in `log` as (method, path, status), so a test can count, for
example, how often each layer was uploaded. An answer `101 Switching Protocols` (a websocket) turns
the connection into a plain two-way pipe. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

HEAD_LIMIT = 64 * 1024


class Served:
    """A listener on an event loop of its own, in a thread: what each proxy here is. A subclass
    calls `_serve_in_thread()` once and says where it listens in `_listen()`."""

    def _serve_in_thread(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _listen(self) -> asyncio.AbstractServer:
        raise NotImplementedError

    def start(self) -> Self:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self._listen())
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.close()


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    faulted: bool


@dataclass
class Rule:
    pattern: str  # a regular expression searched in "METHOD path"
    times: int | None = None  # how many matching requests fail; None: every one
    status: int = 503
    failed: int = 0

    def applies(self, request: str) -> bool:
        if self.times is not None and self.failed >= self.times:
            return False
        if re.search(self.pattern, request) is None:
            return False
        self.failed += 1
        return True


@dataclass
class FaultProxy(Served):
    upstream_host: str
    upstream_port: int
    share_503: float = 0.0
    delay: float = 0.0
    refuse: bool = False
    seed: int | None = None
    rules: list[Rule] = field(default_factory=list)
    upstream_unix: str | None = None
    log: list[Exchange] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.open: set[asyncio.StreamWriter] = set()
        self._serve_in_thread()

    # --- life -------------------------------------------------------------------------------

    def go_down(self) -> None:
        """The service goes away: open connections are closed, new ones refused."""
        self.refuse = True

        def close_all() -> None:
            for writer in list(self.open):
                writer.close()

        self.loop.call_soon_threadsafe(close_all)

    def come_back(self) -> None:
        self.refuse = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _listen(self) -> asyncio.AbstractServer:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=HEAD_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        return server

    # --- one client connection ------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.open.add(writer)
        try:
            prefix = await reader.read(1)
            if prefix in (b"", b"\x16"):  # gone, or a TLS handshake: this proxy speaks plain HTTP
                return
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                head, prefix = prefix + head, b""
                method, path, headers = parse_request(head)
                body = await read_body(reader, headers)
                status = self._fault(method, path)
                if status:
                    self.log.append(Exchange(method, path, status, True))
                    writer.write(
                        f"HTTP/1.1 {status} Injected Fault\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n".encode()
                    )
                    await writer.drain()
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                if upstream is None:
                    upstream = await (
                        asyncio.open_unix_connection(self.upstream_unix, limit=HEAD_LIMIT)
                        if self.upstream_unix
                        else asyncio.open_connection(
                            self.upstream_host, self.upstream_port, limit=HEAD_LIMIT
                        )
                    )
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                status, close = await relay_response(up_reader, writer, method)
                self.log.append(Exchange(method, path, status, False))
                if status == 101:
                    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
                    return
                if close or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return  # a client gone, garbage, or the proxy stopping
        finally:
            self.open.discard(writer)
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    def _fault(self, method: str, path: str) -> int | None:
        """The status to answer instead of passing the request on, or None."""
        for rule in self.rules:
            if rule.applies(f"{method} {path}"):
                return rule.status
        if self.random.random() < self.share_503:
            return 503
        return None


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """A message head up to and with its blank line; None at a clean end of the connection."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise


def parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_request(head: bytes) -> tuple[str, str, dict[str, str]]:
    first, *rest = head.rstrip(b"\r\n").split(b"\r\n")
    method, path, _ = first.decode("latin-1").split(" ", 2)
    return method, path, parse_headers(rest)


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """A request's body, framed as HTTP/1.1 frames it (chunked, or Content-Length), whole: the
    proxy decides on the request before passing it on."""
    body = bytearray()

    async def put(data: bytes) -> None:
        body.extend(data)

    await copy_body(reader, put, headers, until_eof=False)
    return bytes(body)


async def copy_body(
    source: asyncio.StreamReader,
    put: Callable[[bytes], Awaitable[None]],
    headers: dict[str, str],
    until_eof: bool,
) -> None:
    """Pass a body on piece by piece as it arrives (an image export is hundreds of megabytes):
    chunked, Content-Length, or (an answer without either) up to the end of the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await source.readuntil(b"\r\n")
            await put(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = await source.readuntil(b"\r\n")
                    await put(trailer)
                    if trailer == b"\r\n":
                        return
            await copy_exactly(source, put, size + 2)
    elif "content-length" in headers:
        await copy_exactly(source, put, int(headers["content-length"] or 0))
    elif until_eof:
        while data := await source.read(1 << 16):
            await put(data)


async def copy_exactly(
    source: asyncio.StreamReader, put: Callable[[bytes], Awaitable[None]], length: int
) -> None:
    while length > 0:
        data = await source.read(min(length, 1 << 16))
        if not data:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(data)
        await put(data)


async def relay_response(
    up: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str
) -> tuple[int, bool]:
    """Pass one answer back as it arrives; (its status, whether the connection ends after it)."""
    head = await read_head(up)
    if head is None:
        raise ConnectionError("the upstream closed the connection")
    first, *rest = head.rstrip(b"\r\n").split(b"\r\n")
    status = int(first.split(b" ")[1])
    headers = parse_headers(rest)
    writer.write(head)
    close = headers.get("connection", "").lower() == "close"
    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200

    async def put(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    if not no_body:
        framed = "chunked" in headers.get("transfer-encoding", "").lower() or (
            "content-length" in headers
        )
        await copy_body(up, put, headers, until_eof=True)
        close = close or not framed
    await writer.drain()
    return status, close


SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


@dataclass
class PostgresFaultProxy:
    """In front of PostgreSQL: a connection whose client names itself `application_name` (psql,
    pg_dump; "" for a client that sends none, as the stand-in backend and its migrations) is
    closed before it reaches the server, `refuse[name]` times (None: always); the rest are
    passed through byte for byte. It answers 'N' (no TLS) to a TLS request itself."""

    upstream_host: str
    upstream_port: int
    refuse: dict[str, int | None] = field(default_factory=dict)
    log: list[tuple[str, bool]] = field(default_factory=list)  # (application_name, refused)
    port: int = 0

    def __post_init__(self) -> None:
        self.server = FaultProxy(self.upstream_host, self.upstream_port)
        self.server._client = self._client  # type: ignore[method-assign]

    def start(self) -> PostgresFaultProxy:
        self.server.start()
        self.port = self.server.port
        return self

    def stop(self) -> None:
        self.server.stop()

    def _refused(self, name: str) -> bool:
        if name not in self.refuse:
            return False
        left = self.refuse[name]
        if left is not None:
            if left <= 0:
                return False
            self.refuse[name] = left - 1
        return True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer = None
        try:
            startup = await read_startup(reader, writer)
            name = startup_parameters(startup).get("application_name", "")
            refused = self._refused(name)
            self.log.append((name, refused))
            if refused:
                return
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
            up_writer.write(startup)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()


async def read_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The client's startup message, after declining TLS or GSS encryption if it asks."""
    while True:
        head = await reader.readexactly(8)
        length, code = struct.unpack("!II", head)
        if code in (SSL_REQUEST, GSSENC_REQUEST) and length == 8:
            writer.write(b"N")
            await writer.drain()
            continue
        return head + await reader.readexactly(length - 8)


def startup_parameters(startup: bytes) -> dict[str, str]:
    fields = startup[8:].split(b"\0")
    pairs = [f.decode("utf-8", "replace") for f in fields]
    return dict(zip(pairs[0::2], pairs[1::2], strict=False))


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()
    with contextlib.suppress(Exception):
        sink.write_eof()


@dataclass
class LineRule:
    """Commands matching `pattern` are failed `times` times (None: every one), counted only once
    a command matching `after` has passed and `skip` more matching ones went through."""

    pattern: str
    times: int | None = None
    after: str | None = None
    skip: int = 0
    armed: bool = False
    failed: int = 0

    def applies(self, command: str) -> bool:
        if not self.armed:
            self.armed = self.after is None or re.search(self.after, command) is not None
            if self.after is not None:
                return False
        if re.search(self.pattern, command) is None:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None and self.failed >= self.times:
            return False
        self.failed += 1
        return True


@dataclass
class LineFaultProxy(Served):
    """In front of a line-protocol unix socket (HAProxy's runtime API: one command per
    connection, answered, then closed). A command a rule applies to gets its connection closed
    without an answer, as it does when an HAProxy worker goes away in a reload; the rest are
    passed through. `log` holds (command, faulted)."""

    upstream_unix: str
    path: str
    rules: list[LineRule] = field(default_factory=list)
    log: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serve_in_thread()

    async def _listen(self) -> asyncio.AbstractServer:
        return await asyncio.start_unix_server(self._client, self.path)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def clear(self) -> None:
        self.rules.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer = None
        try:
            line = await reader.readline()
            command = line.decode(errors="replace").strip()
            faulted = any(rule.applies(command) for rule in self.rules)
            self.log.append((command, faulted))
            if faulted:
                return
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream_unix)
            up_writer.write(line)
            await up_writer.drain()
            await pipe(up_reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
