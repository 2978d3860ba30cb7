"""Calling the emulator directly, as an integration without the gateway would.

`DirectDocuSign` registers its own RSA key with the emulator (like `gateway docusign
configure --sandbox` does), then makes the JWT grant itself. The overhead benchmark uses
one token for its direct calls; the economy benchmark's naive client asks for a new token
before every call, the way a naive integration without a token cache does.
"""

from __future__ import annotations

import time
import typing as t
import uuid

import jwt
import requests

from bench.harness import BenchError
from gateway.upstream import configure_sandbox

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class DirectDocuSign:
    """A minimal DocuSign client against the emulator at `base` (its own key, its own session)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.settings = configure_sandbox(self.base)
        self.account_path = f"/restapi/v2.1/accounts/{self.settings.account_id}"
        self.http = requests.Session()
        self.failures = 0
        self.last_client_user_id = ""

    def token(self) -> str:
        """One JWT grant: a fresh access token."""
        now = int(time.time())
        assertion = jwt.encode({
            "iss": self.settings.integration_key, "sub": self.settings.user_id,
            "aud": self.settings.audience, "iat": now, "exp": now + 3600,
            "scope": "signature impersonation",
        }, self.settings.private_key_pem, algorithm="RS256")
        resp = self.http.post(self.base + "/oauth/token", timeout=30,
                              data={"grant_type": JWT_GRANT, "assertion": assertion})
        if resp.status_code != 200:
            raise BenchError(f"direct token request failed: {resp.status_code} {resp.text[:200]}")
        return str(resp.json()["access_token"])

    def create_body(self) -> dict[str, t.Any]:
        """The same create body the gateway sends for the benchmark's `POST /v1/envelopes`."""
        self.last_client_user_id = uuid.uuid4().hex
        return {
            "templateId": "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01",
            "emailSubject": "Your membership agreement",
            "status": "created",
            "templateRoles": [{
                "email": "ada@example.com", "name": "Ada Lovelace", "roleName": "Member",
                "clientUserId": self.last_client_user_id,
                "tabs": {"textTabs": [{"tabLabel": "member_number", "value": "12345"},
                                      {"tabLabel": "plan", "value": "plus"}]},
            }],
            "customFields": {"textCustomFields": [
                {"name": "gateway_partner", "value": "bench", "show": "false", "required": "false"}]},
        }

    def call(self, token: str, method: str, path: str, body: dict[str, t.Any] | None = None
             ) -> requests.Response:
        """One REST call under the account; a refusal (e.g. a polling limit) is counted, not raised."""
        resp = self.http.request(method, self.base + self.account_path + path, json=body,
                                 headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if resp.status_code >= 400:
            self.failures += 1
        return resp

    def close(self) -> None:
        self.http.close()
