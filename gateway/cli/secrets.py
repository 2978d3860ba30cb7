"""`gateway secrets`: the master key that encrypts every secret at rest, and its rotation."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet
from flask import Flask

from gateway.cli import common
from gateway.errors import CLIError


@click.group("secrets")
def secrets_group() -> None:
    """The master key that encrypts the secrets in the database."""


@secrets_group.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-encrypt every secret under a new master key.

    With the key file (instance/master.key) it is one step: the new key is written first
    (the old one kept readable), every secret is re-encrypted row by row, and the old key
    is dropped last; after a crash, run it again and it finishes. With GATEWAY_MASTER_KEY
    it takes two runs: the first prints a new key to put in front of the current value,
    the second (with both set) re-encrypts and says when the old key can go.
    """
    with common.gateway_app() as app:
        if app.config.get("MASTER_KEY"):
            _rotate_environment(app)
        else:
            _rotate_file(app)


def _reencrypt(app: Flask, keys: list[bytes]) -> int:
    """Every secret under keys[0]; refuses to call it done while one is still unreadable by it."""
    from gateway import store
    from gateway.store import vault

    engine = store.get_engine()
    count = vault.reencrypt_all(engine, vault.Vault(keys))
    left = vault.undecryptable(engine, keys[0])
    if left:
        raise CLIError(f"{left} secret(s) were written under an old key meanwhile; "
                       "run `gateway secrets rotate-master-key` again")
    return count


def _rotate_file(app: Flask) -> None:
    from gateway.store import vault

    path = vault.master_key_path(app.instance_path)
    keys = vault.read_key_file(path)
    if not keys:
        raise CLIError(f"no master key at {path}: run `gateway init`")
    if len(keys) == 1:
        # new first: it encrypts from now on (running gateways reread the file), old still reads
        keys = [Fernet.generate_key(), *keys]
        vault.write_key_file(path, keys)
    else:
        click.echo(f"resuming: {path} holds {len(keys)} keys; finishing with the first", err=True)
    count = _reencrypt(app, keys)
    vault.write_key_file(path, keys[:1])
    click.echo(f"master key rotated: {count} secret(s) re-encrypted; the old key is gone from {path}")


def _rotate_environment(app: Flask) -> None:
    from gateway.store import vault

    keys = vault.parse_master_keys(app.config["MASTER_KEY"], source="GATEWAY_MASTER_KEY")
    if len(keys) == 1:
        # nothing is re-encrypted under a key that exists only on this terminal: the owner
        # sets it everywhere first, then runs the command again
        click.echo(Fernet.generate_key().decode("ascii"))
        click.echo('step 1 of 2: the new master key is above, shown once. Set '
                   'GATEWAY_MASTER_KEY="<new key>,<current value>" on every instance, restart '
                   "them, then run `gateway secrets rotate-master-key` again. Nothing was "
                   "re-encrypted yet.", err=True)
        return
    count = _reencrypt(app, keys)
    click.echo(f"step 2 of 2: {count} secret(s) re-encrypted under the first key of "
               "GATEWAY_MASTER_KEY. Set it to that first key alone (drop everything from the "
               "first comma) on every instance and restart them.")
