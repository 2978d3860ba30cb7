"""The processes a benchmark needs, set up the way an account owner would, and always stopped.

Every process is started with `subprocess.Popen` and registered on a `contextlib.ExitStack`
that terminates it (then kills it after a grace period) when the benchmark ends, fails or is
interrupted. Everything listens on 127.0.0.1, on ports picked free by the OS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: `gateway` of this checkout (the venv's console script may belong to another checkout)
GATEWAY = [sys.executable, "-c", "from gateway.cli import main; main()"]
HOST = "127.0.0.1"
PARTNER = "bench"
RETURN_URL = "http://127.0.0.1:8070/signed"
#: high enough that no benchmark is refused; the limiter still counts every call
BENCH_RATE_LIMIT = "100000/minute"

POLICY = """\
partner = "bench"
display_name = "Benchmark partner"
operations = ["create_draft", "recipient_view", "status"]
rate_limit = "{rate_limit}"
return_urls = ["http://127.0.0.1:8070/signed"]
frame_ancestors = ["http://127.0.0.1:8070"]

[templates.membership]
template_id = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
role = "Member"
email_subject = "Your membership agreement"

[templates.membership.fields.member_number]
required = true
max_length = 20
pattern = "^[0-9]+$"

[templates.membership.fields.plan]
required = true
choices = ["basic", "plus", "family"]
"""

#: the body of every benchmark's `POST /v1/envelopes`
CREATE_BODY: dict[str, t.Any] = {
    "template": "membership",
    "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "fields": {"member_number": "12345", "plan": "plus"},
    "reference": "bench",
}


class BenchError(Exception):
    """A benchmark could not set itself up; the message says which step and why."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes], log: t.IO[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    log.close()


@dataclass
class Workspace:
    """A temp folder for one benchmark run (deployments, logs) and the processes it started."""

    stack: contextlib.ExitStack
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start a process whose output goes to `<root>/<name>.log`; stopped with the workspace."""
        log = open(self.root / f"{name}.log", "wb")  # closed by _stop
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.stack.callback(_stop, proc, log)
        self.procs[name] = proc
        return proc

    def wait_http(self, name: str, url: str, *, timeout: float = 30.0,
                  headers: dict[str, str] | None = None) -> None:
        """Wait until `url` answers 2xx, or fail with the tail of the process's log."""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if requests.get(url, headers=headers, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise BenchError(f"{name} did not come up at {url}:\n{_tail(self.root / f'{name}.log')}")


@contextlib.contextmanager
def workspace() -> t.Iterator[Workspace]:
    """A workspace whose processes are all stopped, and folder removed, on exit."""
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgw-bench-")))
        yield Workspace(stack, root)


