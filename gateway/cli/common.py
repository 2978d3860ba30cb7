"""What every owner's command shares: the app, the readiness check, one-line errors, durations."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import re
import sys
import typing as t
import warnings

import click
import sqlalchemy as sa
from flask import Flask

from gateway import create_app
from gateway.errors import CLIError

NOT_READY = "the database is not initialised; run `gateway init`"
_DURATION_RE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> int:
    """`90s`, `15m`, `24h`, `7d`, `2w` in seconds."""
    m = _DURATION_RE.match(value.strip())
    if m is None:
        raise CLIError(f"bad duration {value!r}: use a number and one of s, m, h, d, w (e.g. 24h)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def when(ts: float | None) -> str:
    """A timestamp as the owner reads it (UTC, to the second), `-` when unset."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interactive() -> bool:
    """True when a person can answer a prompt (looked up at call time, so tests can replace it)."""
    return sys.stdin.isatty()


def _known_errors() -> tuple[type[Exception], ...]:
    """The failures that are the owner's to fix, each with a message that says how."""
    from gateway.policy import PolicyFileInvalid
    from gateway.services.admin_accounts import AdminProblem
    from gateway.services.partner_keys import KeyProblem
    from gateway.store import SchemaMismatch
    from gateway.store.vault import VaultError
    from gateway.upstream import UpstreamSetupError
    from gateway.web.proxy import PublicUrlInvalid

    return (VaultError, SchemaMismatch, KeyProblem, UpstreamSetupError, AdminProblem,
            PolicyFileInvalid, PublicUrlInvalid)


@contextlib.contextmanager
def gateway_app(*, ready: bool = True) -> t.Iterator[Flask]:
    """The gateway app in an app context, with every known failure turned into one clear line.

    `ready` refuses a database `gateway init` has not prepared, before anything connects
    to it: connecting to a missing SQLite file would create it, empty.
    """
    from gateway.web.operator import configure_logging

    try:
        app = create_app()
        # a command's output is for a person: warnings only, as plain (still redacted) text
        configure_logging(app, level=app.config["CLI_LOG_LEVEL"], fmt="text")
        with app.app_context():
            if ready:
                require_ready()
            yield app
    except _known_errors() as exc:
        raise CLIError(str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise CLIError(f"the database cannot be used: {exc.orig}") from None


@contextlib.contextmanager
def transaction(*, ready: bool = True) -> t.Iterator[sa.Connection]:
    """`gateway_app` around one store transaction: what most commands need, and all they need."""
    from gateway import store

    with gateway_app(ready=ready), store.transaction() as conn:
        yield conn


def require_ready() -> None:
    """Refuse to run against a database `gateway init` has not prepared (and never create one)."""
    from gateway import store

    url = store.get_engine().url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not os.path.exists(url.database):
        raise CLIError(NOT_READY)
    with store.transaction() as conn:
        store.check_schema(conn)


def read_password(*, from_stdin: bool) -> str:
    """The password from one line of stdin, or asked twice on the terminal.

    Without a terminal Python's getpass warns, falls back to reading stdin with echo and
    click says "Aborted!": the warning is turned into the one line that says what to do.
    """
    if from_stdin:
        # one line, for scripts: `printf '%s\n' "$PW" | gateway admin create NAME --password-stdin`
        return sys.stdin.readline().rstrip("\r\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return t.cast(str, click.prompt("password", hide_input=True,
                                            confirmation_prompt=True))
        except getpass.GetPassWarning:
            raise CLIError("no terminal to ask for a password: pipe it with --password-stdin") \
                from None
