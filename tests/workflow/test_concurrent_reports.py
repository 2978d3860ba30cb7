"""Two reports of one decline racing: the relay's confirming read and Connect's recipient event.

Found by the demo's decline flow: the read (envelope `declined`) read the row, Connect's
`recipient-declined` (envelope still `sent`, signer `declined`) committed, and the read's
conditional UPDATE then matched nothing. The read had already advanced what DocuSign
last said (`envelope_upstream`), so the later `envelope-declined` event was stale, and
the envelope stayed `sent` for good, with no `envelope.declined` webhook.
"""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa

from gateway import store
from gateway.services.envelopes import Reported
from gateway.services.envelopes import record_upstream
from tests.conftest import add_partner
from tests.webhooks.conftest import new_envelope
from tests.webhooks.conftest import write_policy


def _statuses(app: t.Any, envelope_id: str) -> tuple[str, str | None]:
    with app.app_context(), store.transaction() as conn:
        row = conn.execute(sa.select(store.envelopes.c.status, store.envelopes.c.signer_status)
                           .where(store.envelopes.c.envelope_id == envelope_id)).one()
    return row.status, row.signer_status


def _event_types(app: t.Any) -> list[str]:
    with app.app_context(), store.transaction() as conn:
        return list(conn.execute(sa.select(store.webhook_events.c.type)
                                 .order_by(store.webhook_events.c.id)).scalars())


def test_read_and_recipient_event_racing_both_apply(app: t.Any) -> None:
    add_partner(app, "example")
    write_policy(app, "http://127.0.0.1:9/hooks")
    envelope_id = new_envelope(app)
    declined_at = time.time()
    engine = None
    raced = []

    def connect_commits_first(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        # just before the read's first write: Connect's recipient event commits
        if not raced and statement.lstrip().upper().startswith("INSERT") \
                and "envelope_upstream" in statement:
            raced.append(True)
            with store.transaction() as other:
                record_upstream(other, envelope_id, Reported("sent", "declined", declined_at - 1),
                                source="connect", last_event="recipient-declined", now=time.time())

    with app.app_context():
        engine = store.get_engine()
        sa.event.listen(engine, "before_cursor_execute", connect_commits_first)
        try:
            with store.transaction() as conn:
                record_upstream(conn, envelope_id, Reported("declined", "declined", declined_at),
                                source="read", last_event=None, now=time.time())
        finally:
            sa.event.remove(engine, "before_cursor_execute", connect_commits_first)
        assert raced
        # DocuSign's envelope-declined, delivered afterwards, is the same news: stale
        with store.transaction() as conn:
            record_upstream(conn, envelope_id, Reported("declined", None, declined_at),
                            source="connect", last_event="envelope-declined", now=time.time())

    assert _statuses(app, envelope_id) == ("declined", "declined")
    assert _event_types(app) == ["envelope.signer_declined", "envelope.declined"]
