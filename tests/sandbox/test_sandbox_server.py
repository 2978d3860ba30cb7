"""BackgroundServer, dropped connections over a real socket, and `python -m sandbox`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import sandbox
from sandbox import constants as c
from sandbox.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]


def test_background_server_serves_and_stops():
    server = BackgroundServer(sandbox.create_app())
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        with requests.Session() as http:
            info = http.get(server.url + "/_sandbox/info", timeout=5).json()
        assert info == {
            "integration_key": c.DEMO_INTEGRATION_KEY,
            "user_id": c.DEMO_USER_ID,
            "account_id": c.DEMO_ACCOUNT_ID,
            "audience": "account-d.docusign.com",
            "base_uri": server.url,
            "auth_base_url": server.url,
            "templates": sorted([c.MEMBERSHIP_TEMPLATE_ID, c.NDA_TEMPLATE_ID, c.INTERNAL_TEMPLATE_ID]),
        }
        url = server.url
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_sandbox/info", timeout=2)
    server.stop()  # stopping twice is harmless


def test_start_twice_is_an_error():
    server = BackgroundServer(sandbox.create_app()).start()
    try:
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()


def test_drop_fault_closes_the_connection(ds):
    with BackgroundServer(ds.app) as server:
        ds.control("/faults", {"mode": "drop", "endpoint": "token", "count": 1})
        form = {"grant_type": c.JWT_BEARER_GRANT_TYPE, "assertion": ds.assertion()}
        with pytest.raises(requests.ConnectionError):
            requests.post(server.url + "/oauth/token", data=form, timeout=5)
        resp = requests.post(server.url + "/oauth/token", data=form, timeout=5)
        assert resp.status_code == 200
    assert ds.control("/calls", method="GET")["counts"]["token"] == 2


def test_signing_url_points_at_the_server(ds):
    with BackgroundServer(ds.app) as server, requests.Session() as http:
        ds_headers = {"Authorization": f"Bearer {ds.token()}"}
        rest = f"{server.url}/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}"
        body = {
            "templateId": c.NDA_TEMPLATE_ID,
            "status": "sent",
            "templateRoles": [
                {"roleName": "Signer", "name": "Bo", "email": "bo@example.com", "clientUserId": "1"}
            ],
        }
        eid = http.post(f"{rest}/envelopes", json=body, headers=ds_headers, timeout=5).json()["envelopeId"]
        view = {
            "returnUrl": "http://127.0.0.1:8070/signed",
            "authenticationMethod": "None",
            "userName": "Bo",
            "email": "bo@example.com",
            "clientUserId": "1",
        }
        url = http.post(
            f"{rest}/envelopes/{eid}/views/recipient", json=view, headers=ds_headers, timeout=5
        ).json()["url"]
        assert url.startswith(server.url + "/Signing/MTRedeem/v1/")
        page = http.get(url, timeout=5)
        assert page.status_code == 200
        assert "Bo" in page.text


def _run(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_cli_bad_flag_is_one_argparse_error():
    with _run("--prot", "8090") as proc:
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "unrecognized arguments: --prot" in err
    assert "Traceback" not in err


def test_cli_port_in_use_is_one_line(ds):
    with BackgroundServer(ds.app) as server:
        port = server.url.rsplit(":", 1)[1]
        with _run("--port", port) as proc:
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0
    assert err.startswith(f"sandbox: cannot listen on 127.0.0.1:{port}")


def test_cli_serves_and_stops_cleanly_on_ctrl_c():
    with _run("--host", "127.0.0.1", "--port", "0") as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("DocuSign sandbox listening on http://127.0.0.1:")
        url = first.split()[4]
        assert requests.get(url + "/_sandbox/info", timeout=5).json()["account_id"] == (c.DEMO_ACCOUNT_ID)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert "stopped" in out