def start_emulator(ws: Workspace, *, unlimited: bool, name: str = "emulator",
                   connect_retry: float | None = None) -> str:
    """The DocuSign emulator in its own process; returns its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.emulator", "--port", str(port)]
    if unlimited:
        argv.append("--unlimited")
    if connect_retry is not None:
        argv += ["--connect-retry", str(connect_retry)]
    ws.spawn(name, argv)
    url = f"http://{HOST}:{port}"
    ws.wait_http(name, url + "/_sandbox/info")
    return url


def start_redis(ws: Workspace) -> str:
    """A private redis-server on loopback (no persistence) for the shared rate-limit counters."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("more than one worker needs redis-server (apt-get install redis-server)")
    port = free_port()
    ws.spawn("redis", [binary, "--bind", HOST, "--port", str(port), "--save", "",
                       "--appendonly", "no"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return f"redis://{HOST}:{port}/0"
        time.sleep(0.05)
    raise BenchError(f"redis-server did not come up:\n{_tail(ws.root / 'redis.log')}")


@dataclass
class Gateway:
    """A deployment: its instance folder, environment, the bench partner's key and, once served, URL."""

    home: Path
    env: dict[str, str]
    key: str
    port: int
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def gateway_env(home: Path, *, redis_uri: str | None) -> dict[str, str]:
    """The process environment of a deployment rooted at `home` (nothing inherited from ours)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEWAY_") and k not in ("DATABASE_URL", "RATELIMIT_STORAGE_URI")}
    env["GATEWAY_INSTANCE_PATH"] = str(home / "instance")
    env["GATEWAY_POLICY_DIR"] = str(home / "policies")
    env["RATELIMIT_STORAGE_URI"] = redis_uri or "memory://"
    return env


def gateway_cli(env: dict[str, str], *args: str) -> str:
    """Run one `gateway` command; its stdout, or BenchError with its one-line error."""
    done = subprocess.run([*GATEWAY, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"`gateway {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def prepare_gateway(ws: Workspace, sandbox_url: str, *, name: str = "gateway",
                    rate_limit: str = BENCH_RATE_LIMIT, redis_uri: str | None = None,
                    unlimited: bool = False) -> Gateway:
    """`gateway init`, `docusign configure --sandbox`, a policy and `partners add bench`.

    `unlimited` goes with an emulator started `--unlimited`: the gateway's own share of the
    DocuSign account's hourly calls (`ACCOUNT_HOURLY_LIMIT`, 3,000 by default) is raised to
    match, so a load test is not refused by it; the budget is still counted on every call.
    """
    home = ws.root / name
    (home / "policies").mkdir(parents=True)
    (home / "policies" / f"{PARTNER}.toml").write_text(POLICY.format(rate_limit=rate_limit))
    env = gateway_env(home, redis_uri=redis_uri)
    if unlimited:
        env["GATEWAY_ACCOUNT_HOURLY_LIMIT"] = str(10**9)
    gateway_cli(env, "init")
    gateway_cli(env, "docusign", "configure", "--sandbox", sandbox_url)
    key = gateway_cli(env, "partners", "add", PARTNER).strip().splitlines()[-1]
    return Gateway(home=home, env=env, key=key, port=free_port())


def serve_gateway(ws: Workspace, gw: Gateway, *, workers: int, threads: int,
                  name: str = "gateway") -> Gateway:
    """`gateway serve --workers N --threads T` on its port; waits until a partner call works."""
    ws.spawn(name, [*GATEWAY, "serve", "--host", HOST, "--port", str(gw.port),
                    "--workers", str(workers), "--threads", str(threads)], env=gw.env)
    gw.workers = workers
    ws.wait_http(name, gw.url + "/v1/templates", headers=gw.auth)
    return gw


def serve_bare(ws: Workspace, *, workers: int, threads: int) -> str:
    """The bare Flask no-op app under gunicorn with the gateway's worker settings; its URL."""
    port = free_port()
    ws.spawn("bare", [str(BIN / "gunicorn"), "--bind", f"{HOST}:{port}", "--workers", str(workers),
                      "--threads", str(threads), "--worker-class", "gthread", "bench.bare:app"])
    url = f"http://{HOST}:{port}"
    ws.wait_http("bare", url + "/v1/envelopes/warmup")
    return url


def workers_and_limits(ws: Workspace, workers: int) -> str | None:
    """The rate-limit store a deployment of `workers` workers needs: None (memory) or Redis."""
    return start_redis(ws) if workers > 1 else None


def create_envelope(gw: Gateway) -> str:
    """One envelope through the gateway; its id."""
    resp = requests.post(gw.url + "/v1/envelopes", json=CREATE_BODY, headers=gw.auth, timeout=30)
    if resp.status_code != 201:
        raise BenchError(f"create through the gateway failed: {resp.status_code} {resp.text[:200]}")
    return str(resp.json()["envelope_id"])


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master process (its direct children), from /proc."""
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after it
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master:
            children.append(int(entry))
    return sorted(children)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (VmRSS from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


def common_args(parser: t.Any, *, workers: int = 1) -> None:
    """The flags every benchmark takes: gunicorn workers and threads, and the load client."""
    parser.add_argument("--workers", type=int, default=workers,
                        help=f"gunicorn workers for the gateway and the bare app (default {workers}; "
                             "more than 1 starts a private redis-server for the rate-limit counters)")
    parser.add_argument("--threads", type=int, default=8, help="gthread threads per worker (default 8)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load client: wrk if installed (auto), or the Python one")


@contextlib.contextmanager
def environment(env: dict[str, str]) -> t.Iterator[None]:
    """`os.environ` replaced by `env` for the duration (the app factory reads it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def app_for(gw: Gateway) -> t.Any:
    """The deployment's app, built in this process as `gateway serve` builds it in a worker.

    Its log lines still get formatted (that is part of a request's cost) but go to /dev/null,
    as they would go to a file under gunicorn, rather than flooding this terminal.
    """
    from gateway import create_app

    with environment(gw.env):
        app = create_app()
    devnull = open(os.devnull, "w")  # kept open for the process's life
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(devnull)
    return app


def loadavg() -> float:
    """The 1-minute load average: other work on a shared machine shows up in every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


@contextlib.contextmanager
def load_watch(into: list[float]) -> t.Iterator[None]:
    """Record the load average before and after the block into `into`."""
    into.append(loadavg())
    try:
        yield
    finally:
        into.append(loadavg())


def load_note(seen: list[float]) -> str:
    """One line saying how busy the machine was while a benchmark ran."""
    return (f"Machine load (1-min average) at start / end: {seen[0]:.2f} / {seen[-1]:.2f} on "
            f"{os.cpu_count()} CPUs.")


def main(run: t.Callable[[t.Any], t.Any], parser: t.Callable[[], t.Any],
         argv: t.Sequence[str] | None = None) -> int:
    """Every benchmark's command line: parse, run, print the report's tables."""
    print(run(parser().parse_args(argv)).markdown())
    return 0
