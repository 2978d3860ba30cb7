"""`DocuSignClient`: the envelope operations the gateway makes, for the whole process.

Everything else in the gateway goes through one client per app, shared by every
thread of the process. It reads the settings from the store (re-read when the owner
runs `gateway docusign configure` against a running server), holds one access token
and the account's REST base path (`credentials`), and makes every call inside a total
time budget (`transport`). Its two hooks, admission (the account budget) and metrics,
are given when it is made (`init_app`), not patched onto it later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode
from urllib.parse import urlsplit

import requests
from flask import Flask
from flask import current_app
from flask import has_app_context

from gateway import errors
from gateway.upstream.auth import Account
from gateway.upstream.auth import Token
from gateway.upstream.auth import fetch_token
from gateway.upstream.auth import pick_account
from gateway.upstream.credentials import Credentials
from gateway.upstream.errors import json_object
from gateway.upstream.errors import rest_error
from gateway.upstream.redaction import install_log_redaction
from gateway.upstream.settings import GUID_RE
from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.settings import SettingsCache
from gateway.upstream.transport import BeforeCall
from gateway.upstream.transport import OnCall
from gateway.upstream.transport import Transport
from gateway.upstream.transport import default_session

# how often a running client looks for new settings (one indexed SELECT)
DEFAULT_SETTINGS_RECHECK = 5.0


class DocuSignClient:
    """DocuSign for the whole process: one session, one token, one cached account.

    :param before_call: admission hook, called before each REST attempt (retries too),
        raises to refuse it: the account budget, which counts what DocuSign counts
        (one API call per attempt; the account server is not counted)
    :param on_call: metrics hook, called once per HTTP attempt
    """

    def __init__(
        self, app: Flask | None = None, *, session: requests.Session | None = None,
        before_call: BeforeCall | None = None, on_call: OnCall | None = None,
    ) -> None:
        self._app: Flask | None = None
        self.transport = Transport(session or default_session(), before_call=before_call,
                                   on_call=on_call)
        self.total_budget = 25.0
        self.settings_recheck = DEFAULT_SETTINGS_RECHECK
        self.credentials = Credentials(self.transport, app_context=self._app_context)
        self._settings = SettingsCache(app_context=self._app_context,
                                       on_change=self.credentials.clear)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register as `app.extensions["docusign"]` and take the timeouts from the config."""
        self._app = app
        cfg = app.config
        transport = self.transport
        transport.connect_timeout = float(cfg.get("DOCUSIGN_CONNECT_TIMEOUT",
                                                  transport.connect_timeout))
        transport.read_timeout = float(cfg["DOCUSIGN_READ_TIMEOUT"])
        self.total_budget = float(cfg["DOCUSIGN_TOTAL_BUDGET"])
        self.refresh_margin = float(cfg["DOCUSIGN_TOKEN_REFRESH_MARGIN"])
        self.settings_recheck = float(cfg["DOCUSIGN_SETTINGS_RECHECK"])
        app.extensions["docusign"] = self
        install_log_redaction()

    # the knobs tests and operators turn live on the parts that use them

    @property
    def clock(self) -> t.Callable[[], float]:
        """Every timing decision reads this clock: tests move it to reach token expiry."""
        return self.transport.clock

    @clock.setter
    def clock(self, clock: t.Callable[[], float]) -> None:
        self.transport.clock = clock

    @property
    def on_call(self) -> OnCall:
        """The metrics hook (see the class docstring)."""
        return self.transport.on_call

    @on_call.setter
    def on_call(self, hook: OnCall) -> None:
        self.transport.on_call = hook

    @property
    def refresh_margin(self) -> float:
        """Seconds before expiry from which a token is replaced before use."""
        return self.credentials.refresh_margin

    @refresh_margin.setter
    def refresh_margin(self, seconds: float) -> None:
        self.credentials.refresh_margin = seconds

    @property
    def _token(self) -> Token | None:
        # the token held now (tests read it to look for it in logs)
        return self.credentials.token

    # --- the envelope operations ---------------------------------------------

    def create_envelope(
        self,
        *,
        template_id: str,
        email_subject: str,
        role: str,
        signer_name: str,
        signer_email: str,
        client_user_id: str,
        tabs: Mapping[str, str],
        custom_fields: Mapping[str, str],
    ) -> dict[str, t.Any]:
        """Create a draft ("created") from a template; returns DocuSign's EnvelopeSummary."""
        signer: dict[str, t.Any] = {
            "email": signer_email,
            "name": signer_name,
            "roleName": role,
            # clientUserId makes the recipient embedded: DocuSign sends no signing email
            "clientUserId": client_user_id,
        }
        if tabs:
            signer["tabs"] = {"textTabs": [{"tabLabel": k, "value": v} for k, v in tabs.items()]}
        body: dict[str, t.Any] = {
            "templateId": template_id,
            "emailSubject": email_subject,
            "status": "created",
            "templateRoles": [signer],
        }
        if custom_fields:
            body["customFields"] = {"textCustomFields": [
                {"name": k, "value": v, "show": "false", "required": "false"}
                for k, v in custom_fields.items()
            ]}
        summary = self._rest("create_envelope", "POST", "/envelopes", body=body, idempotent=False)
        if not isinstance(summary.get("envelopeId"), str):
            raise errors.UpstreamUnavailable("DocuSign answered without an envelope id.")
        return summary

    def send_envelope(self, envelope_id: str) -> None:
        """Move a draft to "sent" (a recipient view needs a sent envelope)."""
        self._rest("update_envelope", "PUT", f"/envelopes/{_path_id(envelope_id)}",
                   body={"status": "sent"}, idempotent=False)

    def recipient_view(
        self,
        envelope_id: str,
        *,
        return_url: str,
        user_name: str,
        email: str,
        client_user_id: str,
        frame_ancestors: Sequence[str],
        message_origins: Sequence[str],
    ) -> str:
        """The embedded signing URL (single use, about 5 minutes) for the envelope's signer."""
        body: dict[str, t.Any] = {
            "returnUrl": return_url,
            "authenticationMethod": "None",
            "email": email,
            "userName": user_name,
            "clientUserId": client_user_id,
        }
        if frame_ancestors:
            body["frameAncestors"] = list(frame_ancestors)
        if message_origins:
            body["messageOrigins"] = list(message_origins)
        view = self._rest("recipient_view", "POST",
                          f"/envelopes/{_path_id(envelope_id)}/views/recipient",
                          body=body, idempotent=False)
        url = view.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise errors.UpstreamUnavailable("DocuSign answered without a signing URL.")
        return url

    def get_envelope(self, envelope_id: str, *, budget: float | None = None) -> dict[str, t.Any]:
        """DocuSign's Envelope object (status, timestamps and recipients with their statuses).

        :param budget: seconds for the whole call, retries included, when shorter than the
            client's total budget (the return relay keeps a signer's browser waiting)
        """
        return self._rest("get_envelope", "GET",
                          f"/envelopes/{_path_id(envelope_id)}?include=recipients",
                          idempotent=True, budget=budget)

    def find_envelopes(self, *, custom_field: tuple[str, str], since: float) -> list[dict[str, t.Any]]:
        """Envelopes changed since `since` (epoch) that carry the text custom field `(name, value)`.

        DocuSign's listStatusChanges (`GET /envelopes?from_date=...&custom_field=name=value`),
        a read, so retried like one. Used to find what an interrupted create made.
        """
        name, value = custom_field
        query = urlencode({
            "from_date": dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "custom_field": f"{name}={value}",
            "include": "custom_fields",
        })
        body = self._rest("list_status_changes", "GET", f"/envelopes?{query}", idempotent=True)
        found = body.get("envelopes") or []
        return [e for e in found if isinstance(e, dict) and isinstance(e.get("envelopeId"), str)
                and _carries_field(e, name, value)]

    # --- operator checks ---------------------------------------------------

    def check(self, *, fresh: bool = False) -> dict[str, str]:
        """Token and userinfo (cached ones unless `fresh`): for `gateway docusign check`."""
        deadline = self.clock() + self.total_budget
        settings = self._current_settings()
        if fresh:
            self.credentials.reset(deadline)
        _, account = self.credentials.get(settings, deadline, fresh=fresh)
        return {"user_name": account.user_name, "account_name": account.account_name,
                "base_uri": account.base_uri}

    def fresh_check(self) -> FreshCheck:
        """A new JWT grant and a userinfo call, every time: for the owner's `docusign check`.

        Nothing cached is used and nothing is kept: not the process's token, not the fleet's
        shared one. Raises `CheckFailed` naming the step that failed.
        """
        deadline = self.clock() + self.total_budget
        settings = self._current_settings()
        try:
            token = fetch_token(self.transport, settings, deadline,
                                refresh_margin=self.refresh_margin)
        except errors.GatewayError as exc:
            raise CheckFailed("grant", exc, settings) from None
        url = settings.oauth_base_url.rstrip("/") + "/oauth/userinfo"
        try:
            resp = self.transport.call("userinfo", "GET", url, deadline=deadline,
                                       idempotent=True,
                                       headers={"Authorization": token.authorization})
            if resp.status_code >= 400:
                raise errors.UpstreamAuthFailed() if resp.status_code == 401 else rest_error(resp)
            info = json_object(resp)
        except errors.GatewayError as exc:
            raise CheckFailed("userinfo", exc, settings) from None
        try:
            account = pick_account(info, settings)
        except errors.UpstreamAuthFailed as exc:
            raise CheckFailed("account", exc, settings, userinfo=info) from None
        except errors.GatewayError as exc:
            raise CheckFailed("userinfo", exc, settings) from None
        email = info.get("email")
        return FreshCheck(account=account, user_email=email if isinstance(email, str) else "",
                          settings=settings)

    def get_template(self, template_id: str) -> dict[str, t.Any]:
        """DocuSign's envelopeTemplate with its recipients and their tabs (Templates_GetTemplate).

        An owner-side read for `gateway policies check --upstream`: no partner route calls it.
        """
        return self._rest("get_template", "GET",
                          f"/templates/{_path_id(template_id, 'template')}?include=tabs",
                          idempotent=True)

    def token_status(self) -> dict[str, t.Any]:
        """Whether a token is held and for how long: no network, no database (for /readyz)."""
        token = self.credentials.token
        if token is None:
            return {"held": False, "expires_in": None}
        remaining = max(0.0, token.expires_at - self.clock())
        return {"held": remaining > 0, "expires_in": int(remaining)}

    # --- plumbing -------------------------------------------------------------

    def _current_settings(self) -> DocuSignSettings:
        return self._settings.current(self.clock(), recheck=self.settings_recheck)

    def _app_context(self) -> t.ContextManager[t.Any]:
        # worker threads (and the CLI) may call without a Flask context of their own
        if has_app_context() or self._app is None:
            return contextlib.nullcontext()
        return self._app.app_context()

    def _rest(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: Mapping[str, t.Any] | None = None,
        budget: float | None = None,
    ) -> dict[str, t.Any]:
        deadline = self.clock() + min(self.total_budget, budget or self.total_budget)
        settings = self._current_settings()
        for reauth in (False, True):
            token, account = self.credentials.get(settings, deadline)
            resp = self.transport.call(
                endpoint, method, account.base_path + path, deadline=deadline,
                idempotent=idempotent, headers={"Authorization": token.authorization},
                json_body=body, admit=True,
            )
            if resp.status_code == 401 and not reauth:
                # DocuSign did nothing with an unauthenticated call, so even a create may
                # go again, once, with a new token
                self.credentials.drop(token, deadline)
                continue
            break
        if resp.status_code >= 400:
            raise rest_error(resp)
        return json_object(resp) if resp.content else {}


