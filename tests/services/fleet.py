"""Helpers for tests against the real PostgreSQL and Redis on this machine.

Each test (or module) gets its own PostgreSQL schema (`DATABASE_URL` with
`options=-csearch_path=...`) and its own Redis key prefix in database 15, and removes
both afterwards, so runs in parallel (and other engineers' runs) never meet. Both
services are optional here and required when `GATEWAY_REQUIRE_SERVICES=1`.

`Fleet` runs the gateway as an operator would: `gateway init`, `docusign configure
--sandbox` and `partners add` through the CLI, then several `gateway serve --workers N`
processes on the same database and Redis. Every process is ended in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.conftest import partner_policy
from tests.conftest import service_or_skip

PG_HOST = "127.0.0.1:5432"
PG_DATABASE = "test"
PG_USERS = ("postgres", "root")
REDIS_URL = "redis://127.0.0.1:6379/15"  # a dedicated database; keys are prefixed per test
#: `gateway` of this checkout (the venv's console script may belong to another one)
GATEWAY = [sys.executable, "-c", "from gateway.cli import main; main()"]
ROOT = str(Path(__file__).resolve().parents[2])
BOOT_TIMEOUT = 30.0


def _pg_user() -> str:
    import psycopg

    problems = []
    for user in PG_USERS:
        try:
            with psycopg.connect(f"postgresql://{user}@{PG_HOST}/{PG_DATABASE}", connect_timeout=3):
                return user
        except psycopg.Error as exc:
            problems.append(f"{user}: {str(exc).strip()}")
    raise RuntimeError("; ".join(problems))


@contextlib.contextmanager
def pg_schema() -> t.Iterator[str]:
    """A fresh schema in the `test` database; yields a SQLAlchemy URL that uses only it."""
    import psycopg

    holder: list[str] = []
    service_or_skip("PostgreSQL", lambda: holder.append(_pg_user()))
    user = holder[0]
    schema = "t_" + secrets.token_hex(6)
    admin = f"postgresql://{user}@{PG_HOST}/{PG_DATABASE}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def redis_prefix() -> t.Iterator[str]:
    """A fresh key prefix in Redis database 15; its keys are deleted afterwards."""
    import redis

    def ping() -> None:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=3) as client:
            client.ping()

    service_or_skip("Redis", ping)
    prefix = "pgwtest_" + secrets.token_hex(6)
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                client.delete(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




def create_body(reference: str = "order-1", number: str = "12345") -> dict[str, t.Any]:
    return {"template": "membership", "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "fields": {"member_number": number}, "reference": reference}


@dataclass
class Instance:
    """One `gateway serve` process (a gunicorn master and its workers)."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_calls(self, endpoint: str) -> dict[str, float]:
        """This instance's `gateway_upstream_calls_total` for one endpoint, by status label."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        prefix = f'gateway_upstream_calls_total{{endpoint="{endpoint}",status="'
        counts = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                status, _, value = line[len(prefix):].partition('"} ')
                counts[status] = float(value)
        return counts

    def workers(self) -> list[int]:
        """The worker pids: the master's children."""
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []


