"""HAProxy as the load balancer of the Docker-host target.

Each service has a frontend on its public port and a backend with two servers, `slot0` and `slot1`.
Exactly one slot is live. Traffic moves through the runtime API (no reload), because a reload
closes keep-alive connections with requests in flight (measured in ../shared/ENVIRONMENT.md).
The config file is rewritten with the live slot too, so a later reload keeps the same state.

One HAProxy serves every environment of the host, and a new environment reloads it. A reload
takes each environment's state from its file: one that came between another environment's
switch and the write of its file would bring that environment's old slot back, and the rest of
its switch would then park the only slot left. So a switch with the write of its file, and a
reload until the new process answers, each hold the host's `config_lock`. (Requests in flight
survive a reload: scripts/stack.sh sets `option idle-close-on-response`.)
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from domain.errors import ReleaseError, TransientError

SLOTS = (0, 1)


@dataclass(frozen=True)
class ServiceRoute:
    """Where one service listens publicly and on its two slots."""

    service: str
    public_port: int
    slot_ports: tuple[int, int]
    health_path: str
    private_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerState:
    status: str  # UP, DOWN, MAINT, DRAIN, ...
    sessions: int
    weight: int = 1


def backend_name(environment: str, service: str) -> str:
    return f"be_{environment}_{service}"


def server_name(slot: int) -> str:
    return f"slot{slot}"


def canary_cookie(environment: str, service: str) -> str:
    """The cookie that keeps a client on the version it got during a canary (one per
    environment and service: cookies are per host, not per port)."""
    return f"fm_{environment}_{service}".replace("-", "_")


@dataclass(frozen=True)
class Canary:
    """A running canary of one service: its slot, its weight and the stable's."""

    slot: int
    weight: int
    stable_weight: int


def running_canary(states: Mapping[tuple[str, str], ServerState], backend: str) -> Canary | None:
    """The backend's canary, read from HAProxy: both slots in rotation (neither draining nor in
    maintenance), the canary's weight even (`canary_weights`); None otherwise."""
    found = {}
    for slot in SLOTS:
        state = states.get((backend, server_name(slot)))
        if not in_rotation(state) or state.status.startswith("DRAIN"):
            return None
        found[slot] = state.weight
    canary = [slot for slot, weight in found.items() if weight % 2 == 0]
    if len(canary) != 1:
        return None
    return Canary(canary[0], found[canary[0]], found[1 - canary[0]])


def canary_weights(percent: int) -> tuple[int, int]:
    """HAProxy weights (canary, stable) for `percent` of new users on the canary (within 0.5 %).
    The canary's weight is even and the stable's odd, as every live server's is (the default
    weight is 1): that is how `live_slot` tells the stable from the canary at any weight."""
    return 2 * percent, 2 * (100 - percent) + 1


def public_port(url: str) -> int:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.hostname not in ("127.0.0.1", "localhost") or not port:
        raise ReleaseError(
            f"public URL {url!r} must be http://127.0.0.1:PORT on the Docker-host target "
            "(everything listens on loopback)"
        )
    return port


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = Path(path).read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def check_ports(routes: Sequence[ServiceRoute], ephemeral: tuple[int, int]) -> str:
    """verify's probe of the environment's ports: none may lie in the ephemeral range, where any
    outgoing connection can hold one at random and a slot or frontend then cannot bind it."""
    ports = sorted(p for r in routes for p in (r.public_port, *r.slot_ports))
    low, high = ephemeral
    taken = [p for p in ports if low <= p <= high]
    if taken:
        raise ReleaseError(
            f"ports {', '.join(map(str, taken))} are in the kernel's ephemeral range {low}-{high} "
            "(net.ipv4.ip_local_port_range): outgoing connections take them at random, and a "
            f"service then cannot listen there; choose public URLs and a port_base below {low}"
        )
    return f"{len(ports)} ports outside the ephemeral range {low}-{high}"


