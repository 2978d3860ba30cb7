"""In-memory state of one emulator app: identities, envelopes, tokens, limits."""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
import typing as t
import uuid
from collections import Counter
from collections import deque

from . import constants as c
from .template import build_template

if t.TYPE_CHECKING:
    from .connect import ConnectNotifier


def format_datetime(epoch: float) -> str:
    """Render an epoch time the way DocuSign does (UTC, 7 fractional digits, ``Z``).

    :param epoch: seconds since the epoch (emulator clock)
    """
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    fraction = f"{moment.microsecond:06d}".ljust(c.DATETIME_FRACTION_DIGITS, "0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"


def new_guid() -> str:
    """A fresh lowercase GUID, as DocuSign uses for envelopes and recipients."""
    return str(uuid.uuid4())


class Sandbox:
    """All mutable emulator state, guarded by one re-entrant lock.

    Views take ``sandbox.lock`` around every read-modify-write, because the
    emulator is served by a threaded server.
    """

    def __init__(self, config: t.Mapping[str, t.Any]) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.connect: ConnectNotifier | None = None
        self.reset()

    # --- lifecycle --------------------------------------------------------

    def reset(self) -> None:
        """Restore the seeded state (no keys, no consent, no envelopes)."""
        with self.lock:
            self.clock_offset = 0.0
            self.integration_keys: dict[str, dict[str, t.Any]] = {c.DEMO_INTEGRATION_KEY: {"keys": {}}}
            self.users: dict[str, dict[str, t.Any]] = {
                c.DEMO_USER_ID: {
                    "user_id": c.DEMO_USER_ID,
                    "name": c.DEMO_USER_NAME,
                    "given_name": c.DEMO_USER_GIVEN_NAME,
                    "family_name": c.DEMO_USER_FAMILY_NAME,
                    "email": c.DEMO_USER_EMAIL,
                    "account_id": c.DEMO_ACCOUNT_ID,
                    "created": time.time(),
                }
            }
            self.accounts: dict[str, dict[str, t.Any]] = {
                c.DEMO_ACCOUNT_ID: {
                    "account_id": c.DEMO_ACCOUNT_ID,
                    "account_name": c.DEMO_ACCOUNT_NAME,
                    "organization_id": c.DEMO_ORGANIZATION_ID,
                }
            }
            self.consents: set[tuple[str, str]] = set()
            self.templates: dict[str, dict[str, t.Any]] = {
                tpl["templateId"]: build_template(copy.deepcopy(dict(tpl))) for tpl in c.SEED_TEMPLATES
            }
            self.envelopes: dict[str, dict[str, t.Any]] = {}
            self.tokens: dict[str, dict[str, t.Any]] = {}
            self.signing_urls: dict[str, dict[str, t.Any]] = {}
            self.sessions: dict[str, dict[str, t.Any]] = {}
            self.faults: list[dict[str, t.Any]] = []
            self.calls: Counter[str] = Counter()
            self.hourly: dict[str, tuple[int, int]] = {}
            self.burst: dict[str, deque[float]] = {}
            self.polls: dict[str, deque[float]] = {}
            if self.connect is not None:
                self.connect.reset()

    # --- clock ------------------------------------------------------------

    def now(self) -> float:
        """Emulator time: wall clock plus whatever ``/_sandbox/clock`` added."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> float:
        """Move the emulator clock forward.

        :param seconds: non-negative number of seconds
        """
        with self.lock:
            self.clock_offset += seconds
            return self.now()

    # --- envelopes --------------------------------------------------------

    def set_envelope_status(
        self,
        envelope: dict[str, t.Any],
        status: str,
        *,
        now: float | None = None,
        notify: bool = True,
    ) -> None:
        """Change an envelope's status, stamp its dates and publish to Connect.

        :param envelope: the internal record (caller holds the lock)
        :param status: the new status
        :param now: the time of the change (default: the emulator clock now)
        :param notify: publish ``envelope-<status>`` now (False: the caller does, later)
        """
        now = self.now() if now is None else now
        envelope["status"] = status
        envelope["statusChangedDateTime"] = now
        envelope["lastModifiedDateTime"] = now
        stamp = {
            "sent": "sentDateTime",
            "delivered": "deliveredDateTime",
            "completed": "completedDateTime",
            "declined": "declinedDateTime",
            "voided": "voidedDateTime",
        }.get(status)
        if stamp:
            envelope[stamp] = now
        if status == "sent" and envelope.get("initialSentDateTime") is None:
            envelope["initialSentDateTime"] = now
        if notify:
            self.notify(envelope, f"envelope-{status}")

    def notify(self, envelope: dict[str, t.Any], event: str, recipient_id: str | None = None) -> None:
        """Queue one Connect message (``envelope-<status>`` or ``recipient-<status>``).

        :param envelope: the internal record (caller holds the lock)
        :param event: the event name
        :param recipient_id: the recipient of a ``recipient-*`` event
        """
        kind, _, status = event.partition("-")
        statuses = c.CONNECTED_STATUSES if kind == "envelope" else c.CONNECTED_RECIPIENT_STATUSES
        if status in statuses and self.connect is not None:
            self.connect.publish(envelope, event, recipient_id)
