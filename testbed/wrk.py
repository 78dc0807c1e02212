"""Load from wrk (Debian's package): many connections at once, from its own process.

    with Wrk("http://127.0.0.1:8080/", connections=10, delay_ms=100) as load:
        ...  # a release runs here
    load.result.failed, load.result.statuses, load.result.rate

wrk runs until it is stopped (SIGINT: it prints its summary then) or `max_seconds` pass. A Lua
script counts every answer by HTTP status and, where `version_pattern` is given, by the version the
answer carried; socket errors (connect, read, write, timeout) come from wrk itself. `delay_ms`
paces each connection (wrk's `delay()`), so the load is a steady rate users would make, not a
flood that measures only the machine's CPU. `rate` instead sets the whole process's requests/s,
held whatever the latency (while `connections` cover it). `flag_text` counts a 2xx answer whose body holds it
(a page that rendered "content unavailable") as failed too. `headers` go with every request
(a Cookie: what a CDN passes to the origin).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; versions = {}; flagged = 0 end
%(delay)s
function response(status, headers, body)
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  %(version_line)s
  %(flag_line)s
end
function done(summary, latency, requests)
  local all, seen, flags = {}, {}, 0
  for _, t in ipairs(threads) do
    flags = flags + t:get("flagged")
    for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
    for k, v in pairs(t:get("versions")) do seen[k] = (seen[k] or 0) + v end
  end
  local function obj(t)
    local parts = {}
    for k, v in pairs(t) do table.insert(parts, string.format("%%q:%%d", k, v)) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local e = summary.errors
  io.write(string.format(
    "FMWRK {\"requests\":%%d,\"seconds\":%%.3f,\"statuses\":%%s,\"versions\":%%s," ..
    "\"flagged\":%%d," ..
    "\"errors\":{\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"timeout\":%%d}," ..
    "\"p50_ms\":%%.1f,\"p99_ms\":%%.1f,\"max_ms\":%%.1f}\n",
    summary.requests, summary.duration / 1e6, obj(all), obj(seen), flags,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""
VERSION_LINE = """local v = body and string.match(body, %s) or nil
  if v then versions[v] = (versions[v] or 0) + 1 end"""
FIXED_DELAY = "function delay() return %d end"
# An even rate per thread, whatever the latency: each request is given the next send slot, `step`
# ms after the previous one (or now, when the thread fell behind), and waits until it. The clock
# is clock_gettime(CLOCK_MONOTONIC) through LuaJIT's ffi (wrk's Lua has no clock of its own).
PACED_DELAY = """local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } fm_timespec;
           int clock_gettime(int, fm_timespec *); ]]
local ts = ffi.new("fm_timespec")
local slot = 0
function delay()
  ffi.C.clock_gettime(1, ts)
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  slot = math.max(slot + %f, now)
  return math.floor(slot - now)
end"""
FLAG_LINE = (
    """if status < 300 and body and string.find(body, %s, 1, true) then flagged = flagged + 1 end"""
)


@dataclass
class WrkResult:
    url: str
    requests: int
    seconds: float
    statuses: dict[str, int]
    versions: dict[str, int]
    errors: dict[str, int]
    flagged: int  # 2xx answers whose body holds `flag_text`: a page that rendered an error
    p50_ms: float
    p99_ms: float
    max_ms: float
    output: str = field(repr=False, default="")

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.startswith("2"))

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors + self.flagged

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.url}: {self.requests} requests in {self.seconds:.1f}s ({self.rate:.0f}/s), "
            f"statuses {self.statuses}, socket errors {self.errors}, flagged {self.flagged}, "
            f"versions {self.versions}, "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, max {self.max_ms:.0f} ms"
        )


class Wrk:
    """A wrk process against `url` for the duration of a `with` block."""

    def __init__(
        self,
        url: str,
        connections: int = 10,
        delay_ms: int = 100,
        rate: float | None = None,
        threads: int = 2,
        timeout_s: int = 10,
        max_seconds: int = 900,
        version_pattern: str | None = None,
        flag_text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if shutil.which("wrk") is None:
            raise RuntimeError(
                "wrk is not installed: `apt-get install wrk` (scripts/stack.sh does)"
            )
        self.url = url
        version_line = VERSION_LINE % json.dumps(version_pattern) if version_pattern else ""
        flag_line = FLAG_LINE % json.dumps(flag_text) if flag_text else ""
        self._dir = Path(tempfile.mkdtemp(prefix="fm-wrk-"))
        self._script = self._dir / "count.lua"
        self._script.write_text(
            SCRIPT
            % {
                "delay": PACED_DELAY % (1000 * min(threads, connections) / rate)
                if rate
                else FIXED_DELAY % delay_ms,
                "version_line": version_line,
                "flag_line": flag_line,
            }
        )
        self._argv = [
            "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max_seconds}s",
            f"--timeout={timeout_s}s", "-s", str(self._script),
            *(f"-H{name}: {value}" for name, value in (headers or {}).items()), url,
        ]  # fmt: skip
        self._process: subprocess.Popen[str] | None = None
        self.result: WrkResult | None = None

    def __enter__(self) -> Wrk:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        time.sleep(0.5)  # wrk connects its connections before the block's work starts
        if self._process.poll() is not None:
            raise RuntimeError(f"wrk exited at once: {self._process.stdout.read()}")  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> WrkResult:
        """SIGINT (wrk then prints its summary and runs the script's done()), bounded wait."""
        assert self._process is not None
        if self.result is not None:
            return self.result
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            output, _ = self._process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            output, _ = self._process.communicate()
        shutil.rmtree(self._dir, ignore_errors=True)
        self.result = parse(self.url, output)
        return self.result


def parse(url: str, output: str) -> WrkResult:
    """The script's FMWRK line of wrk's output."""
    for line in output.splitlines():
        if line.startswith("FMWRK "):
            data = json.loads(line.removeprefix("FMWRK "))
            return WrkResult(url=url, output=output, **data)
    raise RuntimeError(f"wrk printed no summary line:\n{output}")
