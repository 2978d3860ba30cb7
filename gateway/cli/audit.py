"""`gateway audit`: read the audit trail, or verify its hash chain."""

from __future__ import annotations

import json
import time
import typing as t

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.command("audit")
@click.option("--partner", metavar="NAME")
@click.option("--since", metavar="DURATION", help="Only events newer than this (e.g. 1h).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--verify", is_flag=True,
              help="Check the whole hash chain instead; exit 1 naming the first edited or missing record.")
def audit_command(partner: str | None, since: str | None, limit: int, as_json: bool,
                  verify: bool) -> None:
    """Read or verify the audit trail.

    Lists the recorded calls, or (--verify) proves nobody edited or deleted any of them.
    """
    from gateway.services import audit as audit_

    if verify:
        _verify_audit()
        return
    cutoff = time.time() - common.parse_duration(since) if since else None
    with common.transaction() as conn:
        rows = audit_.query(conn, partner=partner, since=cutoff, limit=limit)
    for row in rows:
        click.echo(json.dumps(row) if as_json else _line(row))


def _line(row: dict[str, t.Any]) -> str:
    return (f"{common.when(row['at'])} {row['partner'] or '-':<16} {row['operation']:<16} "
            f"{row['method'] or ''} {row['path'] or ''} -> {row['status']} "
            f"{row['code'] or ''} {row['envelope_id'] or ''} {row['latency_ms']}ms")


def _verify_audit() -> None:
    """Walk the chain; print the head (keep it elsewhere to catch a rolled-back head later)."""
    from gateway.services import audit as audit_

    with common.transaction() as conn:
        verdict = audit_.verify(conn)
    if verdict.problem is not None:
        raise CLIError(f"audit chain broken: {verdict.problem}")
    click.echo(f"ok: {verdict.checked} record(s) chained; head record {verdict.head_id} "
               f"hash {verdict.head_hash}")
