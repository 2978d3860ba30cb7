"""`gateway policies`: the partner policy files."""

from __future__ import annotations

import typing as t

import click

from gateway.cli import common
from gateway.errors import CLIError


@click.group("policies")
def policies_group() -> None:
    """Check the partner policy files."""


@policies_group.command("check")
@click.option("--upstream", is_flag=True,
              help="Also read each template from the DocuSign account: it exists, the role is "
                   "one of its signers, each field is a text tab of that role.")
def policies_check(upstream: bool) -> None:
    """Validate every policy file; exit 1 on any error."""
    from gateway.policy import get_policies

    if upstream:
        _check_upstream()
        return
    # the policy files live outside the database: this works before `gateway init`
    with common.gateway_app(ready=False):
        good, bad = get_policies().check_all()
    for name in sorted(good):
        click.echo(f"ok      {name}")
    _print_bad(bad)
    if bad:
        raise SystemExit(1)
    if not good:
        raise CLIError("no policy files found")


def _print_bad(bad: t.Sequence[t.Any]) -> None:
    for problem in bad:
        for line in str(problem).splitlines():
            click.echo(f"error   {line}", err=True)


def upstream_report() -> tuple[list[t.Any], t.Any]:
    """The local problems and the upstream report (inside `gateway_app`).

    A fresh grant comes first, so that a connection or credentials problem is one line
    naming its step (CLIError) instead of one error per template.
    """
    from gateway import upstream as ds
    from gateway.cli.docusign import fresh_check_line
    from gateway.policy import get_policies
    from gateway.services import template_check

    good, bad = get_policies().check_all()
    if not good and not bad:
        raise CLIError("no policy files found")
    fresh_check_line()
    client = ds.get_client()
    return list(bad), template_check.check_policies_upstream(good, client.get_template)


def _check_upstream() -> None:
    from gateway.cli.docusign import quiet_upstream

    with common.gateway_app(), quiet_upstream():
        bad, report = upstream_report()
    for finding in report.findings:
        line = f"{finding.level:<7} {finding.subject}: {finding.text}"
        click.echo(line, err=finding.level == "error")
    _print_bad(bad)
    if bad or report.errors:
        n = len(bad) + len(report.errors)
        click.echo(f"{n} error(s)", err=True)
        raise SystemExit(1)
