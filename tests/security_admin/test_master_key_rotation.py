"""Issue 16 #11: `gateway secrets rotate-master-key` re-encrypts every secret and survives a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet

from gateway import cli
from gateway import create_app
from gateway import store
from gateway.services import partner_keys
from gateway.store import vault

ROOT = Path(__file__).resolve().parents[2]
ENVELOPES = 12
#: runs the command with `Vault.rotate` wrapped to SIGKILL the process after KILL_AFTER rows
KILLED_RUN = """
import os, signal, sys
from gateway.store import vault
real, seen = vault.Vault.rotate, [0]
def rotate(self, token):
    seen[0] += 1
    if seen[0] > int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, token)
vault.Vault.rotate = rotate
sys.argv = ["gateway", "secrets", "rotate-master-key"]
from gateway.cli import main
main()
"""


def _ciphertexts(app: t.Any) -> list[str]:
    """Every Fernet token stored anywhere in the database, whatever the table or column."""
    found = []
    with app.app_context(), store.transaction() as conn:
        for table in store.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, sa.String):
                    found += [v for (v,) in conn.execute(sa.select(column))
                              if isinstance(v, str) and v.startswith("gAAAAA")]
    return found


def _readable(tokens: list[str], keys: list[bytes]) -> int:
    fernet = MultiFernet([Fernet(k) for k in keys])
    count = 0
    for token in tokens:
        try:
            fernet.decrypt(token.encode("ascii"))
            count += 1
        except InvalidToken:
            pass
    return count


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Any:
    """`gateway init` with a key file, a partner and envelopes with sealed signers."""
    monkeypatch.setenv("GATEWAY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("GATEWAY_POLICY_DIR", str(ROOT / "policies"))
    result = CliRunner().invoke(cli.cli, ["init"])
    assert result.exit_code == 0, result.output
    app = create_app()
    with app.app_context(), store.transaction() as conn:
        partner_keys.add_partner(conn, "example")
        partner_id = conn.execute(sa.select(store.partners.c.id)).scalar()
        for i in range(ENVELOPES):
            conn.execute(store.envelopes.insert().values(
                envelope_id=f"env-{i}", partner_id=partner_id, template_alias="membership",
                client_user_id=f"c{i}", status="created", created_at=0.0, updated_at=0.0,
                signer_enc=vault.get_vault().encrypt(b'{"name": "Ada", "email": "ada@example.com"}')))
    return app


def _key_file(app: t.Any) -> list[bytes]:
    keys = vault.read_key_file(vault.master_key_path(app.instance_path))
    assert keys
    return keys


def _run(*, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if kill_after is None:
        code = "from gateway.cli import main; main()"
        args = ["secrets", "rotate-master-key"]
    else:
        code, args = KILLED_RUN, []
        env["KILL_AFTER"] = str(kill_after)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_rotation_killed_halfway_finishes_on_rerun(instance):
    (old,) = _key_file(instance)
    secrets = _ciphertexts(instance)
    assert len(secrets) > ENVELOPES  # the envelopes and the encrypted settings

    killed = _run(kill_after=ENVELOPES // 2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    new, kept = _key_file(instance)
    assert kept == old
    halfway = _ciphertexts(instance)
    # everything still readable with the two keys; only part of it under the new one yet
    assert _readable(halfway, [new, old]) == len(secrets)
    assert 0 < _readable(halfway, [new]) < len(secrets)

    rerun = _run()
    assert rerun.returncode == 0, rerun.stderr
    assert "master key rotated" in rerun.stdout
    assert _key_file(instance) == [new]
    done = _ciphertexts(instance)
    assert len(done) == len(secrets)
    assert _readable(done, [new]) == len(secrets)
    assert _readable(done, [old]) == 0


def test_the_gateway_reads_its_secrets_after_a_rotation(instance):
    with instance.app_context(), store.transaction() as conn:
        before = store.get_setting(conn, partner_keys.PEPPER_SETTING)
    assert _run().returncode == 0
    # the running app rereads the replaced key file: no restart needed
    with instance.app_context(), store.transaction() as conn:
        assert store.get_setting(conn, partner_keys.PEPPER_SETTING) == before


def test_with_the_key_in_the_environment_it_takes_two_runs(instance, monkeypatch):
    (old,) = _key_file(instance)
    os.remove(vault.master_key_path(instance.instance_path))
    monkeypatch.setenv("GATEWAY_MASTER_KEY", old.decode())
    secrets = _ciphertexts(instance)

    first = CliRunner().invoke(cli.cli, ["secrets", "rotate-master-key"])
    assert first.exit_code == 0, first.output
    new = first.stdout.strip().encode()
    Fernet(new)
    assert "step 1 of 2" in first.stderr
    assert _ciphertexts(instance) == secrets  # nothing re-encrypted under a key not yet set

    monkeypatch.setenv("GATEWAY_MASTER_KEY", f"{new.decode()},{old.decode()}")
    second = CliRunner().invoke(cli.cli, ["secrets", "rotate-master-key"])
    assert second.exit_code == 0, second.output
    assert "step 2 of 2" in second.stdout
    assert _readable(_ciphertexts(instance), [new]) == len(secrets)
