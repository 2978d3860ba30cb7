"""The account owner's commands: `gateway init | docusign | partners | policies | audit | serve`.

Every command fails with one line on stderr (`error: ...`) and a non-zero exit, never
a traceback. Keys are printed once, alone on stdout, so they can be piped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sys
import time
import typing as t

import click
import sqlalchemy as sa
from flask import Flask

from gateway import create_app
from gateway.errors import CLIError

_DURATION_RE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> int:
    """`90s`, `15m`, `24h`, `7d`, `2w` in seconds."""
    m = _DURATION_RE.match(value.strip())
    if m is None:
        raise CLIError(f"bad duration {value!r}: use a number and one of s, m, h, d, w (e.g. 24h)")
    return int(m.group(1)) * _UNITS[m.group(2)]


@contextlib.contextmanager
def app_context() -> t.Iterator[Flask]:
    """The gateway app, with every known failure turned into one clear line."""
    from gateway.policy import PolicyFileInvalid
    from gateway.services.partner_keys import KeyProblem
    from gateway.store import SchemaMismatch
    from gateway.store.vault import VaultError
    from gateway.upstream import UpstreamSetupError
    from gateway.web.admin import AdminProblem
    from gateway.web.operator import configure_logging

    try:
        app = create_app()
        # a command's output is for a person: warnings only, as plain (still redacted) text
        configure_logging(app, level=app.config.get("CLI_LOG_LEVEL", "WARNING"), fmt="text")
        with app.app_context():
            yield app
    except (VaultError, SchemaMismatch, KeyProblem, UpstreamSetupError, AdminProblem) as exc:
        raise CLIError(str(exc)) from None
    except PolicyFileInvalid as exc:
        raise CLIError(str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise CLIError(f"the database cannot be used: {exc.orig}") from None


def _require_ready() -> None:
    """Refuse to run against a database `gateway init` has not prepared."""
    from gateway import store

    with store.transaction() as conn:
        store.check_schema(conn)


@click.group()
@click.version_option(package_name="docusign-partner-gateway", prog_name="gateway")
def cli() -> None:
    """Restricted-scope partner gateway for DocuSign eSignature."""


@cli.command()
def init() -> None:
    """Create the instance folder, master key, database and signing keys (idempotent)."""
    import os

    from gateway import store
    from gateway.services import partner_keys as keys
    from gateway.services import signing_keys
    from gateway.store import vault
    from gateway.web import admin

    with app_context() as app:
        made_key = False
        if not app.config.get("MASTER_KEY"):
            made_key = vault.create_key_file(vault.master_key_path(app.instance_path))
        app.extensions.pop("vault", None)
        made_db = store.init_db(store.get_engine())
        with store.transaction() as conn:
            keys.ensure_pepper(conn)
            signing_keys.ensure_keys(conn)
            admin.load_or_create_secret_key(conn)
        click.echo(f"instance folder: {os.path.relpath(app.instance_path)}")
        click.echo("master key: " + ("created (0600)" if made_key else "kept"))
        click.echo("database: " + ("created" if made_db else "up to date"))
        _offer_admin()


def _interactive() -> bool:
    return sys.stdin.isatty()


def _offer_admin() -> None:
    """`gateway init` on a terminal asks for the first console account; scripts get a hint."""
    from gateway import store
    from gateway.web import admin

    with store.transaction() as conn:
        if admin.list_admins(conn):
            return
    if not _interactive():
        click.echo("admin console: no account yet; run `gateway admin create NAME`")
        return
    username = click.prompt("admin console username (empty to skip)", default="",
                            show_default=False).strip()
    if not username:
        click.echo("admin console: skipped; run `gateway admin create NAME` later")
        return
    _create_admin(username, from_stdin=False)


@cli.group("admin")
def admin_group() -> None:
    """Accounts for the /admin console (never partner keys)."""


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        # one line, for scripts: `printf '%s\n' "$PW" | gateway admin create NAME --password-stdin`
        return sys.stdin.readline().rstrip("\r\n")
    return t.cast(str, click.prompt("password", hide_input=True, confirmation_prompt=True))


def _create_admin(username: str, *, from_stdin: bool) -> None:
    from gateway import store
    from gateway.web import admin

    admin.check_username(username)
    with store.transaction() as conn:
        if any(row["username"] == username for row in admin.list_admins(conn)):
            raise admin.AdminProblem(f"admin {username!r} already exists; "
                                     "use `gateway admin set-password`")
    password = admin.check_password(_read_password(from_stdin=from_stdin))
    with store.transaction() as conn:
        admin.create_admin(conn, username, password)
    click.echo(f"admin {username!r} created; sign in at /admin")


_PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                               help="Read the password from one line of stdin instead of a prompt.")


@admin_group.command("create")
@click.argument("username")
@_PASSWORD_STDIN
def admin_create(username: str, password_stdin: bool) -> None:
    """Create a console account; the password is prompted for (or read from stdin) and hashed."""
    with app_context():
        _require_ready()
        _create_admin(username, from_stdin=password_stdin)


@admin_group.command("set-password")
@click.argument("username")
@_PASSWORD_STDIN
def admin_set_password(username: str, password_stdin: bool) -> None:
    """Replace an account's password; its open sessions end."""
    from gateway import store
    from gateway.web import admin

    with app_context():
        _require_ready()
        password = admin.check_password(_read_password(from_stdin=password_stdin))
        with store.transaction() as conn:
            admin.set_password(conn, username, password)
    click.echo(f"password of admin {username!r} replaced")


