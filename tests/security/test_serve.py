"""Issue 16 finding 1, as `gateway serve` runs it: PUBLIC_URL is required off loopback, set
from the bind on loopback, and gunicorn believes no client's X-Forwarded-Proto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.embedded import free_port

CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]


def owner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEWAY_") and k not in ("DATABASE_URL", "RATELIMIT_STORAGE_URI")}
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "example.toml").write_text((ROOT / "policies" / "example.toml").read_text())
    env.update({"GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"),
                "GATEWAY_POLICY_DIR": str(policies), "PYTHONUNBUFFERED": "1", **extra})
    return env


def gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def initialised(tmp_path: Path) -> dict[str, str]:
    env = owner_env(tmp_path)
    done = gateway(env, "init")
    assert done.returncode == 0, done.stderr
    return env


def test_serve_off_loopback_without_public_url_refuses_to_start(initialised: dict[str, str]) -> None:
    done = gateway(initialised, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_PUBLIC_URL" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_public_url_that_is_not_an_origin(initialised: dict[str, str]) -> None:
    env = initialised | {"GATEWAY_PUBLIC_URL": "https://gateway.example/prefix"}
    done = gateway(env, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1 and "PUBLIC_URL" in done.stderr and "Traceback" not in done.stderr


class Served:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "wb") as sink:
            self.process = subprocess.Popen([*CLI, "serve", "--port", str(self.port)], env=env,
                                            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.log = log
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()[-3000:]
            try:
                requests.get(self.url + "/healthz", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(log.read_text()[-3000:])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture
def served(initialised: dict[str, str], tmp_path: Path) -> t.Iterator[Served]:
    server = Served(initialised, tmp_path / "serve.log")
    yield server
    server.stop()


def test_loopback_serve_answers_only_for_its_own_host(served: Served) -> None:
    assert requests.get(served.url + "/healthz", timeout=10).status_code == 200
    evil = requests.get(served.url + "/v1/templates", headers={"Host": "phish.evil.example"},
                        timeout=10)
    assert evil.status_code == 400
    assert evil.headers["Content-Type"] == "application/problem+json"
    assert evil.json()["code"] == "untrusted_host"
    forwarded = requests.get(served.url + "/healthz", timeout=10,
                             headers={"X-Forwarded-Host": "phish.evil.example"})
    assert forwarded.status_code == 200  # PROXY_HOPS=0: the header means nothing


def test_loopback_client_cannot_claim_https(served: Served) -> None:
    resp = requests.get(served.url + "/admin/login", headers={"X-Forwarded-Proto": "https"},
                        timeout=10)
    assert resp.status_code == 200
    cookie = resp.headers["Set-Cookie"]
    # gunicorn's default forwarded_allow_ips would make this request "secure"
    assert "secure" not in cookie.lower().replace("samesite", ""), cookie


def test_no_308_with_a_host_built_location(served: Served) -> None:
    for path in ("//v1//envelopes/x", "/admin", "//healthz"):
        resp = requests.get(served.url + path, allow_redirects=False, timeout=10)
        assert resp.status_code != 308, (path, resp.headers)
        location = resp.headers.get("Location", "")
        assert not location.startswith(("http:", "https:", "//")), (path, location)
