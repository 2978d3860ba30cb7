"""`gateway demo` as the owner runs it: a real process, driven over HTTP, stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
import typing as t
from pathlib import Path

import pytest
import requests

from gateway.cli.demo_stack import demo_policy
from gateway.errors import CLIError
from tests.embedded import act
from tests.embedded import free_port
from tests.embedded import query
from tests.embedded import wait_for

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "from gateway.cli import main; main()"


def demo_process(*ports: int) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", ENTRY, "demo", "--sandbox-port", str(ports[0]),
            "--gateway-port", str(ports[1]), "--site-port", str(ports[2])]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})


@pytest.fixture
def demo() -> t.Iterator[tuple[subprocess.Popen[str], str, list[int], list[str]]]:
    ports = [free_port(), free_port(), free_port()]
    proc = demo_process(*ports)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"Open (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        # then, once: the console with its login, and the emulator's countersigning page
        more = [proc.stdout.readline(), proc.stdout.readline()]
        yield proc, match.group(1), ports, more
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


def console_login(console_line: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"owner's console +(http://127\.0\.0\.1:\d+/admin/) +\(username (\S+), "
                         r"password (\S+); shown once\)\n", console_line)
    assert match, console_line
    return match.group(1), match.group(2), match.group(3)


def sign_in(console: str, user: str, password: str) -> requests.Session:
    owner = requests.Session()
    form = owner.get(console + "login", timeout=10).text
    answer = owner.post(console + "login", timeout=30, allow_redirects=False, data={
        "csrf_token": hidden(form, "csrf_token"), "username": user, "password": password})
    assert answer.status_code == 303, answer.text
    return owner


def test_demo_signs_end_to_end_and_stops_on_ctrl_c(demo) -> None:
    proc, site, (sandbox_port, gateway_port, _), more = demo
    assert site == f"http://127.0.0.1:{demo[2][2]}/"
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    console, user, password = console_login(more[0])
    assert console == f"http://127.0.0.1:{gateway_port}/admin/"
    assert more[1] == ("to countersign as the owner's countersigner, open "
                       f"{sandbox}/_sandbox/\n")
    with requests.Session() as browser:
        form = browser.get(site, timeout=10).text
        page = browser.post(site + "sign", timeout=30, data={
            "csrf": hidden(form, "csrf"), "submission": hidden(form, "submission"),
            "name": "Ada Lovelace", "email": "ada@example.com", "member_number": "1815",
            "plan": "plus"})
        assert page.status_code == 200, page.text
        url = re.search(r'<iframe id="signing-frame" title="Signing" src="([^"]+)"', page.text)[1]
        env_id = re.search(r'id="envelope-id">([^<]+)<', page.text)[1]
        back = act(url.replace("&amp;", "&"), "sign")
        assert back.startswith(f"http://127.0.0.1:{gateway_port}/v1/return/")
        # the site asks the gateway now, then not again for STATUS_FALLBACK_SECONDS (15 s):
        # the "completed" it learns below can only come from the gateway's webhook
        first = browser.get(f"{site}envelopes/{env_id}/status.json", timeout=10).json()
        assert first["status"] != "completed"

        # the membership agreement routes on to the owner's countersigner: sign as them
        record = requests.get(f"{sandbox}/_sandbox/envelopes/{env_id}", timeout=5).json()
        counter = next(r["recipientId"] for r in record["recipients"]
                       if r["roleName"] == "Countersigner")
        signed = requests.post(f"{sandbox}/_sandbox/envelopes/{env_id}/recipients/{counter}/sign",
                               json={}, timeout=5)
        assert signed.status_code == 200, signed.text

        # before the browser comes back, Connect alone brings the gateway to completed
        def completed_delivered() -> bool:
            log = requests.get(sandbox + "/_sandbox/connect/deliveries", timeout=5).json()
            return any(d["event"] == "envelope-completed" and d.get("status_code") == 200
                       and d["envelope_id"] == env_id for d in log)

        wait_for(completed_delivered, timeout=15)

        def site_knows() -> t.Any:
            known = browser.get(f"{site}envelopes/{env_id}/status.json", timeout=10).json()
            return known if known["status"] == "completed" else None

        known = wait_for(site_knows, timeout=12)
        assert (known["source"], known["outcome"]["key"]) == ("webhook", "completed")
        status = browser.get(f"{site}status/{env_id}", timeout=10).json()
        assert (status["status"], status["last_event"]) == ("completed", "envelope-completed")
        calls = requests.get(sandbox + "/_sandbox/calls", timeout=5).json()["counts"]
        assert calls["get_envelope"] == 0

        result = browser.get(back, timeout=30)
        assert result.url.startswith(site + "signed?")
        assert query(result.url)["envelope_id"] == env_id
        assert 'data-outcome="completed"' in result.text

    # the console login printed works, and its webhook page shows the deliveries
    with sign_in(console, user, password) as owner:
        hooks_page = owner.get(console + "partners/example/webhooks", timeout=10)
        assert hooks_page.status_code == 200
        assert "envelope.completed" in hooks_page.text and "delivered" in hooks_page.text

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "demo stopped" in err
    assert "Traceback" not in err
    assert "pgw_" not in out + err  # the partner key is never printed
    assert "whsec_" not in out + err  # nor the webhook secret
    for port in demo[2]:  # every port is free again
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))

def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc = demo_process(free_port(), taken, free_port())
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == ""
    assert err.strip().splitlines() == [
        f"error: port {taken} (gateway) is already in use; stop what uses it or pick another "
        "with --gateway-port"]


def test_demo_policy_moves_the_site_origin() -> None:
    text = (ROOT / "policies" / "example.toml").read_text()
    moved = demo_policy(text, "http://127.0.0.1:9999")
    assert 'return_urls = ["http://127.0.0.1:9999/signed"]' in moved
    assert 'frame_ancestors = ["http://127.0.0.1:9999"]' in moved
    assert 'webhook_url = "http://127.0.0.1:9999/hooks/signing"' in moved
    assert tomllib.loads(moved)["webhook_url"] == "http://127.0.0.1:9999/hooks/signing"
    already = text.replace('partner = "example"\n',
                           'partner = "example"\nwebhook_url = "https://old.example/x"\n')
    assert "old.example" not in demo_policy(already, "http://127.0.0.1:9999")
    assert "8070" not in moved
    with pytest.raises(CLIError):
        demo_policy("partner = 'x'\n", "http://127.0.0.1:1")
