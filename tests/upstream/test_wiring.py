"""The app factory hands the DocuSign client its hooks: the account budget and the metrics."""

from __future__ import annotations

import typing as t

from gateway.upstream import get_client


def test_client_calls_the_budget_and_the_metrics_of_its_app(app: t.Any) -> None:
    with app.app_context():
        client = get_client()
        assert client.transport.before_call == app.extensions["account_budget"].admit
        assert client.on_call == app.extensions["metrics"].observe_upstream