@admin_group.command("list")
def admin_list() -> None:
    """Console accounts."""
    from gateway import store
    from gateway.web import admin

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            rows = admin.list_admins(conn)
    if not rows:
        click.echo("no admin accounts: `gateway admin create NAME`")
    for row in rows:
        click.echo(f"{row['username']:<32} since={_when(row['created_at'])}")


@admin_group.command("delete")
@click.argument("username")
def admin_delete(username: str) -> None:
    """Remove a console account; its open sessions end."""
    from gateway import store
    from gateway.web import admin

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            admin.delete_admin(conn, username)
    click.echo(f"admin {username!r} deleted")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
def sandbox(host: str, port: int) -> None:
    """Run the DocuSign emulator in the foreground (Ctrl-C stops it)."""
    from sandbox import server

    click.echo(f"DocuSign emulator on http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        server.serve(host, port)
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@cli.group()
def docusign() -> None:
    """Connect the gateway to DocuSign (or to the emulator)."""


@docusign.command("configure")
@click.option("--sandbox", "sandbox_url", metavar="URL", help="Wire to a running emulator.")
@click.option("--integration-key", metavar="GUID")
@click.option("--user-id", metavar="GUID", help="The system sender user's id (impersonated).")
@click.option("--account-id", metavar="GUID")
@click.option("--private-key", metavar="PEM_FILE", help="The integration key's RSA private key.")
@click.option("--production", is_flag=True, help="account.docusign.com instead of account-d.")
def docusign_configure(sandbox_url: str | None, integration_key: str | None, user_id: str | None,
                       account_id: str | None, private_key: str | None, production: bool) -> None:
    """Store DocuSign credentials, encrypted with the master key."""
    from gateway import store
    from gateway import upstream

    real = {"--integration-key": integration_key, "--user-id": user_id,
            "--account-id": account_id, "--private-key": private_key}
    with app_context():
        _require_ready()
        if sandbox_url:
            if any(real.values()) or production:
                raise CLIError("--sandbox cannot be combined with real DocuSign credentials")
            settings = upstream.configure_sandbox(sandbox_url)
        else:
            missing = [flag for flag, value in real.items() if not value]
            if missing:
                raise CLIError("missing " + ", ".join(missing) + " (or use --sandbox URL)")
            settings = upstream.settings_from_files(
                integration_key=t.cast(str, integration_key), user_id=t.cast(str, user_id),
                account_id=t.cast(str, account_id), private_key_path=t.cast(str, private_key),
                production=production,
            )
        with store.transaction() as conn:
            upstream.save_settings(conn, settings, now=time.time())
        where = "the emulator at " + sandbox_url if sandbox_url else (
            "DocuSign production" if production else "DocuSign demo")
        click.echo(f"configured: {where}; run `gateway docusign check` to test it")


@docusign.command("check")
def docusign_check() -> None:
    """Get a token and read userinfo; prints the consent URL when consent is missing."""
    from gateway import errors
    from gateway import store
    from gateway import upstream

    with app_context():
        _require_ready()
        try:
            info = upstream.get_client().check()
        except errors.UpstreamConsentRequired as exc:
            url = getattr(exc, "consent_url", None)
            raise CLIError(f"consent required: the system sender must open {url} and allow "
                           "access, then run this again") from None
        except errors.GatewayError as exc:
            raise CLIError(f"{exc.error_code}: {exc.description}") from None
        with store.transaction() as conn:
            settings = upstream.load_settings(conn)
        click.echo(f"ok: token obtained for {info.get('user_name')}; account "
                   f"{info.get('account_name')!r} at {info.get('base_uri')}"
                   + (" (emulator)" if settings and settings.sandbox else ""))


@docusign.group("connect-secret")
def connect_secret() -> None:
    """Connect HMAC secrets: several at once, so one can rotate without dropping messages."""


@connect_secret.command("add")
@click.option("--generate", is_flag=True,
              help="Make a random secret and print it once (for the emulator, or to paste).")
def connect_secret_add(generate: bool) -> None:
    """Add a secret (DocuSign shows it under Connect > HMAC keys); read from stdin, not a flag."""
    from gateway import store
    from gateway.services import connect_messages

    value = None
    if not generate:
        value = click.prompt("Connect HMAC secret", hide_input=True, err=True).strip()
    with app_context():
        _require_ready()
        try:
            with store.transaction() as conn:
                secret_id, value = connect_messages.add_secret(conn, value, now=time.time())
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    click.echo(f"Connect secret {secret_id} added", err=True)
    if generate:
        click.echo(value)


@connect_secret.command("list")
def connect_secret_list() -> None:
    """The configured secrets' ids and ages (never the secrets)."""
    from gateway import store
    from gateway.services import connect_messages

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            entries = connect_messages.load_secrets(conn)
    if not entries:
        click.echo("no Connect secrets: every Connect message is refused until you add one")
    for entry in entries:
        click.echo(f"{entry['id']}  added {_when(entry['added_at'])}")


@connect_secret.command("remove")
@click.argument("secret_id")
def connect_secret_remove(secret_id: str) -> None:
    """Forget a secret; messages signed only with it are refused from now on."""
    from gateway import store
    from gateway.services import connect_messages

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            removed = connect_messages.remove_secret(conn, secret_id, now=time.time())
    if not removed:
        raise CLIError(f"no Connect secret with id {secret_id!r}; see `gateway docusign connect-secret list`")
    click.echo(f"Connect secret {secret_id} removed")


@docusign.command("sandbox-connect")
@click.option("--sandbox", "sandbox_url", required=True, metavar="URL", help="The running emulator.")
@click.option("--listener", required=True, metavar="URL",
              help="The gateway's listener as the emulator reaches it, e.g. "
                   "http://127.0.0.1:8080/webhooks/docusign")
def docusign_sandbox_connect(sandbox_url: str, listener: str) -> None:
    """Make the emulator's Connect post to the gateway, signed with a fresh secret."""
    from gateway import store
    from gateway.services import connect_messages

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            secret_id, _ = connect_messages.add_secret(conn, now=time.time())
            values = [e["secret"] for e in connect_messages.load_secrets(conn)]
            try:
                connect_messages.configure_sandbox_connect(sandbox_url, listener, values)
            except ValueError as exc:
                raise CLIError(str(exc)) from None
    click.echo(f"emulator Connect -> {listener} (secret {secret_id})")


@cli.group()
def partners() -> None:
    """Issue, list, revoke and rotate partner keys."""


def _valid_policy(name: str) -> None:
    """A partner is only added when its policy file exists and is valid."""
    import os

    from gateway.policy import get_policies
    from gateway.policy import load_policy

    path = get_policies().path_for(name)
    if not os.path.exists(path):
        raise CLIError(f"no policy file for {name!r}: write {os.path.relpath(path)} first")
    load_policy(path)


@partners.command("add")
@click.argument("name")
@click.option("--expires", metavar="DURATION", help="The key stops working after this (e.g. 90d).")
def partners_add(name: str, expires: str | None) -> None:
    """Create a partner (needs a valid policies/NAME.toml); prints its key once."""
    from gateway import store
    from gateway.services import partner_keys as keys

    expires_at = time.time() + parse_duration(expires) if expires else None
    with app_context():
        _require_ready()
        _valid_policy(name)
        with store.transaction() as conn:
            key = keys.add_partner(conn, name, expires_at=expires_at)
    click.echo(f"partner {name!r} added; its key is shown once, store it now:", err=True)
    click.echo(key)


@partners.command("list")
@click.option("--json", "as_json", is_flag=True)
def partners_list(as_json: bool) -> None:
    """Every partner, its state and live key count."""
    from gateway import store
    from gateway.policy import get_policies
    from gateway.services import partner_keys as keys

    with app_context():
        _require_ready()
        with store.transaction() as conn:
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
                   f"policy={row['policy']} since={_when(row['created_at'])}")


