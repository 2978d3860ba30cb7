"""Shared fixtures: a real DocuSign emulator on loopback and a fresh gateway per test."""

from __future__ import annotations

import os
import shutil
import typing as t
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1"

PARTNER_POLICY = """
partner = "{name}"
display_name = "Partner {name}"
operations = ["create_draft", "recipient_view", "status"]
rate_limit = "{rate}"
return_urls = ["https://{name}.example/done"]
frame_ancestors = ["https://{name}.example"]

[templates.membership]
template_id = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
role = "Member"
email_subject = "Membership"
[templates.membership.fields.member_number]
required = true
[templates.membership.fields.plan]
required = false
"""


def partner_policy(name: str, rate: str = "1000/minute") -> str:
    """A valid policy for `name`: all three operations, the membership template."""
    return PARTNER_POLICY.format(name=name, rate=rate)


STATUS_ONLY_POLICY = """
partner = "viewer"
display_name = "Status only"
operations = ["status"]
rate_limit = "3/minute"

[templates.membership]
template_id = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
role = "Member"
email_subject = "Membership"
"""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees (or leaks) the gateway's environment settings."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_") and name != "GATEWAY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)


@pytest.fixture(scope="session")
def rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


class SandboxControl:
    """The emulator's `/_sandbox/` control API, for arranging and observing tests."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        resp = requests.post(self.url + path, json=body or {}, timeout=10)
        resp.raise_for_status()
        return resp.json() if resp.content else {}

    def calls(self) -> dict[str, int]:
        return requests.get(self.url + "/_sandbox/calls", timeout=10).json()["counts"]

    def fault(self, **spec: t.Any) -> None:
        self.post("/_sandbox/faults", spec)

    def advance(self, seconds: float) -> None:
        self.post("/_sandbox/clock", {"advance": seconds})

    def envelope(self, envelope_id: str) -> dict[str, t.Any]:
        return requests.get(f"{self.url}/_sandbox/envelopes/{envelope_id}", timeout=10).json()


@pytest.fixture(scope="session")
def sandbox_server() -> t.Iterator[t.Any]:
    from sandbox import create_app as create_sandbox
    from sandbox.server import BackgroundServer

    server = BackgroundServer(create_sandbox({"SANDBOX_CONNECT_RETRY_DELAYS": (0.05, 0.1)}))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: t.Any) -> SandboxControl:
    control = SandboxControl(sandbox_server.url)
    control.post("/_sandbox/reset")
    return control


def make_gateway(tmp_path: Path, sandbox_url: str | None, private_pem: str | None,
                 **config: t.Any) -> t.Any:
    """A gateway with its own instance folder, database, master key and policies."""
    from gateway import create_app
    from gateway import store
    from gateway import upstream
    from gateway.services import partner_keys as keys
    from gateway.services import signing_keys

    policy_dir = tmp_path / "policies"
    policy_dir.mkdir(exist_ok=True)
    shutil.copy(ROOT / "policies" / "example.toml", policy_dir / "example.toml")
    (policy_dir / "other.toml").write_text(partner_policy("other"))
    (policy_dir / "viewer.toml").write_text(STATUS_ONLY_POLICY)
    os.environ["GATEWAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "MASTER_KEY": Fernet.generate_key().decode("ascii"),
        "POLICY_DIR": str(policy_dir),
        "PUBLIC_URL": "http://gateway.test",
        "RATELIMIT_STORAGE_URI": "memory://",
        **config,
    })
    with app.app_context():
        store.init_db(store.get_engine())
        with store.transaction() as conn:
            keys.ensure_pepper(conn)
            signing_keys.ensure_keys(conn)
        if sandbox_url:
            settings = upstream.configure_sandbox(sandbox_url, private_key_pem=private_pem)
            with store.transaction() as conn:
                upstream.save_settings(conn, settings, now=0.0)
    return app


@pytest.fixture
def app(tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str) -> t.Any:
    return make_gateway(tmp_path, sandbox.url, rsa_private_pem)


@pytest.fixture
def loopback_port() -> int:
    """A free port for a gateway served over a real socket; its PUBLIC_URL names it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_public_host(app: t.Any) -> t.Callable[..., t.Any]:
    """The app as its front proxy presents it: every request names PUBLIC_URL's host.

    The gateway answers only for that host; a test serving it on a loopback socket (for
    the emulator's Connect deliveries) stands in for the proxy with this.
    """
    import urllib.parse

    host = urllib.parse.urlsplit(app.config["PUBLIC_URL"]).netloc

    def wsgi(environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        environ["HTTP_HOST"] = host
        return app(environ, start_response)

    return wsgi


@pytest.fixture
def client(app: t.Any) -> t.Any:
    return app.test_client()


@pytest.fixture
def runner(app: t.Any) -> t.Any:
    return app.test_cli_runner()


class PartnerActions:
    """A partner calling the gateway with its key, like `AuthActions` in flaskr's tests."""

    def __init__(self, client: t.Any, name: str, key: str) -> None:
        self.client = client
        self.name = name
        self.key = key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def create(self, headers: dict[str, str] | None = None, **overrides: t.Any) -> t.Any:
        body = {
            "template": "membership",
            "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "fields": {"member_number": "12345", "plan": "plus"},
            "reference": "order-778",
        }
        body.update(overrides)
        return self.client.post("/v1/envelopes", json=body, headers=self.headers | (headers or {}))

    def view(self, envelope_id: str, return_url: str = "http://127.0.0.1:8070/signed") -> t.Any:
        return self.client.post(f"/v1/envelopes/{envelope_id}/recipient-view",
                                json={"return_url": return_url}, headers=self.headers)

    def status(self, envelope_id: str) -> t.Any:
        return self.client.get(f"/v1/envelopes/{envelope_id}", headers=self.headers)


def add_partner(app: t.Any, name: str) -> str:
    from gateway import store
    from gateway.services import partner_keys as keys

    with app.app_context(), store.transaction() as conn:
        return keys.add_partner(conn, name)


@pytest.fixture
def partner(app: t.Any, client: t.Any) -> PartnerActions:
    return PartnerActions(client, "example", add_partner(app, "example"))


@pytest.fixture
def other_partner(app: t.Any, client: t.Any) -> PartnerActions:
    return PartnerActions(client, "other", add_partner(app, "other"))


@pytest.fixture
def owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Any:
    """An owner's shell: its own instance folder and policy folder, set through the environment."""
    from click.testing import CliRunner

    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    shutil.copy(ROOT / "policies" / "example.toml", policies / "example.toml")
    monkeypatch.setenv("GATEWAY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("GATEWAY_POLICY_DIR", str(policies))
    return CliRunner()


def service_or_skip(name: str, check: t.Callable[[], None]) -> None:
    """Skip when a local service is absent, unless GATEWAY_REQUIRE_SERVICES=1 (CI)."""
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        if REQUIRE_SERVICES:
            pytest.fail(f"{name} is required (GATEWAY_REQUIRE_SERVICES=1) but unavailable: {exc}")
        pytest.skip(f"{name} not available: {exc}")


# --- fidelity guard (tests/fidelity/plugin.py) -------------------------------------
# Every eSignature REST request the emulator receives in this suite, and every answer,
# is checked against DocuSign's OpenAPI definitions; a violation fails the test.
pytest_plugins = ["tests.fidelity.plugin"]
