"""Guard 3: the partner's key is used from an address its policy allows (`allowed_ips`)."""

from __future__ import annotations

from flask import request

from gateway import errors
from gateway.policy import Policy


def check_client_ip(policy: Policy) -> None:
    """401, exactly like a bad key, unless the client address is in the policy's `allowed_ips`.

    The address is `request.remote_addr` after `PROXY_HOPS` trusted proxies (ProxyFix),
    never a header the client could set itself.
    """
    if not policy.ip_allowed(request.remote_addr):
        raise errors.IpNotAllowed()
