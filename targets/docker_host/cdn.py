"""Varnish as the CDN of the Docker-host target.

One Varnish serves every environment of the host (scripts/stack.sh starts it with
infra/cdn/flowmasters.vcl). HAProxy's public frontend of each service sends requests through it
(proxy.render_config); its cache keys pages by the service's live version, so a switch is seen
at once and a rollback's pages are never another version's. A release's edge step bans what the
release replaced (`ban_pages`) and keeps the new version's static assets (`asset_paths`), so a
page of the version before still loads its assets after the switch (version skew).

The client speaks Varnish's CLI protocol on its admin port (what `varnishadm` does): each answer
is a 13-byte header (status, length) and a body; the secret answers a challenge, so it never
crosses the connection.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable
from typing import BinaryIO

from domain.errors import ReleaseError, TransientError

# Next.js's build output, content-hashed (the VCL keeps it across versions; never banned).
STATIC_PREFIX = "/_next/static/"
_ASSET = re.compile(r"""["'(](""" + re.escape(STATIC_PREFIX) + r"""[^"'()\s<>\\]+)""")


def ban_expression(backend: str) -> str:
    """Every page of a service, in every version; never its static assets (a page of another
    version may still ask for them)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", backend):
        raise ValueError(f"not a backend name: {backend!r}")
    return f'obj.http.X-FM-Backend == "{backend}" && obj.http.X-FM-Static != "1"'


def asset_paths(html: str) -> list[str]:
    """The static assets a page refers to (scripts, styles, fonts), in order, each once."""
    found = dict.fromkeys(m.group(1).replace("&amp;", "&") for m in _ASSET.finditer(html))
    return list(found)


def auth_response(challenge: str, secret: str) -> str:
    """Varnish's answer to its challenge: sha256(challenge NL secret challenge NL)."""
    return hashlib.sha256(f"{challenge}\n{secret}{challenge}\n".encode()).hexdigest()


class VarnishAdmin:
    """A client of Varnish's admin (CLI) port."""

    def __init__(self, address: str, secret: str, timeout: float = 5):
        host, _, port = address.rpartition(":")
        self.address = (host or "127.0.0.1", int(port))
        self.secret = secret
        self.timeout = timeout

    def commands(self, lines: Iterable[str]) -> list[str]:
        """Send each line on one authenticated connection; their answers' bodies."""
        try:
            with socket.create_connection(self.address, timeout=self.timeout) as sock:
                reader = sock.makefile("rb")
                status, body = _answer(reader)
                if status == 107:
                    sock.sendall(
                        f"auth {auth_response(body.split(chr(10))[0], self.secret)}\n".encode()
                    )
                    status, body = _answer(reader)
                    if status != 200:
                        raise ReleaseError(
                            f"the CDN's admin port {self._where()} refused the secret: the "
                            "target's CDN block does not hold Varnish's secret (-S); register "
                            "the environment again after `scripts/stack.sh up`"
                        )
                answers = []
                for line in lines:
                    sock.sendall(line.encode() + b"\n")
                    status, body = _answer(reader)
                    if status != 200:
                        raise ReleaseError(f"the CDN refused `{line}`: {status} {body.strip()}")
                    answers.append(body)
                return answers
        except OSError as exc:
            raise TransientError(
                f"the CDN's admin port {self._where()}: {exc} (is Varnish running? "
                "`scripts/stack.sh up` starts it)"
            ) from exc

    def ban(self, expression: str) -> None:
        self.commands([f"ban {expression}"])

    def _where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


def _answer(reader: BinaryIO) -> tuple[int, str]:
    header = reader.read(13)
    if len(header) != 13:
        raise TransientError("the CDN's admin port closed the connection mid-answer")
    status, length = int(header[:3]), int(header[4:12])
    body = reader.read(length + 1)[:length]
    return status, body.decode(errors="replace")
