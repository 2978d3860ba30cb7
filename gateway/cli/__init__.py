"""The account owner's commands: the root group `gateway`, its registration, and `main()`.

Every command fails with one line on stderr (`error: ...`) and a non-zero exit, never
a traceback. Keys are printed once, alone on stdout, so they can be piped. Each command
group lives in its own module; this one only wires them together (the modules are
imported as modules, so no command object shadows a submodule of the same name).
"""

from __future__ import annotations

import sys

import click

from gateway.cli import admin
from gateway.cli import audit
from gateway.cli import docusign
from gateway.cli import partners
from gateway.cli import policies
from gateway.cli import runtime
from gateway.cli import secrets
from gateway.cli import signing_keys
from gateway.cli import webhooks

__all__ = ["cli", "main"]


@click.group()
@click.version_option(package_name="docusign-partner-gateway", prog_name="gateway")
def cli() -> None:
    """Restricted-scope partner gateway for DocuSign eSignature."""


for _command in (runtime.init, admin.admin_group, docusign.docusign_group, partners.partners_group,
                 policies.policies_group, audit.audit_command, signing_keys.signing_keys_group,
                 signing_keys.deprecated_keys_group, runtime.serve, runtime.sandbox, runtime.demo,
                 webhooks.webhooks_group, secrets.secrets_group):
    cli.add_command(_command)
del _command


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
