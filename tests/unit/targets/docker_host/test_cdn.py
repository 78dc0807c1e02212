"""The CDN's decisions (what a ban removes, which assets a page needs) and its admin protocol,
against a stand-in admin port that speaks Varnish's CLI protocol (labelled: the real Varnish is
in the integration tier, tests/integration/targets/docker_host/test_cdn.py)."""

import hashlib
import socket
import threading
from collections.abc import Iterator

import pytest

from domain.errors import ReleaseError, TransientError
from targets.docker_host.cdn import VarnishAdmin, asset_paths, auth_response, ban_expression


def test_a_ban_takes_every_page_of_one_service_and_none_of_its_static_assets():
    assert ban_expression("be_prod_frontend") == (
        'obj.http.X-FM-Backend == "be_prod_frontend" && obj.http.X-FM-Static != "1"'
    )


def test_a_ban_refuses_anything_but_a_backend_name():
    with pytest.raises(ValueError):
        ban_expression('x" || obj.http.X-FM-Static == "1')


def test_the_assets_of_a_next_page_in_order_each_once():
    html = (
        '<link rel="stylesheet" href="/_next/static/css/a.css?dpl=v1"/>'
        '<script src="/_next/static/chunks/b.js?dpl=v1" async=""></script>'
        '<script src="/_next/static/chunks/b.js?dpl=v1"></script>'
        '<link rel="preload" href="/_next/static/media/f.woff2" as="font"/>'
        "<style>url(/_next/static/media/g.png)</style>"
        '<a href="/about">about</a>'
    )

    assert asset_paths(html) == [
        "/_next/static/css/a.css?dpl=v1",
        "/_next/static/chunks/b.js?dpl=v1",
        "/_next/static/media/f.woff2",
        "/_next/static/media/g.png",
    ]


def test_the_challenge_is_answered_as_varnishadm_does():
    expected = hashlib.sha256(b"abc\nsecretabc\n").hexdigest()

    assert auth_response("abc", "secret") == expected


def frame(status: int, body: str) -> bytes:
    return f"{status:<3d} {len(body):<8d}\n{body}\n".encode()


@pytest.fixture
def admin_port() -> Iterator[tuple[int, list[str]]]:
    """Varnish's CLI protocol: a challenge, `auth`, then one answer per command."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            challenge = "c" * 32
            conn.sendall(frame(107, f"{challenge}\n\nAuthentication required.\n"))
            for raw in lines:
                line = raw.decode().strip()
                seen.append(line)
                if line.startswith("auth "):
                    ok = line == f"auth {auth_response(challenge, 'right')}"
                    conn.sendall(frame(200 if ok else 107, "welcome" if ok else "no"))
                    if not ok:
                        return
                elif line.startswith("ban obj.http.X-FM-Backend =="):
                    conn.sendall(frame(200, ""))
                else:
                    conn.sendall(frame(106, "Syntax error"))

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], seen
    server.close()


def test_commands_run_after_the_secret_answers_the_challenge(admin_port):
    port, seen = admin_port

    VarnishAdmin(f"127.0.0.1:{port}", "right").ban(ban_expression("be_x_frontend"))

    assert seen[0].startswith("auth ") and "right" not in seen[0]  # the secret never crosses
    assert seen[1] == f"ban {ban_expression('be_x_frontend')}"


def test_a_wrong_secret_says_what_to_do(admin_port):
    port, _ = admin_port

    with pytest.raises(ReleaseError, match=r"refused the secret.*register the environment again"):
        VarnishAdmin(f"127.0.0.1:{port}", "wrong").ban(ban_expression("be_x_frontend"))


def test_a_refused_command_names_it(admin_port):
    port, _ = admin_port

    with pytest.raises(ReleaseError, match=r"refused `ban\.list`: 106 Syntax error"):
        VarnishAdmin(f"127.0.0.1:{port}", "right").commands(["ban.list"])


def test_no_cdn_listening_is_transient_and_says_how_to_start_it():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(TransientError, match=r"scripts/stack\.sh up"):
        VarnishAdmin(f"127.0.0.1:{port}", "x").ban(ban_expression("be_x_frontend"))
