"""The wheel holds everything the gateway and the demo need: built, installed, run elsewhere."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import requests

from tests.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGED_POLICY = ROOT / "gateway" / "cli" / "data" / "example.toml"
# what the wheel is built from: nothing else of the repository may be needed at run time
SOURCES = ["pyproject.toml", "README.md", "gateway", "sandbox", "examples"]


def test_the_repository_copy_of_the_example_policy_is_the_packaged_one() -> None:
    # gateway/cli/data/example.toml is the file `gateway demo` reads; policies/example.toml
    # is the copy owners (and the test fixtures) start from
    assert (ROOT / "policies" / "example.toml").read_bytes() == PACKAGED_POLICY.read_bytes()


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(path, src / name)
    out = tmp_path / "dist"
    attempts = [[], ["--no-build-isolation"]]  # the second works without an index
    problems = []
    for extra in attempts:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                               "--quiet", "-w", str(out), *extra],
                              capture_output=True, text=True, timeout=240)
        wheels = list(out.glob("*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0]
        problems.append((proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["?"])
    pytest.skip(f"cannot build a wheel here (offline, no setuptools>=68 or wheel): {problems}")


def test_the_installed_wheel_runs_the_demo_outside_the_repository(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, timeout=120)
    # the dependencies (flask, ...) come from the running venv; the gateway from the wheel
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEWAY_") and k not in ("PYTHONPATH", "DATABASE_URL")}
    where = subprocess.run([str(python), "-c", "import gateway, sandbox, examples; "
                            "print(gateway.__file__, sandbox.__file__, examples.__file__)"],
                           cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout
    assert str(ROOT) not in where and where.count(site) == 3, where

    ports = {"--sandbox-port": free_port(), "--gateway-port": free_port(),
             "--site-port": free_port()}
    args = [str(venv / "bin" / "gateway"), "demo"] + [str(x) for kv in ports.items() for x in kv]
    proc = subprocess.Popen(args, cwd=cwd, env=env | {"PYTHONUNBUFFERED": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    site_url = f"http://127.0.0.1:{ports['--site-port']}/"
    try:
        deadline = time.monotonic() + 40
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = requests.get(site_url, timeout=2)
                if page.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert page is not None and page.status_code == 200, (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "no answer")
        assert "membership agreement" in page.text
        # the gateway answers too, with the example partner added from the packaged policy
        jwks = requests.get(f"http://127.0.0.1:{ports['--gateway-port']}/.well-known/jwks.json",
                            timeout=5)
        assert jwks.status_code == 200 and jwks.json()["keys"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"Open {site_url}" in out
    assert "demo stopped" in err and "Traceback" not in err
