"""Units: the partner key format, its keyed hash, and the master-key vault."""

from __future__ import annotations

import os
import re

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from gateway import store
from gateway.services import partner_keys as keys
from gateway.store import vault

HOOK_PATTERN = re.compile(r"pgw_[A-Za-z0-9]{6,}_[A-Za-z0-9]{20,}")


def test_generated_keys_have_the_documented_shape() -> None:
    seen = set()
    for _ in range(200):
        key_id, key = keys.generate()
        assert key.startswith("pgw_") and HOOK_PATTERN.match(key)
        assert keys.parse(key) == key_id
        secret = key.split("_")[2]
        assert len(secret) == 32  # 32 base62 chars: ~190 bits > 128
        seen.add(key_id)
    assert len(seen) == 200


@settings(max_examples=300)
@given(position=st.integers(min_value=4, max_value=55), char=st.sampled_from("aZ09xQ"))
def test_any_single_change_breaks_the_checksum_or_format(position: int, char: str) -> None:
    _, key = keys.generate()
    if key[position] == char or key[position] == "_":
        return
    altered = key[:position] + char + key[position + 1:]
    assert keys.parse(altered) is None


@pytest.mark.parametrize("text", ["", "pgw_", "pgw_x_y_z", "Bearer pgw_", "sk_live_abc", "pgw_" + "a" * 60])
def test_parse_rejects_junk(text: str) -> None:
    assert keys.parse(text) is None


def test_only_a_keyed_hash_is_stored(app) -> None:
    with app.app_context(), store.transaction() as conn:
        key = keys.add_partner(conn, "example")
        rows = conn.execute(sa.select(store.api_keys)).all()
        dump = repr([tuple(r) for r in rows])
        assert key not in dump and key.split("_")[2] not in dump
        assert rows[0].secret_hash == keys.hash_key(conn, key)


def test_expired_key_refused(app) -> None:
    from gateway import errors

    with app.app_context(), store.transaction() as conn:
        key = keys.add_partner(conn, "example", expires_at=1.0)
        with pytest.raises(errors.KeyExpired):
            keys.authenticate(conn, key)


def test_rotation_grace_never_extends_an_earlier_expiry(app) -> None:
    with app.app_context(), store.transaction() as conn:
        keys.add_partner(conn, "example", expires_at=2_000_000_000.0)
        keys.rotate_key(conn, "example", grace=10 * 365 * 86400)
        expiries = [r.expires_at for r in conn.execute(sa.select(store.api_keys))]
    assert expiries[0] == 2_000_000_000.0


def test_vault_round_trip_and_rotation() -> None:
    old = Fernet.generate_key()
    token = vault.Vault([old]).encrypt(b"private key")
    rotated = vault.Vault([Fernet.generate_key(), old])
    assert rotated.decrypt(token) == b"private key"
    new_token = rotated.rotate(token)
    with pytest.raises(vault.VaultError):
        vault.Vault([old]).decrypt(new_token)


@pytest.mark.parametrize("value", ["changeme", "dev", "", "not-a-fernet-key", "a,b"])
def test_vault_refuses_placeholders_and_junk(value: str) -> None:
    with pytest.raises(vault.VaultError):
        vault.parse_master_keys(value, source="GATEWAY_MASTER_KEY")


def test_key_file_created_0600_and_others_refused(tmp_path) -> None:
    path = str(tmp_path / "master.key")
    assert vault.create_key_file(path) is True
    assert vault.create_key_file(path) is False
    assert vault.read_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(vault.VaultError, match="chmod 600"):
        vault.read_key_file(path)
