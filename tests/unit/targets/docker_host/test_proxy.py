import socket
import threading
import time
from collections.abc import Iterator

import pytest

from domain.errors import ReleaseError, TransientError
from targets.docker_host.proxy import (
    Canary,
    HaproxyAdmin,
    ServerState,
    ServiceRoute,
    canary_weights,
    check_ports,
    config_lock,
    ephemeral_range,
    is_serving,
    live_slot,
    parse_stat,
    port_in_use,
    public_port,
    render_config,
    render_map,
    running_canary,
    squatted_slots,
)

ROUTES = [
    ServiceRoute("backend", 8081, (9100, 9101), "/api/health"),
    ServiceRoute("frontend", 8080, (9110, 9111), "/health"),
]


class TestRenderConfig:
    def test_two_services_one_live_on_slot1_and_one_not_live_yet(self):
        text = render_config("staging", ROUTES, {"backend": 1, "frontend": None})

        assert text == (
            "# Managed by flowmasters for environment 'staging'; releases rewrite it.\n"
            "frontend fe_staging_backend\n"
            "    bind 127.0.0.1:8081\n"
            "    default_backend be_staging_backend\n"
            "backend be_staging_backend\n"
            "    option httpchk GET /api/health\n"
            "    http-check expect status 200\n"
            "    timeout check 5s\n"
            "    http-response set-header X-FM-Slot %[srv_name]\n"
            "    server slot0 127.0.0.1:9100 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 disabled\n"
            "    server slot1 127.0.0.1:9101 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1\n"
            "frontend fe_staging_frontend\n"
            "    bind 127.0.0.1:8080\n"
            "    default_backend be_staging_frontend\n"
            "backend be_staging_frontend\n"
            "    option httpchk GET /health\n"
            "    http-check expect status 200\n"
            "    timeout check 5s\n"
            "    http-response set-header X-FM-Slot %[srv_name]\n"
            "    server slot0 127.0.0.1:9110 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 disabled\n"
            "    server slot1 127.0.0.1:9111 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 disabled\n"
        )

    def test_live_slot0_enables_slot0_only(self):
        lines = render_config("prod", ROUTES[:1], {"backend": 0}).splitlines()

        assert lines[-2:] == [
            "    server slot0 127.0.0.1:9100 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1",
            "    server slot1 127.0.0.1:9101 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 disabled",
        ]

    def test_with_a_cdn_the_public_frontend_goes_through_it_naming_the_live_version(self):
        route = ServiceRoute("backend", 8081, (9100, 9101), "/api/health", ("/admin",))
        text = render_config("prod", [route], {"backend": 0}, live_map="/x/prod.map", cdn=True)
        frontend = text[text.index("frontend ") : text.index("\nbackend be_prod_backend")]

        assert frontend.splitlines()[2:] == [
            "    http-request set-var(txn.fm_canary) str(be_prod_backend.canary),map(/x/prod.map,0)",
            "    http-request set-header X-FM-Backend be_prod_backend",
            "    http-request set-header X-FM-Live-Version "
            "%[str(be_prod_backend.version),map(/x/prod.map,none)]",
            "    http-request set-header X-FM-Live-Slot "
            "%[str(be_prod_backend.slot),map(/x/prod.map,none)]",
            "    http-request del-header X-FM-Private",
            "    http-request set-header X-FM-Private 1 if { path_beg /admin }",
            # during a canary, past the CDN: each version's users get that version's pages
            "    use_backend be_prod_backend if { var(txn.fm_canary) -m str 1 }",
            "    default_backend be_cdn",
        ]

    def test_during_a_canary_a_client_keeps_the_slot_its_cookie_names(self):
        route = ServiceRoute("backend", 8081, (9100, 9101), "/api/health")
        text = render_config("prod-eu", [route], {"backend": 0}, live_map="/x/prod-eu.map")
        backend = text[text.index("\nbackend be_prod-eu_backend") :].splitlines()

        assert "    default_backend be_prod-eu_backend" in text  # no CDN: straight to it
        assert [line for line in backend if "cook" in line] == [
            "    http-request set-var(txn.fm_cookie) req.cook(fm_prod_eu_backend)",
            "    use-server slot0 if { var(txn.fm_canary) -m str 1 } "
            "{ var(txn.fm_cookie) -m str slot0 }",
            "    use-server slot1 if { var(txn.fm_canary) -m str 1 } "
            "{ var(txn.fm_cookie) -m str slot1 }",
            '    http-response add-header Set-Cookie "fm_prod_eu_backend=%[srv_name]; Path=/; '
            'HttpOnly; SameSite=Lax" if { var(txn.fm_canary) -m str 1 } '
            "!{ var(txn.fm_cookie) -m found }",
        ]

    def test_a_running_canary_is_written_with_its_weights_so_a_reload_keeps_it(self):
        route = ServiceRoute("frontend", 8080, (9100, 9101), "/api/health")
        canary = Canary(slot=1, weight=20, stable_weight=181)

        text = render_config(
            "prod", [route], {"frontend": 0}, "/x/prod.map", canaries={"frontend": canary}
        )
        live_map = render_map(
            "prod", [route], {"frontend": 0}, {"frontend": "v1"}, {"frontend": canary}
        )

        assert text.splitlines()[-2:] == [
            "    server slot0 127.0.0.1:9100 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 weight 181",
            "    server slot1 127.0.0.1:9101 check inter 2s fastinter 500ms downinter 1s fall 3 rise 1 weight 20",
        ]
        assert "be_prod_frontend.canary 1" in live_map.splitlines()

    def test_a_canary_is_read_from_haproxys_state(self):
        backend = "be_prod_frontend"

        def states(slot0: tuple[str, int], slot1: tuple[str, int]):
            return {
                (backend, "slot0"): ServerState(slot0[0], 0, slot0[1]),
                (backend, "slot1"): ServerState(slot1[0], 0, slot1[1]),
            }

        assert running_canary(states(("UP", 181), ("UP", 20)), backend) == Canary(1, 20, 181)
        assert running_canary(states(("UP", 1), ("DOWN", 0)), backend) == Canary(1, 0, 1)
        assert running_canary(states(("UP", 1), ("MAINT", 0)), backend) is None  # aborted
        assert running_canary(states(("UP", 1), ("UP", 1)), backend) is None  # mid-switch
        assert running_canary(states(("DRAIN", 181), ("UP", 1)), backend) is None  # promoted

    def test_canary_weights_give_the_share_asked_and_tell_the_stable_apart(self):
        assert canary_weights(10) == (20, 181)
        assert canary_weights(50) == (100, 101)
        assert canary_weights(99) == (198, 3)

    def test_the_live_map_names_each_services_slot_and_version(self):
        text = render_map("prod", ROUTES, {"backend": 1, "frontend": None}, {"backend": "v7"})

        assert text == (
            "be_prod_backend.slot slot1\n"
            "be_prod_backend.version v7\n"
            "be_prod_backend.canary 0\n"
            "be_prod_frontend.slot none\n"
            "be_prod_frontend.version none\n"
            "be_prod_frontend.canary 0\n"
        )

    def test_service_missing_from_live_has_both_slots_disabled(self):
        text = render_config("prod", ROUTES[:1], {})

        assert text.count(" disabled\n") == 2


