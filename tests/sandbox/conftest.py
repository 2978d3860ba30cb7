"""Fixtures for the emulator's own tests: a fresh sandbox app per test and a DocuSign helper."""

from __future__ import annotations

import threading
import typing as t

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask import request

import sandbox
from sandbox import constants as c
from sandbox.server import BackgroundServer

TEST_CONFIG = {"TESTING": True, "SANDBOX_CONNECT_RETRY_DELAYS": (0.05, 0.1)}
REST = f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}"


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@pytest.fixture(scope="session")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    """Six distinct 2048-bit keys (made once: key generation is the slow part)."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(6)]


@pytest.fixture
def app() -> Flask:
    return sandbox.create_app(TEST_CONFIG)


@pytest.fixture
def client(app: Flask) -> t.Any:
    return app.test_client()


class DocuSign:
    """A client of the emulator that signs its own assertions (like the gateway would)."""

    def __init__(self, app: Flask, client: t.Any, key: rsa.RSAPrivateKey) -> None:
        self.app = app
        self.client = client
        self.key = key
        self.state = sandbox.get_state(app)
        self._token: str | None = None

    # --- control API ---------------------------------------------------------------

    def control(self, path: str, body: t.Any = None, *, method: str = "POST") -> t.Any:
        resp = self.client.open(f"/_sandbox{path}", method=method, json=body)
        assert resp.status_code < 300, (path, resp.status_code, resp.get_json())
        return resp.get_json()

    def register(self, key: rsa.RSAPrivateKey | None = None) -> str:
        body = {"integration_key": c.DEMO_INTEGRATION_KEY, "public_key_pem": public_pem(key or self.key)}
        return self.control("/keys", body)["key_id"]

    def grant(self, granted: bool = True) -> None:
        self.control(
            "/consent",
            {"integration_key": c.DEMO_INTEGRATION_KEY, "user_id": c.DEMO_USER_ID, "granted": granted},
        )

    def advance(self, seconds: float) -> None:
        self.control("/clock", {"advance": seconds})

    def now(self) -> int:
        return int(self.state.now())

    # --- OAuth -----------------------------------------------------------------------

    def claims(self, **overrides: t.Any) -> dict[str, t.Any]:
        now = self.now()
        claims = {
            "iss": c.DEMO_INTEGRATION_KEY,
            "sub": c.DEMO_USER_ID,
            "aud": "account-d.docusign.com",
            "iat": now,
            "exp": now + 3600,
            "scope": "signature impersonation",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def assertion(self, key: rsa.RSAPrivateKey | None = None, **overrides: t.Any) -> str:
        return jwt.encode(self.claims(**overrides), key or self.key, algorithm="RS256")

    def request_token(self, assertion: str, grant_type: str = c.JWT_BEARER_GRANT_TYPE) -> t.Any:
        return self.client.post("/oauth/token", data={"grant_type": grant_type, "assertion": assertion})

    def setup(self) -> DocuSign:
        """Register the key and grant consent, as `gateway docusign configure --sandbox` does.

        The emulator clock is also moved to the middle of an hour, so that no test
        counting the hourly budget can see it reset under its feet.
        """
        self.advance((1800 - self.state.now() % 3600) % 3600)
        self.register()
        self.grant()
        return self

    def token(self) -> str:
        if self._token is None:
            resp = self.request_token(self.assertion())
            assert resp.status_code == 200, resp.get_json()
            self._token = resp.get_json()["access_token"]
        return self._token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    # --- REST ---------------------------------------------------------------------------

    def rest(self, method: str, path: str, **kwargs: t.Any) -> t.Any:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.client.open(REST + path, method=method, headers=headers, **kwargs)

    def role(self, **overrides: t.Any) -> dict[str, t.Any]:
        role = {
            "roleName": "Member",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "clientUserId": "cu-1",
            "tabs": {
                "textTabs": [
                    {"tabLabel": "member_number", "value": "12345"},
                    {"tabLabel": "plan", "value": "plus"},
                ]
            },
        }
        role.update(overrides)
        return {k: v for k, v in role.items() if v is not None}

    def create(self, status: str | None = "created", **overrides: t.Any) -> t.Any:
        body = {
            "templateId": c.MEMBERSHIP_TEMPLATE_ID,
            "emailSubject": "Your membership agreement",
            "status": status,
            "templateRoles": [self.role()],
        }
        body.update(overrides)
        return self.rest("POST", "/envelopes", json={k: v for k, v in body.items() if v is not None})

    def sent_envelope(self) -> str:
        resp = self.create(status="sent")
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()["envelopeId"]

    def view(self, envelope_id: str, **overrides: t.Any) -> t.Any:
        body = {
            "returnUrl": "https://partner.example/back?ref=7",
            "authenticationMethod": "None",
            "userName": "Ada Lovelace",
            "email": "ada@example.com",
            "clientUserId": "cu-1",
        }
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        return self.rest("POST", f"/envelopes/{envelope_id}/views/recipient", json=body)

    def signing_path(self, envelope_id: str, **overrides: t.Any) -> str:
        resp = self.view(envelope_id, **overrides)
        assert resp.status_code == 201, resp.get_json()
        url = resp.get_json()["url"]
        assert url.startswith("http://localhost" + c.SIGNING_PATH_PREFIX)
        return url.removeprefix("http://localhost")

    def record(self, envelope_id: str) -> dict[str, t.Any]:
        return self.control(f"/envelopes/{envelope_id}", method="GET")


@pytest.fixture
def ds(app: Flask, client: t.Any, rsa_keys: list[rsa.RSAPrivateKey]) -> DocuSign:
    """Key registered and consent granted; see ``bare_ds`` for neither."""
    return DocuSign(app, client, rsa_keys[0]).setup()


@pytest.fixture
def make_ds(rsa_keys: list[rsa.RSAPrivateKey]) -> t.Callable[..., DocuSign]:
    """A ready DocuSign helper on a fresh app with extra config."""

    def make(**config: t.Any) -> DocuSign:
        app = sandbox.create_app({**TEST_CONFIG, **config})
        return DocuSign(app, app.test_client(), rsa_keys[0]).setup()

    return make


@pytest.fixture
def bare_ds(app: Flask, client: t.Any, rsa_keys: list[rsa.RSAPrivateKey]) -> DocuSign:
    return DocuSign(app, client, rsa_keys[0])


class Listener:
    """A tiny Connect listener: records every POST; answers ``fail_next`` of them with 500."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        self.app = Flask("listener")
        self.app.add_url_rule("/hook", "hook", self.hook, methods=["POST"])

    def hook(self) -> tuple[str, int]:
        with self.lock:
            self.posts.append((dict(request.headers), request.get_data()))
            if self.fail_next:
                self.fail_next -= 1
                return "try later", 500
        return "", 200


@pytest.fixture
def listener() -> t.Iterator[tuple[Listener, str]]:
    hook = Listener()
    with BackgroundServer(hook.app) as server:
        yield hook, server.url + "/hook"


def rest_error(resp, code, status=400):
    """DocuSign's error body: `errorCode` as given; returns the message."""
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["errorCode"] == code
    return resp.get_json()["message"]