@partners.command("revoke")
@click.argument("name")
def partners_revoke(name: str) -> None:
    """Revoke a partner and all its keys; bites on the very next request."""
    from gateway import store
    from gateway.services import partner_keys as keys

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            count = keys.revoke_partner(conn, name)
    click.echo(f"partner {name!r} revoked ({count} key(s))")


@partners.command("rotate-key")
@click.argument("name")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="How long the old key keeps working.")
def partners_rotate(name: str, grace: str) -> None:
    """Issue a new key; the old one works for the grace period. Prints the new key once."""
    from gateway import store
    from gateway.services import partner_keys as keys

    seconds = parse_duration(grace)
    with app_context():
        _require_ready()
        with store.transaction() as conn:
            key = keys.rotate_key(conn, name, grace=seconds)
    click.echo(f"new key for {name!r}; old key(s) stop within {grace}:", err=True)
    click.echo(key)


@cli.group()
def policies() -> None:
    """Partner policy files."""


@policies.command("check")
def policies_check() -> None:
    """Validate every policy file; exit 1 on any error."""
    from gateway.policy import get_policies

    with app_context():
        good, bad = get_policies().check_all()
    for name in sorted(good):
        click.echo(f"ok      {name}")
    for problem in bad:
        for line in str(problem).splitlines():
            click.echo(f"error   {line}", err=True)
    if bad:
        raise SystemExit(1)
    if not good:
        raise CLIError("no policy files found")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cli.command()