def squatted_slots(
    routes: Sequence[ServiceRoute], in_use: set[int], ours: set[tuple[str, int]]
) -> list[str]:
    """Slot ports another process holds: in use, with none of the environment's own running
    containers on that slot. A new version could not start there."""
    return [
        f"port {port} ({route.service}'s slot {slot})"
        for route in routes
        for slot, port in enumerate(route.slot_ports)
        if port in in_use and (route.service, slot) not in ours
    ]


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (a bind there fails). With SO_REUSEADDR,
    as servers bind: connections of a stopped server in TIME_WAIT do not count, a listener does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# A healthy server is checked every 2 s; after a failed check, every 0.5 s (`fastinter`) until
# it is out after 3 in a row: a dead server is out within 3 s, as with 1 s checks, at half their
# steady cost to the app (each check of the stand-in backend's /api/pages runs a query). A server
# that is down is checked every second (`downinter`), so a new slot comes up within a second.
CHECK = "check inter 2s fastinter 500ms downinter 1s fall 3 rise 1"


def render_config(
    environment: str,
    routes: Sequence[ServiceRoute],
    live: Mapping[str, int | None],
    live_map: str | None = None,
    cdn: bool = False,
    canaries: Mapping[str, Canary] | None = None,
) -> str:
    """The environment's HAProxy config; `live` names each service's live slot (None: none yet).

    `live_map` is the environment's map file (`render_map`). Its `<backend>.canary` is 1 while a
    canary runs: then each new client gets a cookie naming the slot that answered it, and keeps
    that slot (`use-server`) until the canary ends; the frontend goes past the CDN, so a canary
    user never gets the stable's cached pages nor the other way round, and what each version's
    servers count is all its users got.

    With `cdn`, the public frontend sends each request through the host's CDN (`be_cdn`, which
    scripts/stack.sh declares) and names for it the service's backend and live version and
    slot; the CDN comes back through the host's origin frontend (`fe_origin`) to the service's
    backend. Without it, the frontend goes straight to the backend (a host without a CDN).

    `canaries`: the services whose canary runs, with both slots' weights, so that a reload (of
    another environment, on the same host) keeps each canary as it is."""
    canaries = canaries or {}
    lines = [f"# Managed by flowmasters for environment '{environment}'; releases rewrite it."]
    for route in routes:
        be = backend_name(environment, route.service)
        cookie = canary_cookie(environment, route.service)
        lines += [
            f"frontend fe_{environment}_{route.service}",
            f"    bind 127.0.0.1:{route.public_port}",
        ]
        if live_map:
            lines.append(
                f"    http-request set-var(txn.fm_canary) str({be}.canary),map({live_map},0)"
            )
        if live_map and cdn:
            lines += [
                f"    http-request set-header X-FM-Backend {be}",
                f"    http-request set-header X-FM-Live-Version %[str({be}.version),map({live_map},none)]",
                f"    http-request set-header X-FM-Live-Slot %[str({be}.slot),map({live_map},none)]",
                "    http-request del-header X-FM-Private",
                *(
                    f"    http-request set-header X-FM-Private 1 if {{ path_beg {path} }}"
                    for path in route.private_paths
                ),
                f"    use_backend {be} if {{ var(txn.fm_canary) -m str 1 }}",
                "    default_backend be_cdn",
            ]
        else:
            lines.append(f"    default_backend {be}")
        lines += [
            f"backend {be}",
            f"    option httpchk GET {route.health_path}",
            "    http-check expect status 200",
            # A slow answer is not a dead server: a check may take 5 s (without this, `inter`
            # is the whole check's timeout, and under load the only server of a backend was
            # taken out while it still served). A refused connection still fails at once.
            "    timeout check 5s",
            # Which slot answered: the CDN stores an answer only from the slot it expects.
            "    http-response set-header X-FM-Slot %[srv_name]",
        ]
        if live_map:
            lines += [
                f"    http-request set-var(txn.fm_cookie) req.cook({cookie})",
                *(
                    f"    use-server {server_name(slot)} if {{ var(txn.fm_canary) -m str 1 }} "
                    f"{{ var(txn.fm_cookie) -m str {server_name(slot)} }}"
                    for slot in SLOTS
                ),
                f'    http-response add-header Set-Cookie "{cookie}=%[srv_name]; Path=/; HttpOnly; '
                'SameSite=Lax" if { var(txn.fm_canary) -m str 1 } !{ var(txn.fm_cookie) -m found }',
            ]
        canary = canaries.get(route.service)
        for slot, port in zip(SLOTS, route.slot_ports, strict=True):
            if canary is not None:
                weight = canary.weight if slot == canary.slot else canary.stable_weight
                state = f" weight {weight}"
            else:
                state = "" if live.get(route.service) == slot else " disabled"
            lines.append(f"    server {server_name(slot)} 127.0.0.1:{port} {CHECK}{state}")
    return "\n".join(lines) + "\n"


