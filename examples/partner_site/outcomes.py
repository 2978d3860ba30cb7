"""What the member reads after signing: DocuSign's codes turned into words.

DocuSign and the gateway speak in codes (`signing_complete`, `session_timeout`, `sent`);
the member never sees one. Every page and the status JSON take their wording from here,
so the page rendered on return and the page updated by polling say the same thing.

The order of evidence: the envelope's status first (completed, declined, voided are
final), then the member's own recipient status (`signer_status`: signed or declined
while the envelope waits for our countersignature), and only then how the signing
session ended (`event`), which on its own proves nothing about the envelope.
"""

from __future__ import annotations

import dataclasses
import typing as t

TERMINAL = frozenset({"completed", "declined", "voided"})


@dataclasses.dataclass(frozen=True)
class Outcome:
    key: str  # the page's CSS class and data-outcome
    headline: str
    message: str
    status_word: str  # the agreement's state, in words
    poll: bool = False  # the page keeps asking for news (a signature still being confirmed)
    resume: bool = False  # "Resume signing" opens a new session for the same envelope

    def as_json(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


COMPLETED = Outcome(
    "completed", "Completed",
    "Your membership agreement is signed by you and countersigned by us. Welcome aboard! "
    "DocuSign emails you a copy.",
    "completed")
WAITING = Outcome(
    "waiting", "Signed, waiting for our countersignature",
    "Thank you, your signature is in. We countersign next, and this page changes to "
    "Completed as soon as we have. You need not keep it open: DocuSign emails you the copy.",
    "waiting for our countersignature", poll=True)
SIGNED = Outcome(
    "signed", "Signed",
    "Thank you for signing. We are confirming your signature with DocuSign; this page "
    "updates by itself.",
    "being confirmed", poll=True)
DECLINED = Outcome(
    "declined", "Declined",
    "You declined to sign the membership agreement, and DocuSign has recorded it. Nothing "
    "else happens. You are welcome to apply again at any time.",
    "declined")
VOIDED = Outcome(
    "voided", "Withdrawn",
    "This agreement was withdrawn and can no longer be signed. Please apply again.",
    "withdrawn")
CANCELLED = Outcome(
    "cancelled", "Not signed yet",
    "You left the signing page before signing. Your agreement is kept for you: resume "
    "signing where you left off whenever you are ready.",
    "not signed yet", resume=True)
TIMEOUT = Outcome(
    "timeout", "Session timed out",
    "The signing page closed after a while without activity, and nothing was signed. "
    "Resume signing to open it again.",
    "not signed yet", resume=True)
ERROR = Outcome(
    "error", "Something went wrong",
    "Signing stopped because of a problem on the signing service. Nothing was signed. "
    "Please try again in a minute.",
    "not signed", resume=True)
UNVERIFIED = Outcome(
    "unverified", "Not verified",
    "This return could not be verified; nothing was recorded. Please start again.",
    "unknown")

BY_KEY = {o.key: o for o in (COMPLETED, WAITING, SIGNED, DECLINED, VOIDED, CANCELLED, TIMEOUT,
                             ERROR, UNVERIFIED)}

# DocuSign's recipient-view return events, for when the statuses say nothing final yet
_BY_EVENT = {
    "signing_complete": SIGNED,
    "decline": DECLINED,
    "cancel": CANCELLED,
    "viewing_complete": CANCELLED,
    "session_timeout": TIMEOUT,
    "ttl_expired": TIMEOUT,
    "id_check_failed": dataclasses.replace(
        ERROR, headline="Identity check failed",
        message="DocuSign could not confirm your identity, so nothing was signed. You can "
                "try again, or contact us if it keeps failing."),
    "access_code_failed": dataclasses.replace(
        ERROR, headline="Access code not accepted",
        message="The access code was not accepted, so nothing was signed. You can try again."),
    "fax_pending": dataclasses.replace(
        SIGNED, message="We are waiting for your faxed signature; this page updates by itself."),
}


def from_status(status: str | None, signer_status: str | None) -> Outcome | None:
    """The outcome the statuses alone establish, or None when they establish nothing yet."""
    if status == "completed":
        return COMPLETED
    if status == "voided":
        return VOIDED
    if status == "declined" or signer_status == "declined":
        return DECLINED
    if signer_status == "completed":
        return WAITING
    return None


def outcome(status: str | None, signer_status: str | None, event: str | None) -> Outcome:
    """The statuses first, the session's end event second; unknown events read as an error."""
    return from_status(status, signer_status) or _BY_EVENT.get(event or "", ERROR)
