"""Restricted-scope partner gateway for DocuSign eSignature: the application factory."""

from __future__ import annotations

import os
import typing as t

from flask import Flask

from gateway import settings
from gateway.settings import instance_path


def create_app(test_config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the gateway: defaults, then instance/config.py, then the environment, then tests."""
    app = Flask(__name__, instance_path=instance_path(), instance_relative_config=True,
                static_folder=None)
    settings.load(app, test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from gateway import errors
    from gateway import policy as policies
    from gateway import store
    from gateway import upstream
    from gateway.guards import ratelimit
    from gateway.services import audit_seal
    from gateway.services import webhook_sender
    from gateway.store import vault
    from gateway.web import admin
    from gateway.web import connect as webhooks
    from gateway.web import openapi
    from gateway.web import operator as observability
    from gateway.web import partner as partner_api
    from gateway.web import pipeline
    from gateway.web import proxy
    from gateway.web import relay as return_relay

    errors.init_app(app)
    vault.init_app(app)
    store.init_app(app)
    policies.init_app(app)
    pipeline.init_app(app)
    # before any route: slash handling; the host check runs right after the request id
    proxy.init_app(app)
    ratelimit.init_app(app)
    partner_api.init_app(app)
    return_relay.init_app(app)
    webhooks.init_app(app)
    observability.init_app(app)
    # the client takes its hooks from the budget and the metrics made above
    upstream.init_app(app, before_call=app.extensions["account_budget"].admit,
                      on_call=app.extensions["metrics"].observe_upstream)
    openapi.init_app(app)
    admin.init_app(app)
    webhook_sender.init_app(app)
    audit_seal.init_app(app)
    return proxy.behind_proxy(app)
