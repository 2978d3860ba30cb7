"""The README's "Step by step against the emulator", run as written, shows what the README says.

Every ```sh block of that section runs, in order, in one bash, from the checkout, with:

- `. .venv/bin/activate` replaced by a PATH whose first entry holds a `gateway` shim for
  the code under test (the installed console script may belong to another checkout), then
  this interpreter's bin folder (its `python`);
- the ports 8090, 8080 and 8070 replaced by free ones, in the commands, in the expected
  output and in a copy of `policies/` (GATEWAY_POLICY_DIR), so that parallel runs and a
  running demo do not collide;
- TMPDIR set to a temporary folder, so the section's `mktemp -d` lands there.

The ```text block right after a ```sh block is that block's expected output (stdout and
stderr), compared line by line, where `…` matches anything. The checkout must be left as
it was found: no state, no log, no key written into it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Step by step against the emulator"
ACTIVATE = ". .venv/bin/activate"
PORTS = ("8090", "8080", "8070")
MARK = "@@@ readme block"

needs_tools = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")),
                                 reason="bash and curl needed")


def section(readme: str) -> str:
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start:end if end != -1 else None]


def blocks(text: str) -> list[tuple[str, str | None]]:
    """(sh commands, the expected output that follows them or None)."""
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)
    out: list[tuple[str, str | None]] = []
    for lang, body in fenced:
        if lang == "sh":
            out.append((body, None))
        elif lang == "text" and out and out[-1][1] is None:
            out[-1] = (out[-1][0], body)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def move_ports(text: str, ports: dict[str, str]) -> str:
    return re.sub(r"\b(" + "|".join(ports) + r")\b", lambda m: ports[m.group(1)], text)


def matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def checkout_state() -> set[str]:
    done = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in done.stdout.splitlines()
            if "__pycache__" not in line and "tests/artifacts/" not in line}


def test_the_section_has_the_steps_a_user_needs() -> None:
    steps = blocks(section((ROOT / "README.md").read_text(encoding="utf-8")))
    commands = "\n".join(cmd for cmd, _ in steps)
    for needed in ("gateway sandbox --port 8090 > $WORK/sandbox.log", "--retry-connrefused",
                   "http://127.0.0.1:8080/readyz", "gateway docusign sandbox-connect",
                   "python -m examples.partner_site", "rm -rf \"$WORK\""):
        assert needed in commands
    assert "tee " not in commands and "# 201" not in commands
    assert sum(1 for _, shown in steps if shown) >= 5


@needs_tools
def test_readme_steps_run_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ports = {port: str(free_port()) for port in PORTS}
    steps = [(move_ports(cmd, ports), move_ports(shown, ports) if shown else None)
             for cmd, shown in blocks(section(readme))]
    assert steps[0][0].startswith(ACTIVATE)

    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "gateway"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from gateway.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    policies = tmp_path / "policies"
    policies.mkdir()
    for policy in (ROOT / "policies").glob("*.toml"):
        (policies / policy.name).write_text(move_ports(policy.read_text(encoding="utf-8"), ports))
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    script = "\n".join(f"echo '{MARK} {i}'\n" + cmd.replace(ACTIVATE, ":")
                       for i, (cmd, _) in enumerate(steps))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "DATABASE_URL", "RATELIMIT_", "PARTNER_", "LOG_"))}
    env.update(PATH=f"{shim_dir}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
               TMPDIR=str(scratch), GATEWAY_POLICY_DIR=str(policies), PYTHONDONTWRITEBYTECODE="1")
    before = checkout_state()
    proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, output

    shown_by_block = re.split(rf"^{re.escape(MARK)} \d+\n", output, flags=re.M)[1:]
    assert len(shown_by_block) == len(steps), output
    for (cmd, shown), actual in zip(steps, shown_by_block, strict=True):
        if shown is None:
            continue
        expected_lines, actual_lines = shown.splitlines(), actual.splitlines()
        assert len(actual_lines) == len(expected_lines), f"{cmd}\n--- printed:\n{actual}"
        for want, got in zip(expected_lines, actual_lines, strict=True):
            assert matches(want, got), f"{cmd}\n--- README shows:\n{want}\n--- printed:\n{got}"
    assert checkout_state() == before
    assert list(scratch.iterdir()) == []  # the last step deleted the state and the logs
