"""Which forwarded headers to believe: those of `PROXY_HOPS` reverse proxies, no more.

Behind a reverse proxy, `GATEWAY_PROXY_HOPS=N` trusts the last N proxies' X-Forwarded-*
headers, so the return relay's per-address limit sees signers' addresses and not the proxy's.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def behind_proxy(app: Flask) -> Flask:
    """Trust `PROXY_HOPS` reverse proxies' X-Forwarded-For/-Proto/-Host/-Port (0: none)."""
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops, x_port=hops)
    return app
