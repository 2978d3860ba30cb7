"""`gateway webhooks`: run the partner-webhook sender, list deliveries, replay one."""

from __future__ import annotations

import json
import signal
import threading
import time

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.group("webhooks")
def webhooks_group() -> None:
    """Deliver, list and replay partner webhooks."""


@webhooks_group.command("run")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between batches.")
def webhooks_run(interval: float) -> None:
    """Deliver partner webhooks in the foreground until interrupted.

    Safe to run next to `gateway serve`: a lease keeps one active sender per fleet.
    """
    from gateway.services import background
    from gateway.services import webhook_sender

    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    with common.gateway_app() as app:
        signal.signal(signal.SIGTERM, _stop)
        click.echo("delivering partner webhooks; Ctrl-C to stop", err=True)
        try:
            background.run_forever(app, webhook_sender.JOB, stop, interval)
        except KeyboardInterrupt:
            stop.set()


@webhooks_group.command("list")
@click.option("--partner", metavar="NAME", help="Only this partner's events.")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(partner: str | None, limit: int, as_json: bool) -> None:
    """List webhook events, newest first, with their delivery state."""
    from gateway.services import webhook_outbox

    with common.transaction() as conn:
        rows = webhook_outbox.list_events(conn, partner=partner, limit=limit)
    keys = ("event_id", "partner", "envelope_id", "type", "state", "attempts", "next_attempt_at",
            "last_attempt_at", "last_result", "created_at", "delivered_at")
    out = [{k: row[k] for k in keys} for row in rows]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("no webhook events")
    for row in out:
        nxt = common.when(row["next_attempt_at"]) if row["state"] == "pending" else "-"
        click.echo(f"{row['event_id']}  {row['partner']:<16} {row['type']:<26} {row['state']:<9} "
                   f"attempts={row['attempts']} next={nxt} last={row['last_result'] or '-'}")


@webhooks_group.command("replay")
@click.argument("event_id")
def webhooks_replay(event_id: str) -> None:
    """Queue one event again, to be sent at once (same webhook-id)."""
    from gateway.services import webhook_outbox

    with common.transaction() as conn:
        found = webhook_outbox.replay(conn, event_id, now=time.time())
    if not found:
        raise CLIError(f"no webhook event {event_id!r}: see `gateway webhooks list`")
    click.echo(f"event {event_id} queued again")
