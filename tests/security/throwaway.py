"""A PostgreSQL and a Redis of a test's own, to stop and start: never the machine's shared ones.

PostgreSQL: `initdb` + `pg_ctl` from /usr/lib/postgresql/*/bin into a fresh directory under
/tmp, trust auth, loopback TCP on a free port; as root, run as the `postgres` user (initdb
refuses root). Redis: `redis-server --port <free> --save ""`. Missing binaries skip the
test, or fail it under GATEWAY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.conftest import service_or_skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _redis_bin() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server is not on PATH")
    return binary


class ThrowawayRedis:
    """One redis-server on a free loopback port, with no persistence."""

    def __init__(self) -> None:
        holder: list[str] = []
        service_or_skip("redis-server binary", lambda: holder.append(_redis_bin()))
        self.binary = holder[0]
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin")
    return os.path.dirname(found[-1])


class ThrowawayPostgres:
    """One PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self) -> None:
        holder: list[str] = []
        service_or_skip("PostgreSQL binaries (initdb, pg_ctl)", lambda: holder.append(_pg_bin()))
        self.bin = holder[0]
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="pgw-pg-")
        self.data = os.path.join(self.root, "data")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root; the packaged cluster's user can run a copy
            shutil.chown(self.root, user="postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync",
                  "--no-instructions")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.root, "log"), "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")
        _wait_for_port(self.port)

    def stop(self) -> None:
        """An outage as the gateway sees it: every connection dropped at once."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
