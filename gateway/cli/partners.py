"""`gateway partners`: issue, list, revoke and rotate partner keys."""

from __future__ import annotations

import json
import os
import time

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.group("partners")
def partners_group() -> None:
    """Issue, list, revoke and rotate partner keys."""


def _valid_policy(name: str) -> None:
    """A partner is only added when its policy file exists and is valid."""
    from gateway.policy import get_policies
    from gateway.policy import load_policy

    path = get_policies().path_for(name)
    if not os.path.exists(path):
        raise CLIError(f"no policy file for {name!r}: write {os.path.relpath(path)} first")
    load_policy(path)


@partners_group.command("add")
@click.argument("name")
@click.option("--expires", metavar="DURATION", help="The key stops working after this (e.g. 90d).")
def partners_add(name: str, expires: str | None) -> None:
    """Create a partner and print its key once.

    Needs a valid policies/NAME.toml.
    """
    from gateway import store
    from gateway.services import partner_keys as keys

    expires_at = time.time() + common.parse_duration(expires) if expires else None
    with common.gateway_app():
        _valid_policy(name)
        with store.transaction() as conn:
            key = keys.add_partner(conn, name, expires_at=expires_at)
    click.echo(f"partner {name!r} added; its key is shown once, store it now:", err=True)
    click.echo(key)


@partners_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def partners_list(as_json: bool) -> None:
    """List every partner, its state and live key count."""
    from gateway.policy import get_policies
    from gateway.services import partner_keys as keys

    with common.transaction() as conn:
        rows = keys.list_partners(conn)
        policies = get_policies()
        for row in rows:
            row["policy"] = "ok" if policies.get(row["name"]) is not None else "missing/invalid"
            row["state"] = "revoked" if row["revoked_at"] else "active"
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no partners yet: `gateway partners add NAME`")
    for row in rows:
        click.echo(f"{row['name']:<24} {row['state']:<8} keys={row['live_keys']} "
                   f"policy={row['policy']} since={common.when(row['created_at'])}")


@partners_group.command("revoke")
@click.argument("name")
def partners_revoke(name: str) -> None:
    """Revoke a partner and all its keys.

    It bites on the very next request.
    """
    from gateway.services import partner_keys as keys

    with common.transaction() as conn:
        count = keys.revoke_partner(conn, name)
    click.echo(f"partner {name!r} revoked ({count} key(s))")


@partners_group.command("rotate-key")
@click.argument("name")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="How long the old key keeps working.")
def partners_rotate(name: str, grace: str) -> None:
    """Issue a new key and print it once.

    The old key keeps working for the grace period.
    """
    from gateway.services import partner_keys as keys

    seconds = common.parse_duration(grace)
    with common.transaction() as conn:
        key = keys.rotate_key(conn, name, grace=seconds)
    click.echo(f"new key for {name!r}; old key(s) stop within {grace}:", err=True)
    click.echo(key)


@partners_group.command("webhook-secret")
@click.argument("name")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="How long the previous secret keeps signing too.")
def partners_webhook_secret(name: str, grace: str) -> None:
    """Issue a new webhook signing secret and print it once.

    Until the grace period ends both the old and the new secret sign each webhook.
    """
    import sqlalchemy as sa

    from gateway import store
    from gateway.services import webhook_secrets

    seconds = common.parse_duration(grace)
    with common.transaction() as conn:
        partner_id = conn.execute(sa.select(store.partners.c.id)
                                  .where(store.partners.c.name == name)).scalar()
        if partner_id is None:
            raise CLIError(f"no partner named {name!r}: see `gateway partners list`")
        secret = webhook_secrets.rotate(conn, partner_id, seconds, time.time())
    click.echo(f"new webhook secret for {name!r}; shown once, store it now "
               f"(the previous one still signs for {grace}):", err=True)
    click.echo(secret)
