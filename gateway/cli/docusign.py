"""`gateway docusign`: connect the gateway to DocuSign, or to the emulator."""

from __future__ import annotations

import contextlib
import logging
import time
import typing as t

import click

from gateway.cli import common
from gateway.errors import CLIError

NOT_CONFIGURED = ("DocuSign is not configured: run `gateway docusign configure --sandbox URL` "
                  "or `gateway docusign configure --integration-key ...`")


@click.group("docusign")
def docusign_group() -> None:
    """Connect the gateway to DocuSign (or to the emulator)."""


@docusign_group.command("configure")
@click.option("--sandbox", "sandbox_url", metavar="URL", help="Wire to a running emulator.")
@click.option("--integration-key", metavar="GUID")
@click.option("--user-id", metavar="GUID", help="The system sender user's id (impersonated).")
@click.option("--account-id", metavar="GUID")
@click.option("--private-key", metavar="PEM_FILE", help="The integration key's RSA private key.")
@click.option("--production", is_flag=True, help="account.docusign.com instead of account-d.")
def docusign_configure(sandbox_url: str | None, integration_key: str | None, user_id: str | None,
                       account_id: str | None, private_key: str | None, production: bool) -> None:
    """Store DocuSign credentials.

    They are stored encrypted with the master key.
    """
    from gateway import store
    from gateway import upstream

    real = {"--integration-key": integration_key, "--user-id": user_id,
            "--account-id": account_id, "--private-key": private_key}
    with common.gateway_app():
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


@contextlib.contextmanager
def quiet_upstream() -> t.Iterator[None]:
    """No retry warnings from the upstream client: the check's own line says what failed."""
    logger = logging.getLogger("gateway.upstream")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@docusign_group.command("check")
def docusign_check() -> None:
    """Test the credentials: a fresh JWT grant and userinfo.

    Nothing cached is used (neither this process's token nor the fleet's shared one). On
    failure, one line names the step that failed and what usually fixes it; when consent is
    missing it prints the consent URL and the redirect URI to register.
    """
    with common.gateway_app(), quiet_upstream():
        line = fresh_check_line()
    click.echo(line)


def fresh_check_line() -> str:
    """`ok: ...` after a fresh grant and userinfo, else CLIError with the failing step."""
    from gateway import errors
    from gateway import upstream
    from gateway.services import golive
    from gateway.upstream.client import CheckFailed

    try:
        found = upstream.get_client().fresh_check()
    except errors.UpstreamNotConfigured:
        raise CLIError(NOT_CONFIGURED) from None
    except CheckFailed as failure:
        raise CLIError(golive.explain_check_failure(failure)) from None
    account = found.account
    who = account.user_name + (f" <{found.user_email}>" if found.user_email else "")
    return (f"ok: token obtained for {who}; account {account.account_name!r} "
            f"({found.settings.account_id}) at {account.base_uri}"
            + (" (emulator)" if found.settings.sandbox else ""))


@docusign_group.command("go-live-check")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="How many worker processes will serve (more than one needs PostgreSQL "
                   "and Redis).")
@click.option("--connect-days", type=click.IntRange(min=1), default=7, show_default=True,
              help="A signed Connect message must have arrived within this many days.")
def docusign_go_live_check(workers: int, connect_days: int) -> None:
    """Check every production requirement.

    One line each, ok or the fix; exit 1 if any fails.
    """
    from flask import current_app

    from gateway import store
    from gateway import upstream
    from gateway.cli.policies import upstream_report
    from gateway.services import golive

    rows: list[golive.Requirement] = []
    with common.gateway_app() as app, quiet_upstream():
        with store.transaction() as conn:
            settings = upstream.load_settings(conn)
        rows.append(golive.production_host(settings))
        rows.append(golive.public_url(str(app.config.get("PUBLIC_URL") or "")))
        try:
            consent = golive.Requirement("consent", True, fresh_check_line()[len("ok: "):])
        except CLIError as exc:
            consent = golive.Requirement("consent", False, exc.format_message())
        rows.append(consent)
        if not consent.ok:
            rows.append(golive.Requirement("policies", False, "not checked: the consent line "
                                           "must be ok first"))
        else:
            rows.append(_policies_requirement(upstream_report))
        with store.transaction() as conn:
            rows.append(golive.connect_received(conn, days=connect_days))
        rows.append(golive.master_key(str(app.config.get("MASTER_KEY") or ""),
                                      current_app.instance_path))
        rows.extend(golive.shared_state(str(app.config.get("DATABASE_URL") or ""),
                                        str(app.config.get("RATELIMIT_STORAGE_URI") or ""),
                                        workers=workers))
    for row in rows:
        click.echo(f"{'ok' if row.ok else 'FAIL':<5} {row.name}: {row.text}")
    failed = [row for row in rows if not row.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(rows)} requirements not met", err=True)
        raise SystemExit(1)