def render_map(
    environment: str,
    routes: Sequence[ServiceRoute],
    live: Mapping[str, int | None],
    versions: Mapping[str, str | None],
    canaries: Mapping[str, Canary] | None = None,
) -> str:
    """The environment's live map: per service, its live slot and version (`none` before the
    first release). The CDN keys pages by the version, so one version's pages never answer for
    another's; a switch updates the map at runtime (`set map`), and this file keeps it across
    reloads."""
    lines = []
    for route in routes:
        be = backend_name(environment, route.service)
        slot = live.get(route.service)
        lines.append(f"{be}.slot {server_name(slot) if slot is not None else 'none'}")
        lines.append(f"{be}.version {versions.get(route.service) or 'none'}")
        lines.append(f"{be}.canary {1 if route.service in (canaries or {}) else 0}")
    return "\n".join(lines) + "\n"


def map_path(config_dir: str, environment: str) -> str:
    """Beside the config file; HAProxy reads only `*.cfg` as configuration from the folder."""
    return str(Path(config_dir) / f"{environment}.map")


def parse_stat(csv_text: str) -> dict[tuple[str, str], ServerState]:
    """`show stat` CSV to {(backend, server): state}, servers only."""
    text = csv_text.lstrip("# ").strip()
    states = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("svname") in ("FRONTEND", "BACKEND") or not row.get("pxname"):
            continue
        states[(row["pxname"], row["svname"])] = ServerState(
            status=row["status"], sessions=int(row["scur"] or 0), weight=int(row.get("weight") or 1)
        )
    return states


def is_serving(status: str) -> bool:
    """Whether HAProxy sends traffic to a server in this `show stat` status. "UP 1/2" is up with
    one failed check (HAProxy keeps it in rotation until `fall` checks fail); "DOWN 1/2" is down
    with one passed check (not in rotation until `rise`); NOLB, DRAIN and MAINT take no new
    traffic. The status is parsed, never compared as one string."""
    state, _, progress = status.strip().partition(" ")
    if state != "UP":
        return False
    return progress == "" or re.fullmatch(r"\d+/\d+", progress) is not None


def in_rotation(state: ServerState | None) -> bool:
    """Whether HAProxy may send this server traffic: it exists and is not in maintenance."""
    return state is not None and not state.status.startswith("MAINT")


def live_slot(states: Mapping[tuple[str, str], ServerState], backend: str) -> int | None:
    """The slot taking traffic: the one not in maintenance. Mid-switch both are in rotation: the
    one draining is the old one (a switch drains the old slot after the new one is up). During
    a canary both are: the canary's weight is even, the stable's odd (`canary_weights`).
    Otherwise, the first."""
    rotating = []
    for slot in SLOTS:
        state = states.get((backend, server_name(slot)))
        if in_rotation(state):
            canary = state.weight % 2 == 0
            rotating.append((state.status.startswith("DRAIN"), canary, slot))
    return min(rotating)[2] if rotating else None