# HAProxy 2.6 `show stat` columns (the reply's first line, then one CSV row per proxy/server).
COLUMNS = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
]


def stat_row(pxname, svname, status, scur="0", **extra):
    values = {"pxname": pxname, "svname": svname, "status": status, "scur": scur, **extra}
    return ",".join(values.get(column, "") for column in COLUMNS) + ","


SHOW_STAT = "\n".join(
    [
        "# " + ",".join(COLUMNS) + ",",
        stat_row("fe_staging_backend", "FRONTEND", "OPEN", scur="3", slim="262120", mode="http"),
        stat_row("be_staging_backend", "slot0", "MAINT", stot="41", addr="127.0.0.1:9100"),
        stat_row("be_staging_backend", "slot1", "UP", scur="3", stot="97", addr="127.0.0.1:9101"),
        stat_row("be_staging_backend", "BACKEND", "UP", scur="3", algo="roundrobin"),
        stat_row("fe_staging_frontend", "FRONTEND", "OPEN", mode="http"),
        stat_row("be_staging_frontend", "slot0", "DRAIN", scur="2", check_status="L7OK"),
        stat_row("be_staging_frontend", "slot1", "DOWN", check_status="L4CON"),
        stat_row("be_staging_frontend", "BACKEND", "UP", scur="2"),
        "",
        "",
    ]
)


class TestParseStat:
    def test_servers_only_with_status_and_current_sessions(self):
        assert parse_stat(SHOW_STAT) == {
            ("be_staging_backend", "slot0"): ServerState(status="MAINT", sessions=0),
            ("be_staging_backend", "slot1"): ServerState(status="UP", sessions=3),
            ("be_staging_frontend", "slot0"): ServerState(status="DRAIN", sessions=2),
            ("be_staging_frontend", "slot1"): ServerState(status="DOWN", sessions=0),
        }

    def test_header_only_means_no_servers(self):
        assert parse_stat("# " + ",".join(COLUMNS) + ",\n\n") == {}


