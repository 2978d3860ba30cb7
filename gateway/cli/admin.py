"""`gateway admin`: accounts for the /admin console (never partner keys)."""

from __future__ import annotations

import click

from gateway.cli import common


@click.group("admin")
def admin_group() -> None:
    """Accounts for the /admin console.

    These are people signing in to /admin, never partner keys.
    """


def create_admin(username: str, *, from_stdin: bool) -> None:
    """Create a console account, refusing a taken name before asking for a password."""
    from gateway import store
    from gateway.services import admin_accounts as admin

    admin.check_username(username)
    with store.transaction() as conn:
        if any(row["username"] == username for row in admin.list_admins(conn)):
            raise admin.AdminProblem(f"admin {username!r} already exists; "
                                     "use `gateway admin set-password`")
    password = admin.check_password(common.read_password(from_stdin=from_stdin))
    with store.transaction() as conn:
        admin.create_admin(conn, username, password)
    click.echo(f"admin {username!r} created; sign in at /admin")


_PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                               help="Read the password from one line of stdin instead of a prompt.")


@admin_group.command("create")
@click.argument("username")
@_PASSWORD_STDIN
def admin_create(username: str, password_stdin: bool) -> None:
    """Create a console account.

    The password is prompted for (or read from stdin) and stored as a scrypt hash.
    """
    with common.gateway_app():
        create_admin(username, from_stdin=password_stdin)


@admin_group.command("set-password")
@click.argument("username")
@_PASSWORD_STDIN
def admin_set_password(username: str, password_stdin: bool) -> None:
    """Replace an account's password.

    The account's open sessions end.
    """
    from gateway import store
    from gateway.services import admin_accounts as admin

    with common.gateway_app():
        password = admin.check_password(common.read_password(from_stdin=password_stdin))
        with store.transaction() as conn:
            admin.set_password(conn, username, password)
    click.echo(f"password of admin {username!r} replaced")


@admin_group.command("list")
def admin_list() -> None:
    """List the console accounts."""
    from gateway.services import admin_accounts as admin

    with common.transaction() as conn:
        rows = admin.list_admins(conn)
    if not rows:
        click.echo("no admin accounts: `gateway admin create NAME`")
    for row in rows:
        click.echo(f"{row['username']:<32} since={common.when(row['created_at'])}")


@admin_group.command("delete")
@click.argument("username")
def admin_delete(username: str) -> None:
    """Remove a console account.

    The account's open sessions end.
    """
    from gateway.services import admin_accounts as admin

    with common.transaction() as conn:
        admin.delete_admin(conn, username)
    click.echo(f"admin {username!r} deleted")
