"""Helpers for the owner's pre-flight checks: run a command, change the stored settings."""

from __future__ import annotations

import dataclasses
import time
import typing as t

from click.testing import CliRunner
from click.testing import Result

from gateway.cli import cli


def run(owner: CliRunner, *args: str, code: int = 0) -> Result:
    result = owner.invoke(cli, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def change_settings(**changes: t.Any) -> None:
    """Store the configured DocuSign settings with some fields replaced."""
    from gateway import create_app
    from gateway import store
    from gateway import upstream

    app = create_app()
    with app.app_context():
        with store.transaction() as conn:
            settings = upstream.load_settings(conn)
            assert settings is not None
            upstream.save_settings(conn, dataclasses.replace(settings, **changes), now=time.time())
        app.extensions["store"].dispose()