@click.option("--partner", metavar="NAME")
@click.option("--since", metavar="DURATION", help="Only events newer than this (e.g. 1h).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--verify", is_flag=True,
              help="Check the whole hash chain instead; exit 1 naming the first edited or missing record.")
def audit(partner: str | None, since: str | None, limit: int, as_json: bool, verify: bool) -> None:
    """Read the audit trail, or verify that nobody edited or deleted any of it."""
    from gateway import store
    from gateway.services import audit as audit_

    if verify:
        _verify_audit()
        return
    cutoff = time.time() - parse_duration(since) if since else None
    with app_context():
        _require_ready()
        with store.transaction() as conn:
            rows = audit_.query(conn, partner=partner, since=cutoff, limit=limit)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(f"{_when(row['at'])} {row['partner'] or '-':<16} {row['operation']:<16} "
                       f"{row['method'] or ''} {row['path'] or ''} -> {row['status']} "
                       f"{row['code'] or ''} {row['envelope_id'] or ''} {row['latency_ms']}ms")


@cli.group("keys")
def signing_keys() -> None:
    """The gateway's own signing keys (gateway_token, /.well-known/jwks.json)."""


@signing_keys.command("rotate-signing")
@click.option("--activate-in", default="0s", show_default=True, metavar="DURATION",
              help="Publish the new key now, sign with it after this (e.g. 10m: longer than "
                   "partners cache the JWKS).")
@click.option("--drop-old", is_flag=True,
              help="Unpublish the old keys at once (a leaked key): tokens they signed stop verifying.")
def keys_rotate_signing(activate_in: str, drop_old: bool) -> None:
    """New gateway_token signing key; old public keys stay in the JWKS until their tokens expire."""
    from gateway import store
    from gateway.services import signing_keys

    seconds = parse_duration(activate_in)
    with app_context():
        _require_ready()
        with store.transaction() as conn:
            kid = signing_keys.rotate_signing_key(conn, activate_in=seconds, drop_old=drop_old)
    click.echo(f"new signing key {kid}" + (f", signing from {activate_in} on" if seconds else ""))


@signing_keys.command("list-signing")
def keys_list_signing() -> None:
    """The signing keys' kids and states (pending, active, retired, expired)."""
    from gateway import store
    from gateway.services import signing_keys

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            rows = signing_keys.signing_key_summary(conn)
    for row in rows:
        click.echo(f"{row['kid']}  {row['state']:<8} from {_when(row['activates_at'])}"
                   + (f" until {_when(row['retired_at'])}" if row["retired_at"] else ""))


@cli.command()
@click.option("--sandbox-port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--gateway-port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--site-port", default=8070, show_default=True, type=click.IntRange(1, 65535))
def demo(sandbox_port: int, gateway_port: int, site_port: int) -> None:
    """Emulator, gateway and example partner site on loopback, in a throwaway instance."""
    from gateway.cli import demo_stack as demo_

    demo_.run(sandbox_port=sandbox_port, gateway_port=gateway_port, site_port=site_port)


def _verify_audit() -> None:
    """Walk the chain; print the head (keep it elsewhere to catch a rolled-back head later)."""
    from gateway import store
    from gateway.services import audit as audit_

    with app_context():
        _require_ready()
        with store.transaction() as conn:
            verdict = audit_.verify(conn)
    if verdict.problem is not None:
        raise CLIError(f"audit chain broken: {verdict.problem}")
    click.echo(f"ok: {verdict.checked} record(s) chained; head record {verdict.head_id} "
               f"hash {verdict.head_hash}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the gateway with gunicorn (one process per worker; several need Redis)."""
    from gateway import store
    from gateway.cli import serving

    with app_context() as app:
        _require_ready()
        serving.preflight(app, workers=workers)
        # the workers build their own apps and pools after the fork; sockets opened here
        # for the preflight must not be inherited by them
        store.get_engine().dispose()
    serving.run(host=host, port=port, workers=workers, threads=threads)


def main() -> None:
    """Console entry point: no traceback ever reaches the owner's terminal."""
    try:
        cli.main(prog_name="gateway")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        click.echo(f"error: unexpected {type(exc).__name__}; see the logs", err=True)
        sys.exit(1)
