"""`gateway audit`: read the audit trail, seal it, or verify its hash chain."""

from __future__ import annotations

import json
import time
import typing as t

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.group("audit", invoke_without_command=True)
@click.option("--partner", metavar="NAME")
@click.option("--since", metavar="DURATION", help="Only events newer than this (e.g. 1h).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--anonymous", is_flag=True,
              help="The counts of failed requests of nobody known, per address and minute.")
@click.option("--verify", is_flag=True,
              help="Seal what is waiting, then check the whole hash chain; exit 1 naming the "
                   "first edited or missing record.")
@click.option("--no-seal", is_flag=True, help="With --verify: only check, seal nothing.")
@click.pass_context
def audit_command(ctx: click.Context, partner: str | None, since: str | None, limit: int,
                  as_json: bool, anonymous: bool, verify: bool, no_seal: bool) -> None:
    """Read, seal or verify the audit trail.

    Lists the recorded calls, or (--verify) proves nobody edited or deleted any of them.
    """
    if ctx.invoked_subcommand is not None:
        return
    if verify:
        _verify_audit(seal_first=not no_seal)
        return
    from gateway.services import audit as audit_

    cutoff = time.time() - common.parse_duration(since) if since else None
    with common.transaction() as conn:
        if anonymous:
            for count in audit_.anonymous(conn, since=cutoff):
                click.echo(json.dumps(count) if as_json else _anonymous_line(count))
            return
        rows = audit_.query(conn, partner=partner, since=cutoff, limit=limit)
    for row in rows:
        click.echo(json.dumps(row) if as_json else _line(row))


@audit_command.command("seal")
def seal_command() -> None:
    """Chain every row not yet sealed (as the serving sealer does)."""
    from gateway.services import audit_seal

    with common.gateway_app():
        count = audit_seal.seal_all()
    click.echo(f"ok: {count} record(s) sealed")


def _line(row: dict[str, t.Any]) -> str:
    return (f"{common.when(row['at'])} {row['partner'] or '-':<16} {row['operation']:<16} "
            f"{row['method'] or ''} {row['path'] or ''} -> {row['status']} "
            f"{row['code'] or ''} {row['envelope_id'] or ''} {row['latency_ms']}ms")


def _anonymous_line(row: dict[str, t.Any]) -> str:
    return (f"{common.when(row['minute'])} {row['address']:<16} {row['code']:<20} "
            f"x{row['count']} (last {row['last_path'] or ''})")


def _verify_audit(*, seal_first: bool) -> None:
    """Seal, walk the chain; print the head (keep it elsewhere to catch a rolled-back head)."""
    from gateway.services import audit_seal

    sealed_now = 0
    if seal_first:
        with common.gateway_app():
            sealed_now = audit_seal.seal_all()
    with common.transaction() as conn:
        verdict = audit_seal.verify(conn)
    if verdict.problem is not None:
        raise CLIError(f"audit chain broken: {verdict.problem}")
    waiting = ""
    if verdict.unsealed:
        waiting = f" (oldest {verdict.oldest_unsealed_age or 0:.0f}s)"
    click.echo(f"ok: {verdict.checked} record(s) sealed and chained ({sealed_now} sealed now), "
               f"{verdict.unsealed} not yet sealed{waiting}; head record {verdict.head_seq} "
               f"hash {verdict.head_hash}")
