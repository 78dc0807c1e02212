"""A prober in its own process: GET each URL every `--interval` seconds, one JSON line per answer.

    python -m benchmarks.probe --interval 0.02 --out probes.jsonl URL [URL ...]

Each line: {"t": <time.time()>, "url": .., "status": <HTTP status, 0 when no answer>, "version":
<the JSON body's "version", or null>}. It runs until SIGTERM or SIGINT. It is a separate process
so that what it measures (when the public URLs answered what) does not depend on the process that
runs the flow; benchmarks/mttr.py reads its file.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

import httpx

running = True


def stop(*_: Any) -> None:
    global running
    running = False


def answer(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        response = client.get(url)
    except httpx.TransportError:
        return {"t": time.time(), "url": url, "status": 0, "version": None}
    try:
        version = response.json().get("version")
    except (ValueError, AttributeError):
        version = None
    return {"t": time.time(), "url": url, "status": response.status_code, "version": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(args.out, "a") as out, httpx.Client(timeout=2) as client:
        while running:
            for url in args.urls:
                out.write(json.dumps(answer(client, url)) + "\n")
            out.flush()
            time.sleep(args.interval)


if __name__ == "__main__":
    main()