class AdminSocket:
    """A unix socket answering each connection's one command with the next of `answers`, then
    closing it: HAProxy's runtime API as a client sees it (a real socket, a scripted server)."""

    def __init__(self, path: str, answers: list[bytes]):
        self.answers = answers
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        for answer in self.answers:
            conn, _ = self.server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(answer)


@pytest.fixture
def admin_at(tmp_path) -> Iterator:
    made = []

    def at(*answers: bytes) -> HaproxyAdmin:
        made.append(AdminSocket(str(tmp_path / "admin.sock"), list(answers)))
        return HaproxyAdmin(str(tmp_path / "admin.sock"))

    yield at
    for server in made:
        server.server.close()


class TestHaproxyAdmin:
    """What a read of HAProxy's state makes of the answers a reload or restart can give: each is
    a transient failure (the step retries it), never a verdict on the servers."""

    def test_a_whole_table_is_read(self, admin_at):
        assert admin_at(SHOW_STAT.encode()).states() == parse_stat(SHOW_STAT)

    def test_a_connection_closed_without_an_answer_is_transient_and_named(self, admin_at):
        admin = admin_at(b"")

        with pytest.raises(
            TransientError, match="closed the connection without answering `show stat`"
        ):
            admin.states()

    def test_a_table_cut_short_is_transient_not_a_missing_server(self, admin_at):
        admin = admin_at(SHOW_STAT.encode()[:300])

        with pytest.raises(TransientError, match="cut short after 300 bytes"):
            admin.states()

    def test_a_set_command_answered_with_an_empty_line_succeeds(self, admin_at):
        assert admin_at(b"\n").command("set server be_x/slot0 state ready") == "\n"

    def test_a_missing_socket_says_how_to_start_the_load_balancer(self, tmp_path):
        with pytest.raises(ReleaseError, match=r"scripts/stack\.sh up"):
            HaproxyAdmin(str(tmp_path / "none.sock")).states()

    def test_a_socket_nobody_listens_on_is_transient(self, tmp_path):
        path = str(tmp_path / "admin.sock")
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(path)  # bound, never listening: HAProxy stopped, its socket file left

            with pytest.raises(TransientError, match=r"admin\.sock"):
                HaproxyAdmin(path).states()


class TestIsServing:
    """HAProxy's transitional statuses, as `show stat` prints them, decide whether a server is
    in rotation: "UP 1/2" (one check failed, still serving) is up; "DOWN 1/2" is not yet."""

    @pytest.mark.parametrize(
        ("status", "serving"),
        [
            ("UP", True),
            ("UP 1/2", True),
            ("UP 2/3", True),
            ("DOWN", False),
            ("DOWN 1/2", False),
            ("NOLB", False),
            ("DRAIN", False),
            ("MAINT", False),
            ("MAINT (resolution)", False),
            ("no check", False),
        ],
    )
    def test_status(self, status, serving):
        assert is_serving(status) is serving

    def test_read_from_a_show_stat_line(self):
        line = stat_row("be_local_backend", "slot1", "UP 1/2", scur="4", check_status="L7TOUT")
        states = parse_stat("# " + ",".join(COLUMNS) + ",\n" + line + "\n")

        assert is_serving(states[("be_local_backend", "slot1")].status) is True


class TestLiveSlot:
    BACKEND = "be_staging_backend"

    def states(self, slot0, slot1):
        found = {}
        for slot, status in ((0, slot0), (1, slot1)):
            if status is not None:
                found[(self.BACKEND, f"slot{slot}")] = ServerState(status=status, sessions=0)
        return found

    @pytest.mark.parametrize(
        ("slot0", "slot1", "expected"),
        [
            ("MAINT", "UP", 1),
            ("UP", "MAINT", 0),
            ("DRAIN", "MAINT", 0),
            ("MAINT", "DOWN", 1),
            ("MAINT (via be_staging_backend/slot1)", "UP", 1),
            ("UP", "UP", 0),  # mid-switch: the first one not in maintenance
            ("DRAIN", "UP", 1),  # mid-switch, the old one draining: the new one
            ("UP", "DRAIN", 0),
            ("DRAIN", "UP 1/2", 1),
            ("MAINT", "MAINT", None),
            (None, "UP", 1),
        ],
    )
    def test_live_is_the_slot_not_in_maintenance_nor_draining(self, slot0, slot1, expected):
        assert live_slot(self.states(slot0, slot1), self.BACKEND) == expected

    def test_unknown_backend_has_no_live_slot(self):
        assert live_slot(self.states("UP", "MAINT"), "be_staging_other") is None

    @pytest.mark.parametrize("percent", [1, 10, 50, 99])
    def test_during_a_canary_the_live_slot_is_the_stable_one(self, percent):
        canary, stable = canary_weights(percent)
        for stable_slot in (0, 1):
            weights = {stable_slot: stable, 1 - stable_slot: canary}
            states = {
                (self.BACKEND, f"slot{slot}"): ServerState("UP", 0, weight)
                for slot, weight in weights.items()
            }
            assert live_slot(states, self.BACKEND) == stable_slot

    def test_weights_are_read_from_show_stat(self):
        line = stat_row("be_local_backend", "slot1", "UP", weight="181")
        states = parse_stat("# " + ",".join(COLUMNS) + ",\n" + line + "\n")

        assert states[("be_local_backend", "slot1")].weight == 181


