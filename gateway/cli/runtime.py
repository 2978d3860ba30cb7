"""`gateway init | serve | sandbox | demo`: prepare an instance and run things."""

from __future__ import annotations

import os
import signal
import threading
import typing as t

import click

from gateway.cli import common
from gateway.errors import CLIError

_PORT = click.IntRange(1, 65535)


@click.command("init")
def init() -> None:
    """Prepare the instance (idempotent).

    Creates the instance folder, master key, database and signing keys; on a terminal,
    offers to create the first /admin account.
    """
    from gateway import store
    from gateway.services import admin_accounts as admin
    from gateway.services import partner_keys as keys
    from gateway.services import signing_keys
    from gateway.store import vault

    with common.gateway_app(ready=False) as app:
        made_key = False
        if not app.config.get("MASTER_KEY"):
            made_key = vault.create_key_file(vault.master_key_path(app.instance_path))
        # the vault was built before the key file existed: build it again from the file
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


def _offer_admin() -> None:
    """`gateway init` on a terminal asks for the first console account; scripts get a hint."""
    from gateway import store
    from gateway.cli.admin import create_admin
    from gateway.services import admin_accounts as admin

    with store.transaction() as conn:
        if admin.list_admins(conn):
            return
    if not common.interactive():
        click.echo("admin console: no account yet; run `gateway admin create NAME`")
        return
    username = click.prompt("admin console username (empty to skip)", default="",
                            show_default=False).strip()
    if not username:
        click.echo("admin console: skipped; run `gateway admin create NAME` later")
        return
    create_admin(username, from_stdin=False)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=_PORT)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", type=click.IntRange(1, 256),
              help="Per worker; default 4 on SQLite, 8 on PostgreSQL (docs/production.md).")
def serve(host: str, port: int, workers: int, threads: int | None) -> None:
    """Serve the gateway with gunicorn.

    One process per worker; several workers need Redis for the rate-limit counters.
    """
    from gateway import store
    from gateway.cli import serving

    with common.gateway_app() as app:
        serving.preflight(app, workers=workers)
        serving.settle_public_url(app, host=host, port=port)
        threads = threads or serving.default_threads(store.get_engine().dialect.name)
        # the workers build their own apps and pools after the fork; sockets opened here
        # for the preflight must not be inherited by them
        store.get_engine().dispose()
    # gunicorn retries a busy port for five seconds, logging each try: fail at once instead
    serving.check_port_free(host, port)
    serving.run(host=host, port=port, workers=workers, threads=threads)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=_PORT)
def sandbox(host: str, port: int) -> None:
    """Run the DocuSign emulator in the foreground.

    Ctrl-C stops it.
    """
    from sandbox import server

    # server.serve binds first and prints its own banner only once it listens
    try:
        server.serve(host, port)
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command("demo")
@click.option("--sandbox-port", default=8090, show_default=True, type=_PORT)
@click.option("--gateway-port", default=8080, show_default=True, type=_PORT)
@click.option("--site-port", default=8070, show_default=True, type=_PORT)
def demo(sandbox_port: int, gateway_port: int, site_port: int) -> None:
    """Try everything on loopback.

    The emulator, the gateway and the example partner site, in a throwaway instance.
    """
    _run_demo(sandbox_port=sandbox_port, gateway_port=gateway_port, site_port=site_port)


def _raise_interrupt(signum: int, frame: t.Any) -> None:
    raise KeyboardInterrupt


def _run_demo(*, sandbox_port: int, gateway_port: int, site_port: int) -> None:
    """Start everything, print what to open, and stop everything on Ctrl-C (or SIGTERM).

    Standard output says, once: the site to open, the owner's console with its login
    (a generated password, held only as a hash in the throwaway database), and the
    emulator's page where the owner's countersigner signs.
    """
    from gateway.cli.demo_stack import PARTNER
    from gateway.cli.demo_stack import DemoStack
    from gateway.cli.demo_stack import PortInUse
    from gateway.upstream import UpstreamSetupError

    # one readable line per request: the demo's terminal is read by a person
    stack = DemoStack(sandbox_port=sandbox_port, gateway_port=gateway_port, site_port=site_port,
                      gateway_config={"LOG_FORMAT": "text"})
    flag = {"emulator": "--sandbox-port", "gateway": "--gateway-port",
            "example site": "--site-port"}
    try:
        stack.start()
    except PortInUse as exc:
        raise CLIError(f"{exc}; stop what uses it or pick another with {flag[exc.role]}") from None
    except (ValueError, UpstreamSetupError) as exc:  # the emulator refused part of the setup
        raise CLIError(str(exc)) from None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        click.echo(f"DocuSign emulator  {stack.sandbox_url}", err=True)
        click.echo(f"gateway            {stack.gateway_url}  (throwaway instance, deleted on exit)",
                   err=True)
        click.echo(f"example site       {stack.site_url}  (partner {PARTNER!r})", err=True)
        click.echo(f"Open {stack.site_url}/")
        assert stack.admin is not None
        user, password = stack.admin
        click.echo(f"owner's console    {stack.console_url}  (username {user}, password "
                   f"{password}; shown once)")
        click.echo(f"to countersign as the owner's countersigner, open {stack.control_url}")
        click.echo("Ctrl-C stops everything.", err=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.stop()
        click.echo("demo stopped", err=True)
