"""The owner's commands, through click's runner and through the installed console script."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.services.partner_keys import parse


def run(runner: CliRunner, *args: str, ok: bool = True):
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_error_line(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_init_is_idempotent_and_key_file_private(owner: CliRunner, tmp_path: Path) -> None:
    first = run(owner, "init")
    assert "master key: created" in first.output and "database: created" in first.output
    key_file = tmp_path / "instance" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = key_file.read_bytes()
    second = run(owner, "init")
    assert "master key: kept" in second.output and "database: up to date" in second.output
    assert key_file.read_bytes() == before


def test_partner_lifecycle(owner: CliRunner) -> None:
    run(owner, "init")
    added = run(owner, "partners", "add", "example")
    key = added.stdout.strip()
    assert key.startswith("pgw_") and parse(key) is not None
    assert key not in added.stderr
    listed = run(owner, "partners", "list")
    assert "example" in listed.output and "active" in listed.output and key not in listed.output
    rotated = run(owner, "partners", "rotate-key", "example", "--grace", "1h").stdout.strip()
    assert rotated != key and parse(rotated) is not None
    run(owner, "partners", "revoke", "example")
    assert "revoked" in run(owner, "partners", "list").output
    line = one_error_line(run(owner, "partners", "revoke", "example", ok=False))
    assert "already revoked" in line


def test_cli_revoke_bites_in_running_app(owner: CliRunner, tmp_path: Path) -> None:
    from gateway import create_app

    run(owner, "init")
    key = run(owner, "partners", "add", "example").stdout.strip()
    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/templates", headers=headers).status_code == 200
    run(owner, "partners", "revoke", "example")
    assert client.get("/v1/templates", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("partners", "add", "nobody"), "no policy file for 'nobody'"),
        (("partners", "revoke", "nobody"), "no partner named 'nobody'"),
        (("partners", "rotate-key", "example", "--grace", "soon"), "bad duration"),
        (("docusign", "configure", "--private-key", "/nonexistent.pem"), "missing --integration-key"),
        (("docusign", "configure", "--sandbox", "http://127.0.0.1:9"), "127.0.0.1:9"),
    ],
)
def test_bad_input_one_clear_line(owner: CliRunner, args, needle) -> None:
    run(owner, "init")
    if args[:2] == ("partners", "rotate-key"):
        run(owner, "partners", "add", "example")
    line = one_error_line(run(owner, *args, ok=False))
    assert needle in line


def test_unreadable_private_key_is_one_line(owner: CliRunner, tmp_path: Path) -> None:
    run(owner, "init")
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    guid = "11111111-2222-3333-4444-555555555555"
    result = run(owner, "docusign", "configure", "--integration-key", guid, "--user-id", guid,
                 "--account-id", guid, "--private-key", str(bad), ok=False)
    assert "key.pem" in one_error_line(result)


def test_commands_before_init_say_so(owner: CliRunner) -> None:
    line = one_error_line(run(owner, "partners", "list", ok=False))
    assert "gateway init" in line


def test_invalid_policy_blocks_partner_add(owner: CliRunner, tmp_path: Path) -> None:
    run(owner, "init")
    (tmp_path / "policies" / "broken.toml").write_text('partner = "broken"\nsurprise = 1\n')
    result = run(owner, "partners", "add", "broken", ok=False)
    assert result.exit_code == 1 and "surprise" in result.output and "Traceback" not in result.output


def test_policies_check(owner: CliRunner, tmp_path: Path) -> None:
    assert "ok      example" in run(owner, "policies", "check").output
    (tmp_path / "policies" / "broken.toml").write_text('partner = "broken"\n')
    result = run(owner, "policies", "check", ok=False)
    assert result.exit_code == 1 and "broken.toml" in result.output


def test_docusign_configure_and_check_against_emulator(owner: CliRunner, sandbox) -> None:
    run(owner, "init")
    assert "configured" in run(owner, "docusign", "configure", "--sandbox", sandbox.url).output
    out = run(owner, "docusign", "check").output
    assert out.startswith("ok: token obtained")


def test_docusign_check_prints_consent_url(owner: CliRunner, sandbox) -> None:
    import requests

    run(owner, "init")
    run(owner, "docusign", "configure", "--sandbox", sandbox.url)
    info = requests.get(sandbox.url + "/_sandbox/info", timeout=5).json()
    sandbox.post("/_sandbox/consent", {"integration_key": info["integration_key"],
                                       "user_id": info["user_id"], "granted": False})
    line = one_error_line(run(owner, "docusign", "check", ok=False))
    assert "consent required" in line and "/oauth/auth?" in line and "response_type=code" in line


def test_audit_lists_partner_calls(owner: CliRunner) -> None:
    from gateway import create_app

    run(owner, "init")
    key = run(owner, "partners", "add", "example").stdout.strip()
    client = create_app().test_client()
    client.get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    client.get("/v1/nope", headers={"Authorization": f"Bearer {key}"})
    out = run(owner, "audit", "--since", "1h").output
    assert "list_templates" in out and key not in out
    # no route matched: counted per address and minute, not a row each
    anonymous = run(owner, "audit", "--anonymous").output
    assert "not_found" in anonymous and "x1" in anonymous and "/v1/nope" in anonymous
    assert run(owner, "audit", "--partner", "nobody").output == ""


def test_placeholder_master_key_refused(owner: CliRunner, monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "changeme")
    assert "placeholder" in one_error_line(run(owner, "init", ok=False))


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    """The installed entry point, as an owner runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_INSTANCE_PATH": str(tmp_path / "i"), "GATEWAY_POLICY_DIR": str(tmp_path)}
    gateway = Path(sys.executable).parent / "gateway"
    for args in (["partners", "list"], ["partners", "add", "ghost"], ["serve", "--port", "0"],
                 ["docusign", "check"]):
        proc = subprocess.run([str(gateway), *args], capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.strip().startswith("error: ") or "Error:" in proc.stderr


def test_signing_keys_group_and_its_hidden_old_name(owner: CliRunner) -> None:
    run(owner, "init")
    assert run(owner, "signing-keys", "rotate").output.startswith("new signing key ")
    states = [line.split()[1] for line in run(owner, "signing-keys", "list").output.splitlines()]
    assert states == ["active", "retired"]
    assert run(owner, "keys", "list-signing").output.splitlines()[0].split()[1] == "active"
    listing = run(owner, "--help").output
    assert "signing-keys" in listing and "  keys " not in listing
