"""Load generation from a separate process: `wrk` when installed, else `bench.loadgen`.

Both are closed-loop clients: `connections` connections each send the next request as soon
as the previous answer arrives. `wrk` (Debian: `apt-get install -y wrk`) is preferred: it is
written in C and leaves the CPU to the servers being measured; the Python client costs more
CPU per request, so its figures are lower, but it measures every target the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass
from dataclasses import field

from bench.harness import ROOT
from bench.harness import BenchError


@dataclass(frozen=True)
class Req:
    """One request of a load: method, path, headers and an optional JSON body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, t.Any] | None = None
    #: for paired runs (Python client): the server this request goes to, and its label
    base_url: str = ""
    tag: str = ""

    def wire(self) -> dict[str, t.Any]:
        headers = dict(self.headers)
        body = None
        if self.body is not None:
            body = json.dumps(self.body, separators=(",", ":"))
            headers["Content-Type"] = "application/json"
        return {"method": self.method, "path": self.path, "headers": headers, "body": body,
                "base_url": self.base_url, "tag": self.tag}


@dataclass(frozen=True)
class Result:
    """What one load run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def client_name(choice: str = "auto") -> str:
    """`wrk` or `python`, from the choice (`auto` takes wrk when it is on the PATH)."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install -y wrk), or use --client python")
    return choice


def _lua_str(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\' or byte < 32 or byte > 126:
            out.append(f"\\{byte:03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_LUA_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%.1f,"p99_us":%.1f,' ..
    '"status_errors":%d,"socket_errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_script(reqs: list[Req]) -> str:
    specs = []
    for req in reqs:
        wire = req.wire()
        headers = ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in wire["headers"].items())
        body = _lua_str(wire["body"]) if wire["body"] is not None else "nil"
        specs.append(f"{{{_lua_str(wire['method'])}, {_lua_str(wire['path'])}, {{{headers}}}, {body}}}")
    return (
        "local specs = {" + ",\n".join(specs) + "}\n"
        "local reqs = {}\nlocal i = 0\n"
        "function init(args)\n"
        "  for n, s in ipairs(specs) do reqs[n] = wrk.format(s[1], s[2], s[3], s[4]) end\n"
        "end\n"
        "function request()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n" + _LUA_DONE
    )


def _run_wrk(base_url: str, reqs: list[Req], connections: int, duration: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_lua_script(reqs))
        script = fh.name
    try:
        done = subprocess.run(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
             "-s", script, base_url],
            capture_output=True, text=True, timeout=duration + 60,
        )
    finally:
        os.unlink(script)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    data = json.loads(line.split(" ", 1)[1])
    return Result(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                  p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                  errors=data["status_errors"] + data["socket_errors"], client="wrk")


def _python(base_url: str, reqs: list[Req], connections: int, duration: float | None,
            count: int | None) -> dict[str, t.Any]:
    spec = {"base_url": base_url, "requests": [r.wire() for r in reqs],
            "connections": connections, "duration": duration, "count": count}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
        path = fh.name
    try:
        done = subprocess.run([sys.executable, "-m", "bench.loadgen", path], cwd=ROOT,
                              capture_output=True, text=True, timeout=(duration or 600) + 60)
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise BenchError(f"bench.loadgen failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout))


def _run_python(base_url: str, reqs: list[Req], connections: int, duration: float | None,
                count: int | None) -> Result:
    data = _python(base_url, reqs, connections, duration, count)
    return Result(requests=data["requests"], seconds=data["seconds"], p50_ms=data["p50_ms"],
                  p99_ms=data["p99_ms"], errors=data["errors"], client="python")


def run(base_url: str, reqs: list[Req], *, connections: int, duration: int,
        client: str = "auto") -> Result:
    """`duration` seconds of closed-loop load over `connections` connections."""
    if client_name(client) == "wrk":
        return _run_wrk(base_url, reqs, connections, duration)
    return _run_python(base_url, reqs, connections, duration, None)


def run_count(base_url: str, reqs: list[Req], *, connections: int, count: int) -> Result:
    """Exactly `count` requests (the Python client: wrk only stops on time)."""
    return _run_python(base_url, reqs, connections, None, count)


@dataclass(frozen=True)
class Tagged:
    """One tag's share of a paired run."""

    requests: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float


def run_paired(reqs: list[Req], *, duration: int) -> tuple[dict[str, Tagged], int]:
    """One connection per server, requests interleaved round-robin: per-tag latencies, errors."""
    data = _python(reqs[0].base_url, reqs, 1, duration, None)
    return {tag: Tagged(**v) for tag, v in data["tags"].items()}, int(data["errors"])