class HaproxyAdmin:
    """A client of HAProxy's runtime API socket."""

    def __init__(self, socket_path: str, log: Callable[[str], None] = lambda _: None):
        self.socket_path = socket_path
        self.log = log

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(self.socket_path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except FileNotFoundError as exc:
            raise ReleaseError(
                f"HAProxy admin socket {self.socket_path} does not exist: the load balancer is not "
                "running; start it with `scripts/stack.sh up`"
            ) from exc
        except OSError as exc:
            raise TransientError(f"HAProxy admin socket {self.socket_path}: {exc}") from exc
        if not chunks:
            # HAProxy answers every command with at least a newline. Nothing at all is a
            # connection closed before the answer: a worker going away in a reload or a
            # restart. Whether a `set` applied is unknown, and each is safe to send again.
            raise TransientError(
                f"HAProxy admin socket {self.socket_path} closed the connection without "
                f"answering `{line}` (a reload or restart of HAProxy?)"
            )
        reply = b"".join(chunks).decode()
        if any(word in reply for word in ("No such", "Unknown command", "Require")):
            raise ReleaseError(f"HAProxy refused `{line}`: {reply.strip()}")
        return reply

    def states(self) -> dict[tuple[str, str], ServerState]:
        reply = self.command("show stat")
        if not reply.endswith("\n\n"):
            # HAProxy ends the table with an empty line; without it the answer was cut short,
            # and a server missing from it would read as "no live slot".
            raise TransientError(
                f"HAProxy admin socket {self.socket_path}: the answer to `show stat` was cut "
                f"short after {len(reply)} bytes"
            )
        return parse_stat(reply)

    def set_map(self, path: str, key: str, value: str) -> None:
        """A live map entry, at once (every key exists: `render_map` writes each service's)."""
        self.command(f"set map {path} {key} {value}")

    def set_state(self, backend: str, slot: int, state: str) -> None:
        self.command(f"set server {backend}/{server_name(slot)} state {state}")

    def set_weight(self, backend: str, slot: int, weight: int) -> None:
        self.command(f"set weight {backend}/{server_name(slot)} {weight}")

    def wait_for(
        self,
        what: str,
        done: Callable[[dict[tuple[str, str], ServerState]], bool],
        timeout: float,
    ) -> None:
        """Bounded polling of `show stat`, with progress in the log."""
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 5
        while True:
            states = self.states()
            if done(states):
                return
            if time.monotonic() > deadline:
                raise ReleaseError(f"HAProxy: {what} did not happen within {timeout:.0f}s")
            if time.monotonic() > next_note:
                self.log(f"HAProxy: still waiting until {what}")
                next_note += 5
            time.sleep(0.2)

    def switch(
        self,
        backend: str,
        new: int,
        old: int | None,
        drain_timeout: float = 30,
        moved: Callable[[], None] = lambda: None,
    ) -> None:
        """Send traffic to `new`, drain and park `old`. No request is dropped on the way.
        `moved` runs as soon as new requests go to `new` only (before the drain's wait). The new
        slot gets the default weight: an aborted canary's slot was left at 0."""
        self.set_weight(backend, new, 1)
        self.set_state(backend, new, "ready")
        new_key = (backend, server_name(new))
        self.wait_for(
            f"{new_key[1]} of {backend} is UP",
            lambda s: is_serving(s[new_key].status),
            timeout=30,
        )
        if old is None or old == new:
            moved()
            return
        old_key = (backend, server_name(old))
        self.set_state(backend, old, "drain")
        moved()
        self.wait_for(
            f"{old_key[1]} of {backend} has no sessions",
            lambda s: s[old_key].sessions == 0,
            timeout=drain_timeout,
        )
        self.set_state(backend, old, "maint")

    def park(self, backend: str, slot: int) -> None:
        self.set_state(backend, slot, "maint")


@contextmanager
def config_lock(config_dir: str) -> Iterator[None]:
    """The host's HAProxy configuration to this holder alone (see the module's doc): other
    environments' switches and reloads wait. A file lock, so it holds across processes (each
    release is one); HAProxy reads only `*.cfg` from the folder."""
    path = Path(config_dir)
    path.mkdir(parents=True, exist_ok=True)
    with (path / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_config(config_dir: str, environment: str, text: str, suffix: str = ".cfg") -> bool:
    """Write the environment's file (its config, or its map with suffix ".map"); True when its
    content changed."""
    path = Path(config_dir) / f"{environment}{suffix}"
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def reload(config_dir: str, pidfile: str) -> None:
    """Validate the whole configuration, then ask the HAProxy master to reload it."""
    main = Path(config_dir).parent / "haproxy.cfg"
    check = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(main), "-f", config_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise ReleaseError(f"HAProxy rejected the configuration in {config_dir}: {check.stderr}")
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        os.kill(pid, 12)  # SIGUSR2: the master re-reads its files and starts a new worker
    except (OSError, ValueError, IndexError) as exc:
        raise ReleaseError(
            f"cannot reload HAProxy through {pidfile} ({exc}): is it running? "
            "Start it with `scripts/stack.sh up`"
        ) from exc
