"""The gateway's tables (SQLAlchemy Core), and the schema version with its migrations.

The schema is versioned by a number in the `meta` table: `gateway init` creates what is
missing, runs the MIGRATIONS from the recorded version up, and records the version; a
database of another version is refused with a clear message rather than half-used. (A
dozen tables that change rarely do not earn Alembic's migration machinery; the version
check keeps an old binary from writing into a newer schema.)
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 3
#: what `gateway init` runs to bring an older database up to SCHEMA_VERSION (new tables
#: are created by `create_all`); version -> statements taking it to version + 1
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE envelopes ADD COLUMN signer_status VARCHAR(32)",),
    # the sealer chains rows in seal order; the rows of the old in-request chain were
    # chained in id order, so their seal order is their id
    2: ("ALTER TABLE audit_events ADD COLUMN seal_seq INTEGER",
        "UPDATE audit_events SET seal_seq = id WHERE row_hash IS NOT NULL",
        "CREATE INDEX ix_audit_events_seal_seq ON audit_events (seal_seq)"),
}

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

partners = sa.Table(
    "partners",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False, index=True),
    # HMAC-SHA256(pepper, full key), hex: the key itself is never stored
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
)

envelopes = sa.Table(
    "envelopes",
    metadata,
    sa.Column("envelope_id", sa.String(64), primary_key=True),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False, index=True),
    sa.Column("template_alias", sa.String(63), nullable=False),
    sa.Column("reference", sa.String(255)),
    sa.Column("client_user_id", sa.String(64), nullable=False),
    # vault-encrypted JSON {"name", "email"}: needed to open the signing session
    sa.Column("signer_enc", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    # the partner's own signer's recipient status (it completes before the envelope does
    # when the template routes on to a countersigner)
    sa.Column("signer_status", sa.String(32)),
    sa.Column("last_event", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # last time DocuSign itself was asked for this envelope's status
    sa.Column("upstream_checked_at", sa.Float),
)

# What DocuSign itself last said about an envelope (a Connect event or a confirming read),
# stamped on DocuSign's clock. Connect delivers at least once and in no guaranteed order, so
# an event is applied only when it is newer than `as_of`; our own clock cannot order them.
envelope_upstream = sa.Table(
    "envelope_upstream",
    metadata,
    sa.Column("envelope_id", sa.String(64), sa.ForeignKey("envelopes.envelope_id"),
              primary_key=True),
    sa.Column("status", sa.String(32)),
    # DocuSign's statusChangedDateTime (else the message's generatedDateTime), epoch seconds
    sa.Column("as_of", sa.Float),
    sa.Column("source", sa.String(64)),
    sa.Column("received_at", sa.Float, nullable=False),
)

idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("partner_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    # "pending" while the first request runs, then "done" with the response kept
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("response_status", sa.Integer),
    sa.Column("response_body", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(64)),
    sa.Column("partner", sa.String(63), index=True),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("method", sa.String(8)),
    sa.Column("path", sa.String(512)),
    sa.Column("envelope_id", sa.String(64)),
    sa.Column("status", sa.Integer),
    sa.Column("code", sa.String(64)),
    sa.Column("latency_ms", sa.Float),
    sa.Column("detail", sa.Text),
    # NULL until the sealer chains the row (`services/audit.py`); then its place in the chain
    sa.Column("seal_seq", sa.Integer, index=True),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("row_hash", sa.String(64)),
)

# Failed requests of nobody known (no key, a bad key, no such route), counted per client
# address, minute and outcome: a flood adds to a counter instead of a row per request.
audit_anonymous = sa.Table(
    "audit_anonymous",
    metadata,
    sa.Column("address", sa.String(64), primary_key=True),
    # the minute, as epoch seconds divisible by 60
    sa.Column("minute", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_path", sa.String(512)),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # vault-encrypted unless the setting is public by nature
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("encrypted", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

used_tokens = sa.Table(
    "used_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# The partner-webhook outbox: written in the same transaction as the status change that
# causes the event, delivered at least once by the one sender of the fleet.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # the Standard Webhooks `webhook-id`: the same on every attempt, so receivers deduplicate
    sa.Column("event_id", sa.String(40), nullable=False, unique=True),
    sa.Column("partner_id", sa.Integer, sa.ForeignKey("partners.id"), nullable=False, index=True),
    sa.Column("envelope_id", sa.String(64), nullable=False, index=True),
    sa.Column("type", sa.String(40), nullable=False),
    # the exact JSON body sent on every attempt
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # pending -> delivered | failed (retries exhausted or 410) | held (no webhook_url now)
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_attempt_at", sa.Float),
    # "HTTP 500", "timeout", "refused: private address", ...: never a secret
    sa.Column("last_result", sa.String(128)),
    sa.Column("delivered_at", sa.Float),
)

admins = sa.Table(
    "admins",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# The console's open sessions: the cookie carries a random id, this table its SHA-256, so a
# sign-out, a password change or a deleted account ends a session at once (a new table:
# `create_all` adds it to an existing database, no version bump).
admin_sessions = sa.Table(
    "admin_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
)
