"""Fleet benchmark: status reads on PostgreSQL + Redis, 1x1 and 2x2, against the floors.

In one run, each figure a ratio to the others measured beside it:

- the bare Flask route (same gunicorn settings), the emulator read direct, and nginx in front
  of the emulator (key map + `limit_req`, bench/nginx.conf.template): the floors;
- the gateway's status read (served from its own record) with one instance of one worker,
  then two instances of two workers, on one PostgreSQL database and one Redis, several
  partners; req/s, p50 and p99 at 16 connections, p50 at 1;
- the mission's floor (bench/floor.py: the status read's mandatory I/O with raw drivers
  and nothing else) at 1 worker x 8 threads, as the gateway, and at 4 workers; which of the
  issue's ratio targets the floor itself reaches;
- the five single-instance targets (bare route, emulator, nginx, gateway 1x1, floor 1x8)
  run side by side and are measured in `--rounds` rounds, each round visiting every target
  in turn: per target the median of each figure, per ratio its value in each round, then
  the median and the rounds' min-max; a target is met when the median meets it. The 2x2
  and the 4-worker floor are measured once, after the rounds, with the 1x1 stopped;
- while loaded: lock waits (samples of `pg_stat_activity` backends of this run waiting on
  a lock), the machine's busy CPUs (/proc/stat), and the CPU of the target's processes, of
  this run's PostgreSQL backends, of Redis and of wrk (/proc, `os.times()`); from the
  gateway 1x1's median round, the best 2x2/1x1 ratio this machine allows;
- counted apart, in this process: PostgreSQL round trips per status read (libpq's protocol
  trace, `DB_TRACE_DIR`) and Redis round trips per partner request;
- the audit rows still unsealed at the end, and the sealer's rate.

`.venv/bin/python -m bench.fleet [--seconds 5] [--rounds 3] [--partners 4]`. Needs
PostgreSQL on 127.0.0.1 (db `test`, user postgres), `redis-server`, `nginx` and `wrk`
(apt-get install redis-server nginx-light wrk); it makes a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import psycopg
import requests

from bench import load
from bench.direct import DirectDocuSign
from bench.harness import BIN
from bench.harness import HOST
from bench.harness import POLICY
from bench.harness import ROOT
from bench.harness import BenchError
from bench.harness import Gateway
from bench.harness import Workspace
from bench.harness import app_for
from bench.harness import free_port
from bench.harness import gateway_cli
from bench.harness import gateway_env
from bench.harness import machine
from bench.harness import serve_bare
from bench.harness import start_emulator
from bench.harness import start_redis
from bench.harness import worker_pids
from bench.harness import workspace

PG = "postgresql://postgres@127.0.0.1/test"
CREATE = {"template": "membership", "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
          "fields": {"member_number": "12345", "plan": "plus"}, "reference": "fleet"}


@contextlib.contextmanager
def pg_schema(app_name: str, sync_commit: str) -> t.Iterator[str]:
    """A schema of this run's own in `test`; the URL tags connections with `app_name`."""
    schema = "bench_" + secrets.token_hex(4)
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield (f"postgresql://postgres@127.0.0.1/test?application_name={app_name}"
               f"&options=-csearch_path%3D{schema}%20-csynchronous_commit%3D{sync_commit}")
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def start_nginx(ws: Workspace, upstream: str, keys: dict[str, str], token: str,
                account_path: str) -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise BenchError("nginx is not installed (apt-get install -y nginx-light)")
    prefix = ws.root / "nginx"
    prefix.mkdir()
    port = free_port()
    key_map = "\n".join(f'        "Bearer {key}" {name};' for name, key in keys.items())
    conf = (ROOT / "bench" / "nginx.conf.template").read_text().format(
        prefix=prefix, key_map=key_map, upstream=upstream.split("://", 1)[1], port=port,
        token=token, account_path=account_path)
    (prefix / "nginx.conf").write_text(conf)
    proc = ws.spawn("nginx", [binary, "-c", str(prefix / "nginx.conf"), "-p", str(prefix),
                              "-g", "daemon off;"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return f"http://{HOST}:{port}"
        time.sleep(0.05)
    raise BenchError(f"nginx did not come up: {(ws.root / 'nginx.log').read_text()[-1000:]}")


@dataclass
class Figures:
    """One target's load figures.

    Over several URLs (the 2x2 fleet), p99 @16 is the worst instance's and p50 @16 the
    instances' p50s weighted by their requests.
    """

    name: str
    p50_ms: float = 0.0
    rps: float = 0.0
    p99_ms: float = 0.0
    p50_16_ms: float = 0.0
    #: the machine's busy CPUs while loaded at 16 connections (all processes)
    busy_cpus: float = 0.0
    #: where busy CPUs went while loaded at 16: this run's processes by group, the kernel's
    #: interrupts, steal (only when the target's pids are known)
    shares: dict[str, float] = field(default_factory=dict)
    cpu_ms: float | None = None
    lock_samples: str = ""


def _cpu_of(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each process still there, from /proc/PID/stat."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


INTERRUPTS, STEAL = "kernel interrupts (irq, softirq)", "steal (the hypervisor's)"


def _machine_jiffies() -> dict[str, int]:
    """Jiffies of all CPUs, from the aggregate `cpu` line of /proc/stat.

    total = user + nice + system + idle + iowait + irq + softirq + steal (guest time is
    already in user and nice); busy = total - idle - iowait. Interrupts and steal are
    busy time no process is charged with.
    """
    f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return {"total": sum(f), "busy": sum(f) - f[3] - f[4], INTERRUPTS: f[5] + f[6], STEAL: f[7]}


def _backends(tag: str) -> list[int]:
    """The PostgreSQL backends of this run's servers (tagged by `application_name`)."""
    with psycopg.connect(PG, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                            (tag,)).fetchall()
    return [row[0] for row in rows]


class CpuWindow:
    """CPU used during a block: the machine's busy CPUs, and this run's processes by group.

    `groups` names the processes to follow (read at both ends, so a PostgreSQL backend
    opened during the block counts from zero); the load client (wrk, a child of this
    process) and this process itself are counted from `os.times()`.
    """

    def __init__(self, groups: t.Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self.busy_cpus, self.seconds = 0.0, 0.0
        #: CPU seconds per group over the block
        self.used: dict[str, float] = {}
        #: CPUs of the kernel's interrupts and of steal over the block
        self.kernel: dict[str, float] = {}

    def _snapshot(self) -> tuple[dict[str, int], dict[str, dict[int, float]], float, float]:
        times = os.times()
        return (_machine_jiffies(), {name: _cpu_of(pids) for name, pids in self._groups().items()},
                times.user + times.system + times.children_user + times.children_system,
                time.monotonic())

    def __enter__(self) -> CpuWindow:
        self._before = self._snapshot()
        return self

    def __exit__(self, *_: t.Any) -> None:
        jiffies0, groups0, own0, wall0 = self._before
        jiffies1, groups1, own1, wall1 = self._snapshot()
        per = (os.cpu_count() or 1) / max(jiffies1["total"] - jiffies0["total"], 1)
        self.busy_cpus = (jiffies1["busy"] - jiffies0["busy"]) * per
        self.kernel = {name: (jiffies1[name] - jiffies0[name]) * per for name in (INTERRUPTS, STEAL)}
        self.seconds = wall1 - wall0
        self.used = {name: sum(cpu - groups0.get(name, {}).get(pid, 0.0) for pid, cpu in after.items())
                     for name, after in groups1.items()}
        self.used["load client (wrk) and this process"] = own1 - own0

    def cpus(self) -> dict[str, float]:
        """CPUs (CPU seconds per second) per group, then the kernel's interrupts and steal."""
        return {name: used / self.seconds for name, used in self.used.items()} | self.kernel


class LockSampler:
    """Counts samples in which a backend of this run waits on a lock."""

    def __init__(self, app_name: str) -> None:
        self.app_name, self.samples, self.waiting = app_name, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(PG, autocommit=True) as conn:
            while not self._stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                                 "'Lock' AND application_name = %s", (self.app_name,)).fetchone()
                self.samples += 1
                self.waiting += bool(n and n[0])
                self._stop.wait(0.02)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: t.Any) -> None:
        self._stop.set()
        self._thread.join()


ITS = "its processes"


def measure(name: str, urls: list[str], reqs: list[load.Req], seconds: int,
            pids: list[int] | None = None, tag: str | None = None,
            redis_pid: int | None = None) -> Figures:
    """p50 at 1 connection; then 16 connections spread over `urls` (req/s, p50, p99, CPU, locks).

    With the target's `pids`, the CPU of its processes, of this run's PostgreSQL backends
    (`tag`) and of Redis is split out of the machine's.
    """
    one = load.run(urls[0], reqs, connections=1, duration=max(2, seconds // 2))
    per = 16 // len(urls)

    def groups() -> dict[str, list[int]]:
        if not pids:
            return {}
        return {ITS: pids, "PostgreSQL backends": _backends(tag) if tag else [],
                "Redis": [redis_pid] if redis_pid else []}

    sampler = LockSampler(tag) if tag else contextlib.nullcontext()
    with sampler, ThreadPoolExecutor(len(urls)) as pool, CpuWindow(groups) as cpu:
        runs = list(pool.map(lambda u: load.run(u, reqs, connections=per, duration=seconds), urls))
    total = sum(r.requests for r in runs)
    figures = Figures(name, one.p50_ms, sum(r.rps for r in runs), max(r.p99_ms for r in runs),
                      sum(r.p50_ms * r.requests for r in runs) / max(total, 1), cpu.busy_cpus)
    if pids:
        figures.cpu_ms = cpu.used[ITS] * 1000 / max(total, 1)
        figures.shares = cpu.cpus()
    if isinstance(sampler, LockSampler):
        figures.lock_samples = f"{sampler.waiting}/{sampler.samples}"
    if any(r.errors for r in runs):
        raise BenchError(f"{name}: {sum(r.errors for r in runs)} errors under load")
    return figures


def round_trips(gw_env: dict[str, str], reqs: list[load.Req], trace_dir: Path) -> tuple[float, float]:
    """PostgreSQL and Redis round trips per status read, counted in this process."""
    import redis

    gw = Gateway(home=Path(), env=gw_env | {"GATEWAY_DB_TRACE_DIR": str(trace_dir),
                                            "GATEWAY_AUDIT_SEALER": "false"}, key="", port=0)
    client = app_for(gw).test_client()
    for req in reqs:  # warm: caches, the policy, the script's SHA
        client.get(req.path, headers=req.headers)
    sent: list[int] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: t.Any, command: t.Any, check_health: bool = True) -> None:
        sent.append(1)
        send(self, command, check_health)

    def ready() -> int:
        return sum(line.startswith("B\t") and "\tReadyForQuery" in line
                   for f in trace_dir.glob("*.trace") for line in f.read_text().splitlines())

    before, n = ready(), 50 * len(reqs)
    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        for i in range(n):
            req = reqs[i % len(reqs)]
            if client.get(req.path, headers=req.headers).status_code != 200:
                raise BenchError("status read failed while counting round trips")
    finally:
        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    return (ready() - before) / n, len(sent) / n


def seal_rate_of(gw_env: dict[str, str], reqs: list[load.Req]) -> tuple[int, float]:
    """Rows per second one sealer chains: 2,000 fresh status-read rows, sealed in this process."""
    from gateway.services import audit_seal

    gw = Gateway(home=Path(), env=gw_env | {"GATEWAY_AUDIT_SEALER": "false"}, key="", port=0)
    app = app_for(gw)
    client = app.test_client()
    with app.app_context():
        audit_seal.seal_all()
    for i in range(2000):
        client.get(reqs[i % len(reqs)].path, headers=reqs[i % len(reqs)].headers)
    started = time.perf_counter()
    with app.app_context():
        sealed = audit_seal.seal_all()
    return sealed, sealed / (time.perf_counter() - started)


def serve(ws: Workspace, env: dict[str, str], name: str, workers: int) -> tuple[str, int]:
    from bench.harness import GATEWAY

    port = free_port()
    proc = ws.spawn(name, [*GATEWAY, "serve", "--host", HOST, "--port", str(port),
                           "--workers", str(workers)], env=env)
    ws.wait_http(name, f"http://{HOST}:{port}/healthz")
    deadline = time.monotonic() + 30
    while len(worker_pids(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"http://{HOST}:{port}", proc.pid


def serve_floor(ws: Workspace, name: str, db_url: str, redis_uri: str, probe: load.Req, *,
                workers: int, threads: int) -> tuple[str, list[int]]:
    """bench/floor.py under gunicorn with the bare route's settings; its URL and process ids."""
    port = free_port()
    env = dict(os.environ) | {"FLOOR_DATABASE_URL": db_url, "FLOOR_REDIS_URL": redis_uri}
    proc = ws.spawn(name, [str(BIN / "gunicorn"), "--bind", f"{HOST}:{port}", "--workers",
                           str(workers), "--threads", str(threads), "--worker-class", "gthread",
                           "bench.floor:app"], env=env)
    url = f"http://{HOST}:{port}"
    ws.wait_http(name, url + probe.path, headers=probe.headers)
    deadline = time.monotonic() + 30
    while len(worker_pids(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return url, [proc.pid, *worker_pids(proc.pid)]


def wait_sealed(db_url: str, timeout: float = 30.0) -> None:
    """Until the gateway's sealer has chained every audit row (so the next target is not
    measured beside its catch-up), or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM audit_events WHERE seal_seq IS NULL").fetchone()
            if not row or not row[0]:
                return
            time.sleep(0.1)


@dataclass
class Target:
    """One target of the rounds: where to send which requests, and whose CPU to follow."""

    name: str
    url: str
    reqs: list[load.Req]
    pids: list[int] | None = None
    tag: str | None = None
    #: run after each of its measurements (the gateway: wait for its sealer)
    after: t.Callable[[], None] | None = None


def rounds(targets: list[Target], n: int, seconds: int, redis_pid: int) -> list[list[Figures]]:
    """`n` rounds, each measuring every target in turn; per target, its figures of each round.

    Interleaved, a slow spell of the machine (steal, another user) falls on one round's
    measurement of one or two targets, not on every measurement of one target; the median
    over the rounds leaves such a round out.
    """
    runs: list[list[Figures]] = [[] for _ in targets]
    for _ in range(n):
        for target, figures in zip(targets, runs, strict=True):
            figures.append(measure(target.name, [target.url], target.reqs, seconds, target.pids,
                                   target.tag, redis_pid))
            if target.after is not None:
                target.after()
    return runs


def _median(values: t.Iterable[float]) -> float:
    return statistics.median(list(values))


def median_figures(runs: list[Figures]) -> Figures:
    """Each figure's median over the rounds (lock-wait samples: added up)."""
    first = runs[0]
    figures = Figures(first.name, _median(f.p50_ms for f in runs), _median(f.rps for f in runs),
                      _median(f.p99_ms for f in runs), _median(f.p50_16_ms for f in runs),
                      _median(f.busy_cpus for f in runs))
    figures.shares = {name: _median(f.shares.get(name, 0.0) for f in runs) for name in first.shares}
    if first.cpu_ms is not None:
        figures.cpu_ms = _median(f.cpu_ms or 0.0 for f in runs)
    if first.lock_samples:
        waiting, samples = zip(*(map(int, f.lock_samples.split("/")) for f in runs), strict=True)
        figures.lock_samples = f"{sum(waiting)}/{sum(samples)}"
    return figures


def stop(ws: Workspace, name: str) -> None:
    proc = ws.procs.pop(name)
    proc.terminate()
    proc.wait(timeout=20)


def run(args: argparse.Namespace) -> str:
    tag = "pgw-bench-" + secrets.token_hex(3)
    with workspace() as ws, pg_schema(tag, args.sync_commit) as db_url:
        sandbox = start_emulator(ws, unlimited=True)
        redis_uri = start_redis(ws)
        home = ws.root / "gw"
        (home / "policies").mkdir(parents=True)
        names = [f"p{i}" for i in range(args.partners)]
        for name in names:
            (home / "policies" / f"{name}.toml").write_text(
                POLICY.format(rate_limit="100000/minute").replace('"bench"', f'"{name}"', 1))
        env = gateway_env(home, redis_uri=redis_uri) | {"DATABASE_URL": db_url,
                                                        "GATEWAY_ACCOUNT_HOURLY_LIMIT": "1000000000"}
        gateway_cli(env, "init")
        with psycopg.connect(db_url, autocommit=True) as conn:  # the floor's own audit table
            conn.execute("CREATE TABLE floor_audit (LIKE audit_events INCLUDING ALL)")
        gateway_cli(env, "docusign", "configure", "--sandbox", sandbox)
        keys = {n: gateway_cli(env, "partners", "add", n).strip().splitlines()[-1] for n in names}
        url, pid = serve(ws, env, "gw1x1", 1)
        reqs = []
        for name in names:
            auth = {"Authorization": f"Bearer {keys[name]}"}
            resp = requests.post(url + "/v1/envelopes", json=CREATE, headers=auth, timeout=30)
            if resp.status_code != 201:
                raise BenchError(f"create failed: {resp.status_code} {resp.text[:200]}")
            reqs.append(load.Req("GET", f"/v1/envelopes/{resp.json()['envelope_id']}", auth))
        direct = DirectDocuSign(sandbox)
        token = direct.token()
        direct_reqs = [load.Req("GET", f"{direct.account_path}/envelopes/{r.path.rsplit('/', 1)[1]}",
                                {"Authorization": f"Bearer {token}"}) for r in reqs]
        nginx = start_nginx(ws, sandbox, keys, token, direct.account_path)
        bare = serve_bare(ws, workers=1, threads=8)
        bare_reqs = [load.Req("GET", r.path) for r in reqs]
        # the floor's PostgreSQL backends are tagged apart from the gateway's
        floor_tag = tag + "-floor"
        floor_db = db_url.replace(f"application_name={tag}", f"application_name={floor_tag}")
        floor, floor_pids = serve_floor(ws, "floor1x8", floor_db, redis_uri, reqs[0], workers=1,
                                        threads=8)
        s, redis_pid = args.seconds, ws.procs["redis"].pid
        runs = rounds([Target("bare Flask route (1x8)", bare, bare_reqs),
                       Target("emulator read, direct", sandbox, direct_reqs),
                       Target("nginx + key map + limit_req -> emulator", nginx, reqs),
                       Target("gateway status read, PostgreSQL 1x1", url, reqs,
                              [pid, *worker_pids(pid)], tag, lambda: wait_sealed(db_url)),
                       Target("floor: mandatory I/O, raw drivers (1x8)", floor, reqs, floor_pids,
                              floor_tag)], args.rounds, s, redis_pid)
        stop(ws, "floor1x8")
        stop(ws, "gw1x1")
        fleet = [serve(ws, env, f"gw2x2-{i}", 2) for i in range(2)]
        pids = [p for _, master in fleet for p in (master, *worker_pids(master))]
        two = measure("gateway status read, PostgreSQL 2x2", [u for u, _ in fleet], reqs, s,
                      pids, tag, redis_pid)
        verify = gateway_cli(env, "audit", "--verify", "--no-seal").strip()
        for i in range(2):
            stop(ws, f"gw2x2-{i}")
        # alone (no gateway, no 1x8 floor): four workers need the CPUs
        floor4_url, floor4_pids = serve_floor(ws, "floor4x8", floor_db, redis_uri, reqs[0],
                                              workers=4, threads=8)
        floor4 = measure("floor: mandatory I/O, raw drivers (4x8)", [floor4_url], reqs, s,
                         floor4_pids, floor_tag, redis_pid)
        stop(ws, "floor4x8")
        trace = ws.root / "traces"
        trace.mkdir()
        db_trips, redis_trips = round_trips(env, reqs, trace)
        sealed, seal_rate = seal_rate_of(env, reqs)
    return report(runs, two, floor4, db_trips, redis_trips, verify, sealed, seal_rate, args)


def _ratio(values: list[float]) -> str:
    """The median over the rounds, and their min-max: `0.74 (0.67–0.81)`."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{_median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _verdict(values: list[float], ok: t.Callable[[float], bool], yes: str, no: str) -> str:
    """`yes` when the median meets the target; borderline when the rounds' range straddles it."""
    text = yes if ok(_median(values)) else no
    if ok(min(values)) != ok(max(values)):
        text += " (borderline: the target is within the rounds' range)"
    return text


def _ceiling(one: Figures, cpus: int) -> tuple[float, float]:
    """Processes not of this run, and the best 2x2/1x1 the machine allows, from a 1x1 round.

    With one worker the gateway is held to one core by the GIL; more workers can only use
    what the rest of the machine leaves: at the same CPU per request, this run's share at
    1x1 (gateway, load client, PostgreSQL, Redis, interrupts) can grow to what processes
    not of this run leave free.
    """
    foreign = max(one.busy_cpus - sum(one.shares.values()), 0.0)
    return foreign, (cpus - foreign) / max(one.busy_cpus - foreign, 0.01)


def report(runs: list[list[Figures]], two: Figures, floor4: Figures, db_trips: float,
           redis_trips: float, verify: str, sealed: int, seal_rate: float,
           args: argparse.Namespace) -> str:
    one_r, floor_r = runs[3], runs[4]
    rounds = list(zip(*runs, strict=True))  # per round: (bare, direct, nginx, one, floor)
    medians = [median_figures(r) for r in runs]
    bare, one, floor = medians[0], medians[3], medians[4]
    cpus = os.cpu_count() or 1
    lines = [f"## Fleet benchmark ({args.partners} partners, {args.seconds} s per load, "
             f"{args.rounds} rounds, {machine()['cpus']} CPUs, {machine()['cpu']}, "
             f"synchronous_commit={args.sync_commit}, load average {os.getloadavg()[0]:.1f})", "",
             f"Machine speed: the bare route's p50 at 1 connection is {bare.p50_ms:.2f} ms.", "",
             f"The first five targets: medians of {args.rounds} rounds, each round measuring every "
             "target in turn (req/s: median, then the rounds' min–max); the 2x2 and the floor at "
             "4 workers: one measurement each, after the rounds.", "",
             "| target | p50 @1 (ms) | req/s @16 | p50 @16 (ms) | p99 @16 (ms) | CPUs busy @16 "
             f"(of {cpus}) | its processes' CPUs | CPU ms/req | lock-wait samples |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f, each in [*zip(medians, runs, strict=True), (two, [two]), (floor4, [floor4])]:
        own = f"{f.shares[ITS]:.2f}" if ITS in f.shares else ""
        cpu = f"{f.cpu_ms:.2f}" if f.cpu_ms is not None else ""
        rps = f"{f.rps:.0f}" if len(each) == 1 else (
            f"{f.rps:.0f} ({min(r.rps for r in each):.0f}–{max(r.rps for r in each):.0f})")
        lines.append(f"| {f.name} | {f.p50_ms:.2f} | {rps} | {f.p50_16_ms:.2f} | "
                     f"{f.p99_ms:.1f} | {f.busy_cpus:.2f} | {own} | {cpu} | {f.lock_samples} |")
    # the CPU split and the ceiling: the gateway 1x1's median round by req/s (its figures
    # add up, which per-figure medians need not)
    mid = sorted(one_r, key=lambda f: f.rps)[(len(one_r) - 1) // 2]
    foreign, ceiling = _ceiling(mid, cpus)
    ceilings = [_ceiling(f, cpus)[1] for f in one_r]

    def per_round(ratio: t.Callable[[Figures, Figures, Figures, Figures], float]) -> list[float]:
        return [ratio(b, n, o, fl) for b, _d, n, o, fl in rounds]

    checks: list[tuple[str, list[float], t.Callable[[float], bool]]] = [
        ("status read req/s / bare route's >= 0.5", per_round(lambda b, n, o, fl: o.rps / b.rps),
         lambda v: v >= 0.5),
        ("status read req/s / nginx's >= 0.8", per_round(lambda b, n, o, fl: o.rps / n.rps),
         lambda v: v >= 0.8),
        ("status read p50 / bare p50 <= 2", per_round(lambda b, n, o, fl: o.p50_ms / b.p50_ms),
         lambda v: v <= 2),
        # "its own p50" is the p50 at the same 16 connections (the "today 23x" is p99@16 / p50@16)
        ("status read p99@16 / own p50@16 <= 5", [o.p99_ms / o.p50_16_ms for o in one_r],
         lambda v: v <= 5),
        ("PostgreSQL round trips per status read <= 4", [db_trips], lambda v: v <= 4),
        ("Redis round trips per partner request <= 1", [redis_trips], lambda v: v <= 1),
        (f"2x2 req/s / 1x1 req/s (median) >= 1.5 (ceiling on this machine: {ceiling:.2f}x)",
         [two.rps / one.rps], lambda v: v >= 1.5),
    ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {_ratio(values)} | {_verdict(values, ok, 'yes', 'NO')} |"
              for name, values, ok in checks]
    targets: list[tuple[str, list[float], str, t.Callable[[float], bool]]] = [
        ("floor req/s / bare route's", per_round(lambda b, n, o, fl: fl.rps / b.rps), ">= 0.5",
         lambda v: v >= 0.5),
        ("floor req/s / nginx's", per_round(lambda b, n, o, fl: fl.rps / n.rps), ">= 0.8",
         lambda v: v >= 0.8),
        ("floor p50 / bare p50", per_round(lambda b, n, o, fl: fl.p50_ms / b.p50_ms), "<= 2",
         lambda v: v <= 2),
        ("floor p99@16 / own p50@16", [fl.p99_ms / fl.p50_16_ms for fl in floor_r], "<= 5",
         lambda v: v <= 5),
    ]
    lines += ["", "Against the floor (1x8, the gateway 1x1's settings; each ratio per round, then "
              "its median and the rounds' min–max; \"yes\" when the median meets the target):", "",
              "| ratio | measured | target | reachable at the floor? |", "|---|---|---|---|",
              f"| gateway 1x1 req/s / floor req/s | "
              f"{_ratio(per_round(lambda b, n, o, fl: o.rps / fl.rps))} | | |",
              f"| gateway 1x1 p50 @1 / floor p50 @1 | "
              f"{_ratio(per_round(lambda b, n, o, fl: o.p50_ms / fl.p50_ms))} | | |"]
    lines += [f"| {name} | {_ratio(values)} | {target} | {_verdict(values, ok, 'yes', 'no')} |"
              for name, values, target, ok in targets]
    busy = mid.busy_cpus
    shares = {("the gateway's processes" if name == ITS else name): v for name, v in mid.shares.items()}
    split = ", ".join(f"{name} {v:.2f}" for name, v in shares.items())
    spread = (f" (over the rounds: {min(ceilings):.2f}–{max(ceilings):.2f}x)"
              if len(ceilings) > 1 else "")
    lines += ["", f"Machine CPU while the gateway 1x1 was loaded at 16 connections (its median round "
              f"by req/s, {mid.rps:.0f} req/s): {busy:.2f} of {cpus} CPUs busy: {split}, processes "
              f"not of this run {foreign:.2f}.",
              "With one worker the gateway is held to one core by the GIL; more workers can only "
              "use what the rest of the machine leaves, so at the same CPU per request the best "
              f"2x2/1x1 this machine allows is ({cpus} - {foreign:.2f}) / ({busy:.2f} - "
              f"{foreign:.2f}) = {ceiling:.2f}x{spread}.",
              f"The floor itself with 4 workers: {floor4.rps:.0f} req/s, {floor4.rps / floor.rps:.2f}x "
              f"its 1-worker median, with {floor4.busy_cpus:.2f} of {cpus} CPUs busy."]
    # no row is shared by two status reads: the database, not one row lock, bounds the fleet
    db_ceiling = 1000 / (db_trips * 0.5)
    lines += ["", f"Fleet ceiling with a 0.5 ms database: {db_trips:.1f} statements per read "
              f"= {db_trips * 0.5:.1f} ms of database time and no row shared between reads, so "
              f"about {db_ceiling:.0f} req/s per database core (the old chain head, a row every "
              "read locked for 4 statements, capped the whole fleet at 500 req/s).",
              f"Audit after the 2x2 load: {verify}", f"Sealer: {sealed} rows sealed at "
              f"{seal_rate:.0f} rows/s (one sealer, in-process).",
              f"Load client: {load.client_name()}."]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.fleet", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=5, help="seconds of load per target at 16 conns")
    p.add_argument("--partners", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds over the five single-instance targets (medians, min-max)")
    p.add_argument("--sync-commit", choices=("on", "off"), default="on",
                   help="PostgreSQL synchronous_commit for the gateway's connections "
                        "(docs/production.md: what `off` risks)")
    return p


if __name__ == "__main__":
    print(run(parser().parse_args()))
