"""`gateway policies`: the partner policy files."""

from __future__ import annotations

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.group("policies")
def policies_group() -> None:
    """Check the partner policy files."""


@policies_group.command("check")
def policies_check() -> None:
    """Validate every policy file; exit 1 on any error."""
    from gateway.policy import get_policies

    # the policy files live outside the database: this works before `gateway init`
    with common.gateway_app(ready=False):
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