class TestPublicPort:
    @pytest.mark.parametrize(
        ("url", "port"),
        [
            ("http://127.0.0.1:8081", 8081),
            ("http://127.0.0.1:8081/api/health", 8081),
            ("http://localhost:8080/", 8080),
        ],
    )
    def test_loopback_url_gives_its_port(self, url, port):
        assert public_port(url) == port

    @pytest.mark.parametrize(
        "url",
        [
            "http://app.example.invalid:8081",
            "http://0.0.0.0:8081",
            "http://app.example.com:80",
            "http://127.0.0.1",
            "http://localhost/",
        ],
    )
    def test_rejects_non_loopback_or_portless_url_naming_it(self, url):
        with pytest.raises(ReleaseError) as error:
            public_port(url)

        assert url in str(error.value)

    @pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:http"])
    def test_rejects_invalid_port_with_release_error(self, url):
        with pytest.raises(ReleaseError) as error:
            public_port(url)

        assert url in str(error.value)


class TestPorts:
    def test_ports_below_the_ephemeral_range_pass(self):
        assert (
            check_ports(ROUTES, (32768, 60999)) == "6 ports outside the ephemeral range 32768-60999"
        )

    def test_ports_in_the_ephemeral_range_are_named_with_what_to_do(self):
        routes = [ServiceRoute("backend", 8081, (40000, 40001), "/api/health")]

        with pytest.raises(ReleaseError) as error:
            check_ports(routes, (32768, 60999))

        assert str(error.value) == (
            "ports 40000, 40001 are in the kernel's ephemeral range 32768-60999 "
            "(net.ipv4.ip_local_port_range): outgoing connections take them at random, and a "
            "service then cannot listen there; choose public URLs and a port_base below 32768"
        )

    def test_the_range_is_the_kernels(self, tmp_path):
        setting = tmp_path / "ip_local_port_range"
        setting.write_text("20000\t29999\n")

        assert ephemeral_range(str(setting)) == (20000, 29999)
        assert ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)


def test_a_slot_port_held_by_another_process_is_named_and_ours_are_not():
    """Port 9101 is in use by one of the environment's containers (the previous revision kept
    running through a bake), 9110 by something else."""
    in_use = {9100, 9101, 9110}
    ours = {("backend", 0), ("backend", 1)}

    assert squatted_slots(ROUTES, in_use, ours) == ["port 9110 (frontend's slot 0)"]
    assert squatted_slots(ROUTES, set(), set()) == []


def test_a_port_someone_listens_on_is_in_use():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_a_stopped_servers_connections_in_time_wait_leave_its_port_free():
    """The server closes first, so its side of the connection waits in TIME_WAIT: a new
    version can start there. Servers bind with SO_REUSEADDR (Node, Python's http.server), and
    a connection in TIME_WAIT keeps its server's flag."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server's side closes first: it is the one in TIME_WAIT
        client.recv(1)
        client.close()
    assert not port_in_use(port)


def test_the_config_lock_keeps_a_second_holder_waiting_until_the_first_is_done(tmp_path):
    """A switch and a reload of two environments never interleave (each release is its own
    process; two threads take the lock through two open files, as two processes would)."""
    events: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with config_lock(str(tmp_path)):
            events.append("first in")
            first_holds.set()
            time.sleep(0.3)
            events.append("first out")

    def second() -> None:
        first_holds.wait(5)
        with config_lock(str(tmp_path)):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert events == ["first in", "first out", "second in"]
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # no *.cfg: HAProxy skips it
