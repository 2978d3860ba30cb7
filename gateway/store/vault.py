"""Secrets at rest: the master key and Fernet encryption of everything sensitive in the store.

The master key is one or more Fernet keys (newest first, so `MultiFernet` can decrypt
what older keys wrote while re-encrypting with the newest). It comes from
`GATEWAY_MASTER_KEY` or from a 0600 file in the instance folder that `gateway init`
writes. It never lives in the database it protects. `gateway secrets rotate-master-key`
replaces it: every vault-encrypted column is listed here (`ENCRYPTED_COLUMNS`), and a
running gateway rereads the key file when it changes.
"""

from __future__ import annotations

import os
import stat
import typing as t

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from flask import Flask
from flask import current_app

if t.TYPE_CHECKING:
    import sqlalchemy as sa

MASTER_KEY_FILE = "master.key"
PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "dev", "placeholder", "xxx"})


class VaultError(Exception):
    """The master key is missing, unsafe or cannot decrypt what is stored."""


class Vault:
    """Encrypts and decrypts small secrets with the master key(s)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise VaultError("no master key: run `gateway init` or set GATEWAY_MASTER_KEY")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise VaultError("a stored secret cannot be decrypted with the master key") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt `token` under the newest master key (harmless on one it already wrote)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise VaultError("a stored secret cannot be decrypted with the master key") from exc


def parse_master_keys(value: str, *, source: str) -> list[bytes]:
    """Comma-separated Fernet keys; refuses placeholders and anything Fernet would not take."""
    parts = [p.strip() for p in value.split(",")]
    if any(p.lower() in PLACEHOLDERS for p in parts):
        raise VaultError(f"{source} holds a placeholder, not a master key; "
                         "generate one with `gateway init` or Fernet.generate_key()")
    keys = []
    for part in parts:
        try:
            Fernet(part.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise VaultError(f"{source} is not a valid Fernet key (32 url-safe base64 bytes)") from None
        keys.append(part.encode("ascii"))
    return keys


def master_key_path(instance_path: str) -> str:
    return os.path.join(instance_path, MASTER_KEY_FILE)


def read_key_file(path: str) -> list[bytes] | None:
    """The keys in the 0600 file, None when it does not exist; refuses a file others can read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultError(f"{path} is readable by others; run `chmod 600 {path}`")
    with open(path, encoding="ascii") as fh:
        return parse_master_keys(fh.read().strip(), source=path)


def write_key_file(path: str, keys: t.Sequence[bytes]) -> None:
    """Replace the key file with `keys` (newest first), atomically and 0600: never half-written."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(",".join(k.decode("ascii") for k in keys) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_key_file(path: str) -> bool:
    """Write a fresh master key with mode 0600; False (and no change) when one exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(Fernet.generate_key().decode("ascii") + "\n")
    return True


def load_keys(app: Flask) -> list[bytes] | None:
    if app.config.get("MASTER_KEY"):
        return parse_master_keys(app.config["MASTER_KEY"], source="GATEWAY_MASTER_KEY")
    return read_key_file(master_key_path(app.instance_path))


def _key_file_stamp(app: Flask) -> tuple[int, int] | None:
    """What identifies the key file's current content (None: the key is in the environment)."""
    if app.config.get("MASTER_KEY"):
        return None
    try:
        st = os.stat(master_key_path(app.instance_path))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def get_vault() -> Vault:
    """The app's vault, loading the key file lazily (it may be created by `gateway init`).

    A key file replaced since (a master-key rotation) is read again, so a running gateway
    follows the rotation without a restart.
    """
    app = current_app
    vault = app.extensions.get("vault")
    stamp = _key_file_stamp(app)
    if vault is None or stamp != app.extensions.get("vault_stamp"):
        vault = Vault(load_keys(app) or [])
        app.extensions["vault"], app.extensions["vault_stamp"] = vault, stamp
    return t.cast(Vault, vault)


def init_app(app: Flask) -> None:
    """Fail fast on an unusable master key; a missing one only fails when a secret is needed."""
    keys = load_keys(app)
    if keys:
        app.extensions["vault"], app.extensions["vault_stamp"] = Vault(keys), _key_file_stamp(app)


# --- master-key rotation ---------------------------------------------------------------


def encrypted_columns() -> list[tuple[sa.Table, sa.Column[t.Any], sa.ColumnElement[bool] | None]]:
    """Every vault-encrypted column: (table, column, which rows; None = all).

    A new `get_vault().encrypt(...)` stored in the database must be listed here, or a
    master-key rotation leaves it behind (tests/security_admin checks the list is complete).
    """
    from gateway import store

    return [
        (store.settings, store.settings.c.value, store.settings.c.encrypted.is_(True)),
        (store.envelopes, store.envelopes.c.signer_enc, None),
    ]


def reencrypt_all(engine: sa.Engine, vault: Vault, *, on_row: t.Callable[[], None] | None = None,
                  ) -> int:
    """Re-encrypt every vault-encrypted value under `vault`'s newest key, one row per transaction.

    Idempotent and resumable: each row is rewritten on its own, only if it still holds
    the ciphertext read (a concurrent writer wins), so a crash leaves rows each under
    the old or the new key, both readable, and a rerun finishes the job.
    """
    import sqlalchemy as sa

    done = 0
    for table, column, where in encrypted_columns():
        (pk,) = table.primary_key.columns
        query = sa.select(pk, column).order_by(pk)
        if where is not None:
            query = query.where(where)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for key, token in rows:
            with engine.begin() as conn:
                conn.execute(table.update().where(pk == key, column == token)
                             .values({column.name: vault.rotate(token)}))
            done += 1
            if on_row is not None:
                on_row()
    return done


def undecryptable(engine: sa.Engine, key: bytes) -> int:
    """How many stored values `key` alone cannot decrypt (0: the older keys can go)."""
    import sqlalchemy as sa

    only = Fernet(key)
    missing = 0
    with engine.connect() as conn:
        for _table, column, where in encrypted_columns():
            query = sa.select(column)
            if where is not None:
                query = query.where(where)
            for (token,) in conn.execute(query):
                try:
                    only.decrypt(token.encode("ascii"))
                except InvalidToken:
                    missing += 1
    return missing
