"""A strict in-memory emulator of the DocuSign eSignature subset the gateway uses.

``create_app()`` builds a Flask app that serves the account server
(``/oauth/...``), the REST API (``/restapi/v2.1/...``), the embedded signing
page (``/Signing/...``) and a control API (``/_sandbox/...``) for tests.
"""

from __future__ import annotations

import typing as t

from flask import Flask

from . import connect
from . import control
from . import errors
from . import oauth
from . import rest
from . import signing
from .constants import DEFAULT_CONFIG
from .constants import DEMO_ACCOUNT_ID
from .constants import DEMO_INTEGRATION_KEY
from .constants import DEMO_USER_EMAIL
from .constants import DEMO_USER_ID
from .constants import DEMO_USER_NAME
from .constants import ENDPOINT_NAMES
from .constants import INTERNAL_TEMPLATE_ID
from .constants import MEMBERSHIP_TEMPLATE_ID
from .constants import NDA_TEMPLATE_ID
from .state import Sandbox

__all__ = [
    "DEMO_ACCOUNT_ID",
    "DEMO_INTEGRATION_KEY",
    "DEMO_USER_EMAIL",
    "DEMO_USER_ID",
    "DEMO_USER_NAME",
    "ENDPOINT_NAMES",
    "INTERNAL_TEMPLATE_ID",
    "MEMBERSHIP_TEMPLATE_ID",
    "NDA_TEMPLATE_ID",
    "Sandbox",
    "create_app",
    "get_state",
]


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build an emulator app with fresh, seeded in-memory state.

    :param config: overrides for :data:`sandbox.constants.DEFAULT_CONFIG` (and any Flask key)
    """
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(DEFAULT_CONFIG)
    if config:
        app.config.from_mapping(config)
    unknown = [k for k in app.config if k.startswith("SANDBOX_") and k not in DEFAULT_CONFIG]
    if unknown:
        raise ValueError(f"unknown sandbox config key(s): {', '.join(sorted(unknown))}")
    app.json.sort_keys = False  # keep DocuSign's field order, easier to read
    state = Sandbox(app.config)
    state.connect = connect.ConnectNotifier(state)
    app.extensions["sandbox"] = state
    errors.init_app(app)
    oauth.init_app(app)
    rest.init_app(app)
    signing.init_app(app)
    control.init_app(app)
    return app


def get_state(app: Flask) -> Sandbox:
    """The emulator state of ``app`` (for tests that want to peek or wait on Connect).

    :param app: an app made by :func:`create_app`
    """
    return t.cast(Sandbox, app.extensions["sandbox"])
