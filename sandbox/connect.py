"""Connect (JSON SIM) webhooks: HMAC-signed posts from a background thread (§9)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
import typing as t

import requests

from . import constants as c
from .render import envelope_json
from .state import format_datetime

if t.TYPE_CHECKING:
    from .state import Sandbox


def sign(secret: str, body: bytes) -> str:
    """``base64(HMAC-SHA256(secret as UTF-8, body))``, as in ``X-DocuSign-Signature-N``.

    :param secret: one Connect HMAC secret
    :param body: the exact bytes posted
    """
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class ConnectNotifier:
    """Queues one message per envelope or recipient status change; delivers them in order.

    One daemon worker thread per app posts each message, retrying after each
    delay of ``SANDBOX_CONNECT_RETRY_DELAYS`` on a non-2xx answer or a
    connection error. Requests that change a status only enqueue.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.queue: queue.Queue[tuple[int, dict[str, t.Any], dict[str, t.Any]]] = queue.Queue()
        self.generation = 0
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the configuration and the delivery log; drop queued messages."""
        self.generation += 1
        self.config: dict[str, t.Any] = {"url": None, "hmac_secrets": [], "enabled": False}
        self.deliveries: list[dict[str, t.Any]] = []

    def configure(self, url: str, hmac_secrets: list[str], enabled: bool) -> None:
        """Set the listener URL and HMAC secrets (the emulator has one configuration)."""
        self.config = {"url": url, "hmac_secrets": list(hmac_secrets), "enabled": enabled}

    def message(
        self, envelope: dict[str, t.Any], event: str | None = None, recipient_id: str | None = None
    ) -> dict[str, t.Any]:
        """The JSON SIM message for an event of the envelope (caller holds the lock).

        :param event: ``envelope-<status>`` or ``recipient-<status>``; default: the
            envelope's current status
        :param recipient_id: for a recipient event, the recipient's id (``data.recipientId``)
        """
        account_id = envelope["accountId"]
        data: dict[str, t.Any] = {"accountId": account_id, "userId": envelope["senderUserId"]}
        if recipient_id is not None:
            data["recipientId"] = recipient_id
        data["envelopeId"] = envelope["envelopeId"]
        data["envelopeSummary"] = envelope_json(
            envelope,
            recipients=c.CONNECT_INCLUDE_RECIPIENTS,
            custom_fields=c.CONNECT_INCLUDE_RECIPIENTS,
        )
        return {
            "event": event or f"envelope-{envelope['status']}",
            "apiVersion": c.CONNECT_API_VERSION,
            "uri": f"/restapi/v2.1/accounts/{account_id}/envelopes/{envelope['envelopeId']}",
            "retryCount": 0,
            "configurationId": c.CONNECT_CONFIGURATION_ID,
            "generatedDateTime": format_datetime(self.sandbox.now()),
            "data": data,
        }

    def publish(
        self, envelope: dict[str, t.Any], event: str | None = None, recipient_id: str | None = None
    ) -> None:
        """Queue a message for the event (default: the envelope's new status), if Connect is on."""
        config = self.config
        if not config["enabled"] or not config["url"]:
            return
        self.queue.put((self.generation, dict(config), self.message(envelope, event, recipient_id)))
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="sandbox-connect", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            generation, config, message = self.queue.get()
            try:
                self._deliver(generation, config, message)
            except Exception as exc:  # never let the worker die
                self._record(message, {"error": f"internal: {exc!r}"}, message["retryCount"])
            finally:
                self.queue.task_done()

    def _deliver(self, generation: int, config: dict[str, t.Any], message: dict[str, t.Any]) -> None:
        delays = [0, *self.sandbox.config["SANDBOX_CONNECT_RETRY_DELAYS"]]
        timeout = self.sandbox.config["SANDBOX_CONNECT_TIMEOUT"]
        for attempt, delay in enumerate(delays):
            if delay:
                time.sleep(delay)
            if generation != self.generation:
                return  # the sandbox was reset meanwhile
            message["retryCount"] = attempt
            # indented, UTF-8 JSON: listeners must hash the raw bytes, not re-serialise
            body = json.dumps(message, indent=2, ensure_ascii=False).encode("utf-8")
            headers = {
                "Content-Type": "application/json",
                c.CONNECT_DIGEST_HEADER[0]: c.CONNECT_DIGEST_HEADER[1],
            }
            for n, secret in enumerate(config["hmac_secrets"], start=1):
                headers[c.CONNECT_SIGNATURE_HEADER.format(n=n)] = sign(secret, body)
            try:
                resp = requests.post(config["url"], data=body, headers=headers, timeout=timeout)
            except requests.RequestException as exc:
                self._record(message, {"error": type(exc).__name__}, attempt)
                continue
            self._record(message, {"status_code": resp.status_code}, attempt)
            if 200 <= resp.status_code < 300:
                return

    def _record(self, message: dict[str, t.Any], outcome: dict[str, t.Any], attempt: int) -> None:
        with self.sandbox.lock:
            self.deliveries.append(
                {
                    "event": message["event"],
                    "envelope_id": message["data"]["envelopeId"],
                    "recipient_id": message["data"].get("recipientId"),
                    "retry_count": attempt,
                    **outcome,
                }
            )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued message is delivered or given up; for tests.

        :param timeout: seconds to wait at most
        :returns: whether the queue drained in time
        """
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.queue.all_tasks_done.wait(remaining)
        return True
