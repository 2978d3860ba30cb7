"""`gateway signing-keys`: the keys that sign gateway_token (code in gateway/web/relay.py).

Not the partners' API keys (`gateway partners`). `gateway keys rotate-signing|list-signing`
is the old name, kept as a hidden alias so existing scripts keep working.
"""

from __future__ import annotations

import click

from gateway.cli import common


@click.group("signing-keys")
def signing_keys_group() -> None:
    """Rotate and list the gateway_token signing keys.

    Their public halves are published at /.well-known/jwks.json.
    """


@signing_keys_group.command("rotate")
@click.option("--activate-in", default="0s", show_default=True, metavar="DURATION",
              help="Publish the new key now, sign with it after this (e.g. 10m: longer than "
                   "partners cache the JWKS).")
@click.option("--drop-old", is_flag=True,
              help="Unpublish the old keys at once (a leaked key): tokens they signed stop verifying.")
def rotate(activate_in: str, drop_old: bool) -> None:
    """Make a new gateway_token signing key.

    Old public keys stay in the JWKS until the tokens they signed expire.
    """
    from gateway.services import signing_keys

    seconds = common.parse_duration(activate_in)
    with common.transaction() as conn:
        kid = signing_keys.rotate_signing_key(conn, activate_in=seconds, drop_old=drop_old)
    click.echo(f"new signing key {kid}" + (f", signing from {activate_in} on" if seconds else ""))


@signing_keys_group.command("list")
def list_keys() -> None:
    """List the signing keys and their states.

    States: pending, active, retired, expired.
    """
    from gateway.services import signing_keys

    with common.transaction() as conn:
        rows = signing_keys.signing_key_summary(conn)
    for row in rows:
        click.echo(f"{row['kid']}  {row['state']:<8} from {common.when(row['activates_at'])}"
                   + (f" until {common.when(row['retired_at'])}" if row["retired_at"] else ""))


@click.group("keys", hidden=True)
def deprecated_keys_group() -> None:
    """Deprecated name of `gateway signing-keys`."""


deprecated_keys_group.add_command(rotate, "rotate-signing")
deprecated_keys_group.add_command(list_keys, "list-signing")