@dataclass
class Fleet:
    """A gateway deployment: one database, one Redis, several instances of N workers."""

    root: Path
    sandbox_url: str
    database_url: str
    redis_prefix: str
    partners: dict[str, str]  # name -> rate limit
    config: dict[str, t.Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GATEWAY_") and k not in ("DATABASE_URL", "RATELIMIT_STORAGE_URI")}
        env.update({
            "GATEWAY_INSTANCE_PATH": str(self.root / "instance"),
            "GATEWAY_POLICY_DIR": str(self.root / "policies"),
            "GATEWAY_MASTER_KEY": self.master_key,
            "DATABASE_URL": self.database_url,
            "RATELIMIT_STORAGE_URI": REDIS_URL,
            "GATEWAY_RATELIMIT_STORAGE_OPTIONS": json.dumps({"key_prefix": self.redis_prefix}),
            "PYTHONUNBUFFERED": "1",
        })
        env.update({f"GATEWAY_{k}": json.dumps(v) for k, v in self.config.items()})
        return env

    def __post_init__(self) -> None:
        self.master_key = Fernet.generate_key().decode("ascii")
        policies = self.root / "policies"
        policies.mkdir(parents=True, exist_ok=True)
        for name, rate in self.partners.items():
            (policies / f"{name}.toml").write_text(partner_policy(name, rate))

    def gateway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """One owner's command, as a separate process."""
        done = subprocess.run([*GATEWAY, *args], env=self.env(), capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        if check and done.returncode != 0:
            raise AssertionError(f"gateway {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done

    def setup(self) -> None:
        """init, configure against the emulator, add every partner: one process for all of it."""
        script = (
            "import contextlib, io, json, sys\n"
            "from gateway.cli import cli\n"
            "outputs = []\n"
            "for args in json.loads(sys.argv[1]):\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        cli.main(args, prog_name='gateway', standalone_mode=False)\n"
            "    outputs.append(out.getvalue())\n"
            "print(json.dumps(outputs))\n"
        )
        commands = [["init"], ["docusign", "configure", "--sandbox", self.sandbox_url]]
        commands += [["partners", "add", name] for name in self.partners]
        done = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], env=self.env(),
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs = json.loads(done.stdout.strip().splitlines()[-1])
        for name, out in zip(self.partners, outputs[2:], strict=True):
            self.keys[name] = out.strip().splitlines()[-1]
            assert self.keys[name].startswith("pgw_")

    def start(self, instances: int = 2, workers: int = 2) -> None:
        for _ in range(instances):
            port = free_port()
            log = self.root / f"serve-{port}.log"
            # each instance's workers pool their metrics here; /metrics sums them
            metrics = self.root / f"metrics-{port}"
            metrics.mkdir()
            env = self.env() | {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
            with open(log, "wb") as sink:
                process = subprocess.Popen(
                    [*GATEWAY, "serve", "--port", str(port), "--workers", str(workers),
                     "--threads", "16"],
                    env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
            self.instances.append(Instance(port, process, log))
        for instance in self.instances:
            self._wait_ready(instance, workers)

    def _wait_ready(self, instance: Instance, workers: int) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if instance.process.poll() is not None:
                raise AssertionError(f"gateway serve exited: {instance.log.read_text()[-3000:]}")
            try:
                requests.get(instance.url + "/v1/templates", timeout=1)
                if len(instance.workers()) >= workers:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway serve not ready: {instance.log.read_text()[-3000:]}")

    def stop(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGTERM)
        for instance in self.instances:
            try:
                instance.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(instance.process.pid, signal.SIGKILL)
                instance.process.wait(timeout=5)
        self.instances.clear()

    def headers(self, partner: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[partner]}", **extra}


@contextlib.contextmanager
def running_fleet(root: Path, sandbox_url: str, partners: dict[str, str], *,
                  instances: int = 2, workers: int = 2, **config: t.Any) -> t.Iterator[Fleet]:
    """A fleet on a fresh schema and Redis prefix, stopped and cleaned up afterwards."""
    with pg_schema() as database_url, redis_prefix() as prefix:
        fleet = Fleet(root, sandbox_url, database_url, prefix, partners, config)
        fleet.setup()
        try:
            fleet.start(instances=instances, workers=workers)
            yield fleet
        finally:
            fleet.stop()


@contextlib.contextmanager
def emulator(**config: t.Any) -> t.Iterator[str]:
    """A DocuSign emulator of the module's own (its faults and counters are nobody else's)."""
    from sandbox import create_app as create_sandbox
    from sandbox.server import BackgroundServer

    server = BackgroundServer(create_sandbox(config))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class Emulator:
    """The emulator's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def calls(self) -> dict[str, int]:
        return requests.get(self.url + "/_sandbox/calls", timeout=10).json()["counts"]

    def fault(self, **spec: t.Any) -> None:
        requests.post(self.url + "/_sandbox/faults", json=spec, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(self.url + "/_sandbox/faults", timeout=10).raise_for_status()

    def envelopes(self) -> list[dict[str, t.Any]]:
        return requests.get(self.url + "/_sandbox/envelopes", timeout=10).json()

    def envelope(self, envelope_id: str) -> dict[str, t.Any]:
        return requests.get(f"{self.url}/_sandbox/envelopes/{envelope_id}", timeout=10).json()