def _carries_field(envelope: Mapping[str, t.Any], name: str, value: str) -> bool:
    """Whether a listed envelope carries the custom field, as its own `customFields` show.

    Fail closed: an envelope listed without `customFields` proves nothing about the marker
    (the filter may have been ignored), and adopting it would hand a partner a stranger's
    envelope.
    """
    custom = envelope.get("customFields")
    if not isinstance(custom, dict):
        return False
    text = custom.get("textCustomFields")
    return isinstance(text, list) and any(
        isinstance(f, dict) and f.get("name") == name and f.get("value") == value for f in text)


def _path_id(some_id: str, what: str = "envelope") -> str:
    # ids go into the URL path: refuse anything that could change the path
    if not GUID_RE.match(some_id or ""):
        raise errors.UpstreamRejected(f"The {what} id is not a DocuSign {what} id.")
    return some_id


@dataclass(frozen=True)
class FreshCheck:
    """What a successful `fresh_check` found: the configured account, as userinfo names it."""

    account: Account
    user_email: str
    settings: DocuSignSettings


class CheckFailed(Exception):
    """`fresh_check` failed at `step`: "grant" (JWT grant), "userinfo" or "account".

    `error` is the gateway error the step raised; `userinfo` is userinfo's answer when the
    configured account is not among the user's accounts.
    """

    def __init__(self, step: str, error: errors.GatewayError, settings: DocuSignSettings, *,
                 userinfo: Mapping[str, t.Any] | None = None) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.settings = settings
        self.userinfo = userinfo


def get_client() -> DocuSignClient:
    """The app's DocuSign client."""
    return t.cast(DocuSignClient, current_app.extensions["docusign"])


def init_app(app: Flask, *, before_call: BeforeCall | None = None,
             on_call: OnCall | None = None) -> None:
    """Give the app its DocuSign client, with its admission and metrics hooks."""
    DocuSignClient(app, before_call=before_call, on_call=on_call)
