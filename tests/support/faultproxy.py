"""A fault proxy on 127.0.0.1, in front of a real service (test scaffolding, like toxiproxy).

It speaks enough HTTP/1.1 to pass requests and answers through one by one on keep-alive
connections, so it can fail a share of *requests*, not of connections:

- `share_503`: that share of requests is answered `503 Service Unavailable` (the request's body
  is read first; the client's connection is closed after, as a restarting registry's would be);
- `delay`: seconds to wait before passing each request on;
- `refuse`: every new connection is closed at once (the service is down).

Everything it passed or failed is in `log` as (method, path, status), so a test can count, for
example, how often each layer was uploaded. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass, field

HEAD_LIMIT = 64 * 1024


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    faulted: bool


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    share_503: float = 0.0
    delay: float = 0.0
    refuse: bool = False
    seed: int | None = None
    log: list[Exchange] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    # --- life -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
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

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, limit=HEAD_LIMIT)
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.close()

    # --- one client connection ------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
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
                if self.random.random() < self.share_503:
                    self.log.append(Exchange(method, path, 503, True))
                    writer.write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        self.upstream_host, self.upstream_port, limit=HEAD_LIMIT
                    )
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                status, close = await relay_response(up_reader, writer, method)
                self.log.append(Exchange(method, path, status, False))
                if close or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return  # a client gone, garbage, or the proxy stopping
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()


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
    """A message body, framed as HTTP/1.1 frames it (chunked, or Content-Length)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    body += trailer
                return body + b"\r\n"
            body += await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def relay_response(
    up: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str
) -> tuple[int, bool]:
    """Pass one answer back; (its status, whether the connection ends after it)."""
    head = await read_head(up)
    if head is None:
        raise ConnectionError("the upstream closed the connection")
    first, *rest = head.rstrip(b"\r\n").split(b"\r\n")
    status = int(first.split(b" ")[1])
    headers = parse_headers(rest)
    writer.write(head)
    close = headers.get("connection", "").lower() == "close"
    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    if no_body:
        pass
    elif "chunked" in headers.get("transfer-encoding", "").lower() or "content-length" in headers:
        writer.write(await read_body(up, headers))
    else:  # delimited by the end of the connection
        writer.write(await up.read())
        close = True
    await writer.drain()
    return status, close
