"""`make test`'s promises: the browser is there or one line says how, and the last line names the skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    # as a newcomer types it: not a sub-make of the `make test` that may be running us
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60, env=env)


@needs_make
def test_missing_chromium_without_apt_is_one_line_saying_how(tmp_path: Path) -> None:
    done = _make("browser-ready", f"CHROMIUM={tmp_path / 'no-chromium'}",
                 f"APT_GET={tmp_path / 'no-apt-get'}")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make:")]
    assert lines == ["make test: the browser tests need Debian's chromium: run 'sudo apt-get install "
                     "-y chromium', or 'make test NO_BROWSER=1' to skip them"]


@needs_make
@pytest.mark.skipif(os.geteuid() != 0, reason="installs with apt only as root")
def test_missing_chromium_as_root_is_installed_with_apt(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_apt.chmod(0o755)
    done = _make("browser-ready", f"CHROMIUM={tmp_path / 'no-chromium'}", f"APT_GET={fake_apt}")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


@needs_make
def test_present_chromium_or_no_browser_asks_nothing(tmp_path: Path) -> None:
    assert _make("browser-ready", f"CHROMIUM={sys.executable}").returncode == 0
    assert _make("browser-ready", f"CHROMIUM={tmp_path / 'none'}", "NO_BROWSER=1").returncode == 0


def test_the_last_line_counts_the_skips_and_names_why(tmp_path: Path) -> None:
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs(): pass\n"
        "@pytest.mark.skip(reason='redis not available: refused')\n"
        "def test_a(): pass\n"
        "@pytest.mark.skip(reason='redis not available: refused')\n"
        "def test_b(): pass\n"
        "def test_c(): pytest.skip('chromium not available: /usr/bin/chromium')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.skip_summary",
           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)]
    done = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == ("3 skipped: redis not available: refused (2); "
                                            "chromium not available: /usr/bin/chromium (1)")
    (tmp_path / "test_some.py").write_text("def test_runs(): pass\n")
    done = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 skipped: every collected test ran."
