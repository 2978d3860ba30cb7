"""Secrets at rest: the master key and Fernet encryption of everything sensitive in the store.

The master key is one or more Fernet keys (newest first, so `MultiFernet` can decrypt
what older keys wrote while re-encrypting with the newest). It comes from
`GATEWAY_MASTER_KEY` or from a 0600 file in the instance folder that `gateway init`
writes. It never lives in the database it protects.
"""

from __future__ import annotations

import os
import stat

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from flask import Flask
from flask import current_app

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
        """Re-encrypt `token` under the newest master key."""
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


def get_vault() -> Vault:
    """The app's vault, loading the key file lazily (it may be created by `gateway init`)."""
    vault = current_app.extensions.get("vault")
    if vault is None:
        vault = Vault(load_keys(current_app) or [])
        current_app.extensions["vault"] = vault
    return vault


def init_app(app: Flask) -> None:
    """Fail fast on an unusable master key; a missing one only fails when a secret is needed."""
    keys = load_keys(app)
    if keys:
        app.extensions["vault"] = Vault(keys)
