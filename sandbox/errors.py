"""Error classes that render themselves, one per response family, and their handlers."""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import jsonify
from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import constants as c


class SandboxError(Exception):
    """Base class: an error that knows its HTTP status and renders its own body."""

    status: int = 400

    def __init__(self, *, status: int | None = None, headers: t.Mapping[str, str] | None = None) -> None:
        super().__init__()
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def body(self) -> Response:
        """The response body and content type (status and headers are added after)."""
        raise NotImplementedError

    def response(self) -> Response:
        """The full response: body, status and extra headers."""
        resp = self.body()
        resp.status_code = self.status
        for name, value in self.headers.items():
            resp.headers[name] = value
        return resp


class RestError(SandboxError):
    """An eSignature REST error: ``{"errorCode", "message"}`` (docs/docusign-facts.md §7)."""

    def __init__(self, code: str, message: str, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def body(self) -> Response:
        return jsonify({"errorCode": self.code, "message": self.message})


def invalid_body() -> RestError:
    """400 ``INVALID_REQUEST_BODY`` with DocuSign's own message."""
    return RestError(c.INVALID_BODY_CODE, c.INVALID_BODY_MESSAGE)


def invalid_parameter(detail: str) -> RestError:
    """400 ``INVALID_REQUEST_PARAMETER``; the message starts the way DocuSign's does.

    :param detail: the sentence naming the parameter
    """
    return RestError(c.INVALID_PARAMETER_CODE, c.INVALID_PARAMETER_PREFIX + detail)


class OAuthError(SandboxError):
    """An account-server error: ``{"error", "error_description"}`` (docs/docusign-facts.md §1)."""

    def __init__(self, error: str, description: str, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.description = description

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"

    def body(self) -> Response:
        return jsonify({"error": self.error, "error_description": self.description})


def invalid_grant(description: str) -> OAuthError:
    """400 ``invalid_grant`` whose ``error_description`` names the real cause.

    :param description: one of DocuSign's reasons, e.g. ``no_valid_keys_or_signatures``
    """
    return OAuthError("invalid_grant", description)


class ControlError(SandboxError):
    """An error of the ``/_sandbox`` control API: ``{"error": message}``."""

    def __init__(self, message: str, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def body(self) -> Response:
        return jsonify({"error": self.message})


class PageError(SandboxError):
    """An HTML error page (signing and consent pages are for browsers)."""

    def __init__(self, message: str, *, frame_ancestors: t.Sequence[str] = (), **kwargs: t.Any):
        super().__init__(**kwargs)
        self.message = message
        self.frame_ancestors = list(frame_ancestors)

    def __str__(self) -> str:
        return self.message

    def body(self) -> Response:
        html = render_template("error.html", status=self.status, message=self.message)
        resp = Response(html, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = frame_ancestors_policy(self.frame_ancestors)
        return resp


def frame_ancestors_policy(origins: t.Sequence[str]) -> str:
    """The CSP header value that lets only ``'self'`` and ``origins`` frame a page.

    :param origins: validated origins from the view request's ``frameAncestors``
    """
    return " ".join(["frame-ancestors", "'self'", *origins])


def _http_exception(exc: HTTPException) -> Response:
    """Render werkzeug's errors (404, 405, 500...) in the shape of the area hit."""
    status = exc.code or 500
    path = request.path
    if path.startswith("/restapi/"):
        if status == 404:
            err: SandboxError = RestError(
                c.UNKNOWN_ROUTE_CODE,
                "The requested resource was not found.",
                status=c.UNKNOWN_ROUTE_STATUS,
            )
        elif status == 405:
            err = RestError(
                c.METHOD_NOT_ALLOWED_CODE,
                "The requested method is not allowed.",
                status=c.METHOD_NOT_ALLOWED_STATUS,
            )
        else:
            err = RestError(c.UNSPECIFIED_ERROR_CODE, exc.name, status=status)
    elif path.startswith("/oauth/"):
        name = {404: "not_found", 405: "invalid_request"}.get(status, "server_error")
        err = OAuthError(name, exc.name, status=status)
    elif path.startswith("/Signing/"):
        err = PageError(exc.name, status=status)
    else:
        err = ControlError(exc.name, status=status)
    resp = err.response()
    allowed = getattr(exc, "valid_methods", None)
    if allowed:
        resp.headers["Allow"] = ", ".join(allowed)
    return resp


def init_app(app: Flask) -> None:
    """Register the two handlers: our own errors, and werkzeug's HTTP errors."""
    app.register_error_handler(SandboxError, lambda exc: exc.response())
    app.register_error_handler(HTTPException, _http_exception)