def _policies_requirement(upstream_report: t.Callable[[], t.Any]) -> t.Any:
    from gateway.services import golive

    try:
        local_errors, report = upstream_report()
    except CLIError as exc:
        return golive.Requirement("policies", False, exc.format_message())
    problems = [str(p).splitlines()[0] for p in local_errors] + [
        f"{f.subject}: {f.text}" for f in report.errors]
    if problems:
        return golive.Requirement(
            "policies", False, f"{len(problems)} problem(s), first: {problems[0]}; run "
                               "`gateway policies check --upstream` for all")
    if not report.templates:
        return golive.Requirement("policies", False, "no policy files found")
    return golive.Requirement("policies", True, f"{report.templates} template(s) pass "
                                                "`gateway policies check --upstream`")


@docusign_group.group("connect-secret")
def connect_secret() -> None:
    """Manage the Connect HMAC secrets.

    Several can be active at once, so one can rotate without dropping messages.
    """


@connect_secret.command("add")
@click.option("--generate", is_flag=True,
              help="Make a random secret and print it once (for the emulator, or to paste).")
def connect_secret_add(generate: bool) -> None:
    """Add a secret, read from stdin (never a flag).

    DocuSign shows it under Connect > HMAC keys. With --generate, a random one is printed once.
    """
    from gateway.services import connect_messages

    value = None
    if not generate:
        value = click.prompt("Connect HMAC secret", hide_input=True, err=True).strip()
    try:
        with common.transaction() as conn:
            secret_id, value = connect_messages.add_secret(conn, value, now=time.time())
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    click.echo(f"Connect secret {secret_id} added", err=True)
    if generate:
        click.echo(value)


@connect_secret.command("list")
def connect_secret_list() -> None:
    """List the secrets' ids and ages (never the secrets)."""
    from gateway.services import connect_messages

    with common.transaction() as conn:
        entries = connect_messages.load_secrets(conn)
    if not entries:
        click.echo("no Connect secrets: every Connect message is refused until you add one")
    for entry in entries:
        click.echo(f"{entry['id']}  added {common.when(entry['added_at'])}")


@connect_secret.command("remove")
@click.argument("secret_id")
def connect_secret_remove(secret_id: str) -> None:
    """Forget a secret.

    Messages signed only with it are refused from now on.
    """
    from gateway.services import connect_messages

    with common.transaction() as conn:
        removed = connect_messages.remove_secret(conn, secret_id, now=time.time())
    if not removed:
        raise CLIError(f"no Connect secret with id {secret_id!r}; "
                       "see `gateway docusign connect-secret list`")
    click.echo(f"Connect secret {secret_id} removed")


@docusign_group.command("sandbox-connect")
@click.option("--sandbox", "sandbox_url", required=True, metavar="URL", help="The running emulator.")
@click.option("--listener", required=True, metavar="URL",
              help="The gateway's listener as the emulator reaches it, e.g. "
                   "http://127.0.0.1:8080/webhooks/docusign")
def docusign_sandbox_connect(sandbox_url: str, listener: str) -> None:
    """Point the emulator's Connect at the gateway.

    The emulator signs its messages with a fresh secret, added here too.
    """
    from gateway.services import connect_messages

    # one transaction: the secret is only kept when the emulator accepted it
    try:
        with common.transaction() as conn:
            secret_id, _ = connect_messages.add_secret(conn, now=time.time())
            values = [e["secret"] for e in connect_messages.load_secrets(conn)]
            connect_messages.configure_sandbox_connect(sandbox_url, listener, values)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    click.echo(f"emulator Connect -> {listener} (secret {secret_id})")
