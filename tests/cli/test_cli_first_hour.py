"""A new owner's first hour: every rough edge ends in one line that says what to do next."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from tests.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
# the worktree's code, not whatever the installed console script points at
ENTRY = [sys.executable, "-c", "from gateway.cli import main; main()"]


def gateway(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRY, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("args", [["serve"], ["admin", "create", "owner", "--password-stdin"]])
def test_commands_before_init_leave_no_database_behind(owner: CliRunner, tmp_path: Path,
                                                       args: list[str]) -> None:
    result = owner.invoke(cli, args, input="a long enough passphrase\n")
    assert result.exit_code == 1
    assert lines(result.output) == ["error: the database is not initialised; run `gateway init`"]
    assert not (tmp_path / "instance" / "gateway.db").exists()


def test_admin_create_without_a_terminal_says_to_pipe_the_password(owner: CliRunner) -> None:
    assert owner.invoke(cli, ["init"]).exit_code == 0
    # a new session has no controlling terminal, as under cron, CI or `docker run` without -t
    proc = gateway("admin", "create", "owner", stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.returncode == 1
    assert lines(proc.stdout + proc.stderr) == [
        "error: no terminal to ask for a password: pipe it with --password-stdin"]


def test_docusign_check_before_configure_says_how_to_configure(owner: CliRunner) -> None:
    assert owner.invoke(cli, ["init"]).exit_code == 0
    result = owner.invoke(cli, ["docusign", "check"])
    assert result.exit_code == 1
    assert lines(result.output) == [
        "error: DocuSign is not configured: run `gateway docusign configure --sandbox URL` "
        "or `gateway docusign configure --integration-key ...`"]


def test_sandbox_prints_its_banner_once_after_binding() -> None:
    port = free_port()
    proc = subprocess.Popen([*ENTRY, "sandbox", "--port", str(port)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    banners = [line for line in lines(first + out + err) if "Ctrl-C" in line]
    assert len(banners) == 1, first + out + err


def test_sandbox_on_a_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = gateway("sandbox", "--port", str(port))
    assert proc.returncode == 1
    assert lines(proc.stdout + proc.stderr) == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_serve_on_a_busy_port_fails_at_once_in_one_line(owner: CliRunner) -> None:
    assert owner.invoke(cli, ["init"]).exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        proc = gateway("serve", "--port", str(port))
        elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert lines(proc.stdout + proc.stderr) == [
        f"error: port {port} is in use; stop what uses it or pick another with --port"]
    assert elapsed < 4  # gunicorn alone retries for five seconds


def _every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _every_command(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", _every_command(cli), ids=" ".join)
def test_no_help_text_is_cut_off(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    cut = [line for line in result.output.splitlines()
           if line.rstrip().endswith("...") and not line.startswith("Usage:")]
    assert cut == []
