"""Figures of the Docker host's CDN (docs/cdn.md) on the main stack's `local` (the real stack,
released by `scripts/release.sh` first):

    eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.cdn throughput   # / through the CDN and from the origin, wrk
    .venv/bin/python -m benchmarks.cdn edit         # an editor's change to the public page, x5
    .venv/bin/python -m benchmarks.cdn edit --load  # the same while wrk keeps / busy
    .venv/bin/python -m benchmarks.cdn release      # a frontend release under wrk
    .venv/bin/python -m benchmarks.cdn warm         # first requests: warm build vs cold one

`throughput`: wrk (its own process, 2 threads, 20 connections, 10 s) on the frontend's `/`
through the CDN, with the CDN's hit ratio over the run (varnishstat's counters before and
after), then on the live slot's own port (Next.js's incremental cache, no CDN).
`edit`: an editor changes a page's title through Payload's API; a client asks for the public `/`
every 50 ms until the new title is there. Median and max of 5. With --load, wrk keeps asking
for `/` through the CDN meanwhile, 2,000 requests/s on 20 connections (a flood would measure
only that wrk, Varnish and HAProxy take both cores from the backend and Next.js): the CDN's
copy is then always fresh, and its second of s-maxage is what an edit waits for.
`release`: a release of the frontend alone (a copy of the app with a new version's code) under
wrk at 2,000 requests/s on 20 connections, and a client asking for `/` every 20 ms: failed
requests, and after the first answer of the new version, any answer of the previous one (the
last stale answer; meaningful when the release completed: a failed one switches back). A flood
instead (wrk without pacing, 17,000 requests/s through the CDN) starves the build, the health
checks and the app of CPU on a 2-core machine, and measures only that.
`warm`: the live frontend's image started beside it on a spare port, 5 times with the live
build's cache namespace (what a rollback's container meets: its build's pages still in Redis)
and 5 times with a namespace nobody wrote (a cold release): the first three `/` answers' times.
Each prints a JSON line; results go to benchmarks/results/cdn-<what>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from testbed.scratch import new_code
from testbed.wrk import Wrk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FRONTEND, BACKEND = "http://127.0.0.1:8080", "http://127.0.0.1:8081"
VERSION = re.compile(r'data-dpl-id="([^"]+)"')
VERSION_IN_PAGE = 'data%-dpl%-id="([^"]+)"'
LOAD_RATE = 2000  # requests/s of `edit --load`


def varnish_counters() -> dict[str, int]:
    work = Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters")) / "varnish" / "work"
    out = subprocess.run(
        ["varnishstat", "-n", str(work), "-1", "-j"], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    counters = data.get("counters", data)
    names = ("MAIN.cache_hit", "MAIN.cache_miss", "MAIN.cache_hitmiss", "MAIN.s_pass")
    return {n: int(counters[n]["value"]) for n in names if n in counters}


def live_frontend_port() -> int:
    """The live slot of local's frontend, from HAProxy's live map (conf.d/local.map)."""
    stack = Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters"))
    live = dict(
        line.split(" ", 1) for line in (stack / "haproxy/conf.d/local.map").read_text().splitlines()
    )
    slot = int(live["be_local_frontend.slot"].removeprefix("slot"))
    return 18102 + slot  # local.yaml: port_base 18100, the frontend second


def plain_wrk(url: str, seconds: int = 10) -> dict:
    """wrk without a script: testbed.Wrk's Lua counts each answer's status and version, and at
    these rates that costs wrk itself a fifth of its requests (24,400 against 29,000)."""
    out = subprocess.run(
        ["wrk", "-t2", "-c20", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, flags=re.M))
    return {
        "rate": round(rate),
        "failed": (int(bad.group(1)) if bad else 0)
        + (sum(map(int, errors.groups())) if errors else 0),
        "p50": latency.get("50"),
        "p99": latency.get("99"),
    }


def throughput() -> dict:
    httpx.get(f"{FRONTEND}/", timeout=30).raise_for_status()
    before = varnish_counters()
    cdn = plain_wrk(f"{FRONTEND}/")
    time.sleep(2)  # Varnish adds its threads' counters to the totals every so often
    after = varnish_counters()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    looked_up = delta["MAIN.cache_hit"] + delta["MAIN.cache_miss"]
    origin_url = f"http://127.0.0.1:{live_frontend_port()}/"
    origin = plain_wrk(origin_url)
    hit_ratio = round(delta["MAIN.cache_hit"] / looked_up, 5) if looked_up else None
    return {
        "cdn": {**cdn, "hit_ratio": hit_ratio, "counters": delta},
        "origin": {"url": origin_url, **origin},
    }


def editor_headers() -> dict[str, str]:
    """Log in as an editor made for this (the first user, or one made by it)."""
    email, password = "benchmark@example.invalid", "benchmark-" + "x" * 12
    body = {"email": email, "password": password}
    answer = httpx.post(f"{BACKEND}/api/users/login", json=body, timeout=30)
    if answer.status_code != 200:
        first = httpx.post(f"{BACKEND}/api/users/first-register", json=body, timeout=30)
        if first.status_code >= 400:
            raise SystemExit(
                "the benchmark needs an editor: create benchmark@example.invalid with password "
                f"{password!r} in the admin ({BACKEND}/admin), then run it again"
            )
        answer = httpx.post(f"{BACKEND}/api/users/login", json=body, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"JWT {answer.json()['token']}"}


def edit(rounds: int = 5, load: bool = False) -> dict:
    if load:
        with Wrk(f"{FRONTEND}/", connections=20, rate=LOAD_RATE) as busy:
            result = edit(rounds)
        return {**result, "load": busy.result.summary()}
    headers = editor_headers()
    slug = f"bench-{uuid.uuid4().hex[:6]}"
    page = httpx.post(
        f"{BACKEND}/api/pages", headers=headers, json={"title": "start", "slug": slug}, timeout=30
    ).json()["doc"]
    seconds = []
    try:
        for _ in range(rounds):
            title = f"Edited {uuid.uuid4().hex[:8]}"
            saved = time.monotonic()
            httpx.patch(
                f"{BACKEND}/api/pages/{page['id']}", headers=headers, json={"title": title}
            ).raise_for_status()
            while title not in httpx.get(f"{FRONTEND}/", timeout=30).text:
                time.sleep(0.05)
            seconds.append(round(time.monotonic() - saved, 3))
            time.sleep(1.5)
    finally:
        httpx.delete(f"{BACKEND}/api/pages/{page['id']}", headers=headers, timeout=30)
    return {"seconds": seconds, "median": statistics.median(seconds), "max": max(seconds)}


def release_under_load() -> dict:
    from flows.release import release

    version = f"bench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="fm-cdn-bench-"))
    source = work / "app"
    shutil.copytree(
        REPO / "examples" / "flowmasters-payload",
        source,
        ignore=shutil.ignore_patterns("node_modules", ".next", "media"),
    )
    new_code(source, version, services=("frontend",))
    seen: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                found = VERSION.search(client.get(f"{FRONTEND}/").text)
                seen.append((time.monotonic(), found.group(1) if found else None))
                time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        with Wrk(
            f"{FRONTEND}/", connections=20, rate=LOAD_RATE, version_pattern=VERSION_IN_PAGE
        ) as load:
            poller.start()
            state = release("local", version, str(source), return_state=True)
            time.sleep(3)
            stop.set()
            poller.join()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first_new = next((t for t, v in seen if v == version), None)
    stale_after = [t - first_new for t, v in seen if first_new and t > first_new and v != version]
    return {
        "release": state.type.value,
        "version": version,
        "wrk": load.result.summary(),
        "failed": load.result.failed,
        "polled": len(seen),
        "stale_answers_after_the_switch": len(stale_after),
        "last_stale_after_the_switch_s": round(max(stale_after), 3) if stale_after else 0.0,
    }


def first_answers(image: str, namespace: str, port: int = 18199) -> list[float]:
    """Seconds to each of the first three `/` answers of a new container of `image` whose cache
    namespace is `namespace` (APP_VERSION; FM_ENVIRONMENT stays local's)."""
    stack = Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters"))
    redis_url = (stack / "secrets" / "redis-url").read_text().strip()
    name = f"fm-bench-warm-{uuid.uuid4().hex[:6]}"
    env = {
        "PORT": str(port), "HOSTNAME": "127.0.0.1", "BACKEND_URL": BACKEND,
        "REDIS_URL": redis_url, "FM_ENVIRONMENT": "local", "APP_VERSION": namespace,
    }  # fmt: skip
    args = [f"-e{k}={v}" for k, v in env.items()]
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "host", "--name", name, *args, image],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # ready: its health answers (which touches no page)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer within 60 s")
            time.sleep(0.1)
        times = []
        for _ in range(3):
            started = time.monotonic()
            httpx.get(f"http://127.0.0.1:{port}/", timeout=30).raise_for_status()
            times.append(round(time.monotonic() - started, 3))
        return times
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def warm(rounds: int = 5) -> dict:
    stack = Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters"))
    live = dict(
        line.split(" ", 1) for line in (stack / "haproxy/conf.d/local.map").read_text().splitlines()
    )
    version = live["be_local_frontend.version"]
    image = subprocess.run(
        ["docker", "ps", "--filter", "label=flowmasters.environment=local",
         "--filter", "label=flowmasters.service=frontend",
         "--filter", f"label=flowmasters.version={version}", "--format", "{{.Image}}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip
    httpx.get(f"{FRONTEND}/", timeout=30)  # the live build's `/` is in Redis
    warm_s = [first_answers(image, version) for _ in range(rounds)]
    cold_s = [first_answers(image, f"cold-{uuid.uuid4().hex[:6]}") for _ in range(rounds)]
    return {
        "image": image,
        "warm_s": warm_s,
        "cold_s": cold_s,
        "warm_first_median": statistics.median(t[0] for t in warm_s),
        "cold_first_median": statistics.median(t[0] for t in cold_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["throughput", "edit", "release", "warm"])
    parser.add_argument("--load", action="store_true", help="edit: with wrk on / meanwhile")
    args = parser.parse_args()
    what = args.what
    actions = {
        "throughput": throughput,
        "edit": lambda: edit(load=args.load),
        "release": release_under_load,
        "warm": warm,
    }
    result = actions[what]()
    print(json.dumps(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"cdn-{what}-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
