"""The gateway's webhooks, received as any partner should: verified, deduplicated, in order.

The gateway POSTs `{"type", "timestamp", "data": {"envelope_id", "status",
"signer_status", "template", "reference"}}` signed per the Standard Webhooks
specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with this
partner's `whsec_...` secret. The `standardwebhooks` library checks the signature and
that the timestamp is within five minutes (so a captured request cannot be replayed
later); the `webhook-id` is remembered, so the gateway's at-least-once retries are
applied once.

`StatusBook` is the site's memory of each envelope's latest known status (from
webhooks, verified returns and the gateway's status API). It only moves forward: a
late or retried event never turns "completed" back into "waiting".
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import typing as t

from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError

from examples.partner_site.outcomes import TERMINAL

log = logging.getLogger(__name__)

SECRET_ENV = "PARTNER_WEBHOOK_SECRET"
HOOK_PATH = "/hooks/signing"
MAX_BODY = 64 * 1024
EVENT_TYPES = frozenset({"envelope.signer_completed", "envelope.signer_declined",
                         "envelope.completed", "envelope.declined", "envelope.voided"})
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookRefused(Exception):
    """The request is not a genuine webhook from the gateway; `status` is the answer's code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def webhooks_from_secrets(secrets: str | t.Iterable[str] | None) -> list[Webhook]:
    """One verifier per secret (several while the site itself rolls over to a new one).

    A string may hold several secrets separated by spaces or commas (an env var)."""
    if not secrets:
        return []
    if isinstance(secrets, str):
        secrets = secrets.replace(",", " ").split()
    out = []
    for secret in secrets:
        try:
            out.append(Webhook(secret.strip()))
        except Exception:  # binascii.Error, EmptyWebhookSecretError: never echo the secret
            raise ValueError("the webhook secret is not a whsec_... secret (base64 after "
                             "the prefix)") from None
    return out


def verify(webhooks: t.Sequence[Webhook], body: bytes, headers: t.Mapping[str, str]) -> t.Any:
    """The parsed payload of a genuine webhook, or WebhookRefused."""
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in _HEADERS}
    if len(lowered) != len(_HEADERS) or not all(lowered.values()):
        raise WebhookRefused(400, "missing webhook headers")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused(400, "body is not UTF-8") from None
    reason = "no webhook secret configured"
    for webhook in webhooks:
        try:
            webhook.verify(text, lowered, json_parse=False)
        except WebhookVerificationError as exc:
            reason = str(exc)
            continue
        except ValueError:  # binascii.Error et al.: a malformed webhook-signature header
            reason = "malformed signature header"
            continue
        try:
            return json.loads(text)
        except ValueError:
            raise WebhookRefused(400, "body is not JSON") from None
    raise WebhookRefused(401, f"signature refused: {reason}")


@dataclasses.dataclass
class Known:
    status: str | None
    signer_status: str | None
    at: float  # when the gateway saw this status (epoch seconds)
    source: str  # webhook, return, gateway

    def as_json(self) -> dict[str, t.Any]:
        return {"status": self.status, "signer_status": self.signer_status,
                "source": self.source}


def _rank(status: str | None, signer_status: str | None) -> int:
    """How far along: a status is only replaced by one at least as far along."""
    if status in TERMINAL:
        return 3
    if signer_status in ("completed", "declined"):
        return 2
    return 1 if status or signer_status else 0


class StatusBook:
    """Latest known status per envelope and the webhook ids already applied (thread-safe)."""

    def __init__(self, *, max_envelopes: int = 10_000, max_ids: int = 50_000,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._known: collections.OrderedDict[str, Known] = collections.OrderedDict()
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._polled: dict[str, float] = {}
        self._max_envelopes = max_envelopes
        self._max_ids = max_ids
        self._lock = threading.Lock()

    def get(self, envelope_id: str) -> Known | None:
        with self._lock:
            known = self._known.get(envelope_id)
            return dataclasses.replace(known) if known else None

    def record(self, envelope_id: str, status: str | None, signer_status: str | None, *,
               at: float, source: str) -> Known:
        with self._lock:
            return self._record(envelope_id, Known(status, signer_status, at, source))

    def apply_webhook(self, webhook_id: str, envelope_id: str, status: str | None,
                      signer_status: str | None, *, at: float) -> bool:
        """Record one webhook; False (and nothing changes) when its id was applied before."""
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            while len(self._ids) > self._max_ids:
                self._ids.popitem(last=False)
            self._record(envelope_id, Known(status, signer_status, at, "webhook"))
            return True

    def claim_poll(self, envelope_id: str, interval: float) -> bool:
        """True for at most one caller per envelope per `interval` seconds."""
        now = self._clock()
        with self._lock:
            last = self._polled.get(envelope_id)
            if last is not None and now - last < interval:
                return False
            self._polled[envelope_id] = now
            if len(self._polled) > self._max_envelopes:
                cutoff = now - interval
                self._polled = {k: v for k, v in self._polled.items() if v >= cutoff}
            return True

    def _record(self, envelope_id: str, new: Known) -> Known:
        old = self._known.get(envelope_id)
        if old is not None:
            new_rank = _rank(new.status, new.signer_status)
            old_rank = _rank(old.status, old.signer_status)
            if new_rank < old_rank or (new_rank == old_rank and new.at < old.at):
                return dataclasses.replace(old)  # stale or out of order: the record stands
        self._known[envelope_id] = new
        self._known.move_to_end(envelope_id)
        while len(self._known) > self._max_envelopes:
            self._known.popitem(last=False)
        return dataclasses.replace(new)


def parse_time(value: t.Any, default: float) -> float:
    """Epoch seconds from an ISO 8601 string (as the gateway writes them), else `default`."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return default


def event_fields(payload: t.Any) -> tuple[str, str, str | None, str | None] | None:
    """(type, envelope_id, status, signer_status) of a well-formed payload, else None."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return None
    kind, data = payload.get("type"), payload["data"]
    envelope_id = data.get("envelope_id")
    status, signer_status = data.get("status"), data.get("signer_status")
    if not isinstance(kind, str) or not isinstance(envelope_id, str) or not envelope_id:
        return None
    if len(envelope_id) > 100:
        return None
    for value in (status, signer_status):
        if value is not None and not isinstance(value, str):
            return None
    return kind, envelope_id, status, signer_status
