"""Build figures of the real stack (examples/flowmasters-payload): wall time per image, the peak
memory of `next build`, and the image sizes.

    eval "$(scripts/stack.sh env)"
    .venv/bin/python -m benchmarks.real_stack            # --no-cache: a cold build of each image
    .venv/bin/python -m benchmarks.real_stack --cached   # what a rebuild with no change costs

The images are built one after the other with the Docker CLI (as the release's engine would
build them) and removed afterwards. Peak memory is the largest sum, sampled every 0.5 s, of the
resident memory of the processes running `next build` (the build's own process and its workers),
read from /proc: the builds' processes run on this host, in the engine's containers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "examples" / "flowmasters-payload"
IMAGES = [  # (name, context, Dockerfile stage)
    ("backend-migrator", "backend", "migrator"),
    ("backend", "backend", None),
    ("frontend", "frontend", None),
]


def next_build_rss() -> int:
    """Bytes resident in processes whose command line runs Next.js's build."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"next" not in cmdline or b"build" not in cmdline:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class PeakMemory:
    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, next_build_rss())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build(name: str, context: str, stage: str | None, tag: str, cached: bool) -> dict:
    argv = ["docker", "build", "--network", "host", "-q", "-t", tag,
            "--build-arg", f"NODE_IMAGE={os.environ.get('FM_NODE_IMAGE', 'node:24.11.1-bookworm-slim')}",
            "--build-arg", "APP_VERSION=bench"]  # fmt: skip
    if not cached:
        argv.append("--no-cache")
    if stage:
        argv += ["--target", stage]
    started = time.monotonic()
    with PeakMemory() as memory:
        subprocess.run([*argv, str(APP / context)], check=True, capture_output=True)
    size = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", tag],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {
        "image": name,
        "seconds": round(time.monotonic() - started, 1),
        "next_build_peak_mib": round(memory.peak / 2**20) if memory.peak else None,
        "size_mb": round(int(size) / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cached", action="store_true", help="keep the engine's layer cache")
    args = parser.parse_args()
    stamp = str(int(time.time()))
    rows = []
    try:
        for name, context, stage in IMAGES:
            rows.append(build(name, context, stage, f"fmbench/{name}:{stamp}", args.cached))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for name, _, _ in IMAGES:
            subprocess.run(["docker", "rmi", f"fmbench/{name}:{stamp}"], capture_output=True)
    print("\n| image | build (s) | next build peak (MiB) | size (MB) |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['image']} | {r['seconds']} | {r['next_build_peak_mib'] or '-'} | {r['size_mb']} |"
        )


if __name__ == "__main__":
    main()
