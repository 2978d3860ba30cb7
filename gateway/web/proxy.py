"""The HTTP edge: which host the gateway answers for, which forwarded headers it believes,
and the answers Flask would otherwise make up from the request (OPTIONS, slash redirects).

The gateway answers only for the host of `PUBLIC_URL` (loopback names when it is unset):
a request naming any other host gets a problem+json 400 `untrusted_host`, except the
probes and metrics (`PROBE_PATHS`), which orchestrators reach by address. Nothing that
goes out (the relay URL handed to DocuSign, the `iss` of `gateway_token`) is ever built
from a request's Host or forwarding headers; see `services.relay_tokens.public_url`.

Behind a reverse proxy, `GATEWAY_PROXY_HOPS=N` trusts the last N proxies' X-Forwarded-*
headers, so the return relay's per-address limit sees signers' addresses and not the
proxy's. This is the only place forwarded headers are read: `gateway serve` tells
gunicorn to trust none (`cli/serving.py`).
"""

from __future__ import annotations

import typing as t
import urllib.parse

from flask import Flask
from flask import Response
from flask import request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.sansio.utils import host_is_trusted

from gateway import errors

#: what a gateway without PUBLIC_URL answers for: local development and tests only
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
#: answered for any host: orchestrators probe by address (a pod IP, 127.0.0.1 in a compose
#: healthcheck) and Prometheus scrapes each instance by its internal name. They build no
#: URL and are not reachable through the front proxy's public host (/metrics is refused there)
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_UNTRUSTED = "gateway.untrusted_host"


class PublicUrlInvalid(ValueError):
    """PUBLIC_URL is not a bare http(s) origin: the owner's to fix, said in one line."""


def parse_public_url(value: str) -> urllib.parse.SplitResult:
    """`PUBLIC_URL` checked: http(s), a host, no path beyond `/`, no query, no credentials."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise PublicUrlInvalid(f"GATEWAY_PUBLIC_URL must be http(s)://host[:port] and nothing "
                               f"more, not {value!r}")
    return parts


def trusted_hosts(app: Flask) -> list[str]:
    """The host names this app answers for."""
    public = app.config.get("PUBLIC_URL")
    if not public:
        return list(LOOPBACK_HOSTS)
    return [t.cast(str, parse_public_url(public).hostname)]


class _HostGuard:
    """Marks a request for a host the gateway does not serve, and gives it the trusted one.

    The view never runs for such a request (`_refuse_untrusted_host`), but the request
    still goes through the pipeline (request id, log, metrics, audit). Putting the trusted
    host in its place means nothing in the app can ever read the attacker's Host.
    """

    def __init__(self, wsgi_app: t.Any, trusted: list[str], canonical: str) -> None:
        self.wsgi_app = wsgi_app
        self.trusted = trusted
        self.canonical = canonical

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if not host_is_trusted(str(host).lower(), self.trusted):
            environ[_UNTRUSTED] = True
            environ["HTTP_HOST"] = self.canonical
        return self.wsgi_app(environ, start_response)


def _refuse_untrusted_host() -> None:
    if request.environ.get(_UNTRUSTED) and request.path not in PROBE_PATHS:
        raise errors.UntrustedHost()


def _options_response(app: Flask) -> Response:
    """OPTIONS on a route: 204 with `Allow` and no body (Flask's own is an empty text/html)."""
    allow = Flask.make_default_options_response(app).headers.get("Allow", "")
    resp = Response(status=204, headers={"Allow": allow})
    del resp.headers["Content-Type"]  # no content, so no type (and never text/html)
    return resp


def init_app(app: Flask) -> None:
    """Before any route is added: no slash merging or adding redirects; the host check.

    Werkzeug answers `//v1//x` and `/admin` (for `/admin/`) with a 308 whose Location it
    builds from the request's Host; without merging and with lax slashes there is nothing
    to redirect, so those paths are simply routed (or 404).
    """
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    if app.config.get("PUBLIC_URL"):
        parts = parse_public_url(app.config["PUBLIC_URL"])
        app.config["PUBLIC_URL"] = f"{parts.scheme}://{parts.netloc}"
        # the test client and url_for(_external=True) use this host, never a request's
        app.config["SERVER_NAME"] = parts.netloc
    app.config["TRUSTED_HOSTS"] = trusted_hosts(app)
    app.before_request(_refuse_untrusted_host)
    app.make_default_options_response = (  # type: ignore[method-assign]
        lambda: _options_response(app))


def behind_proxy(app: Flask) -> Flask:
    """The host guard, inside `PROXY_HOPS` reverse proxies' X-Forwarded-* handling (0: none)."""
    trusted = t.cast(list[str], app.config["TRUSTED_HOSTS"])
    canonical = app.config.get("SERVER_NAME") or trusted[0]
    app.wsgi_app = _HostGuard(app.wsgi_app, trusted, canonical)  # type: ignore[method-assign]
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops, x_port=hops)
    return app
