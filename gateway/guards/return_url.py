"""The recipient-view rule: `return_url` must match one of the policy's `return_urls`."""

from __future__ import annotations

from gateway import errors
from gateway.policy import Policy


def check_return_url(policy: Policy, return_url: str) -> None:
    """422 unless scheme, host and port match exactly and the path extends an allowed one."""
    if not policy.return_url_allowed(return_url):
        raise errors.ReturnUrlNotAllowed()
