"""Guard 1: the partner's API key. Every call hits the store, so a revocation bites at once."""

from __future__ import annotations

from flask import request

from gateway import context
from gateway import store
from gateway.context import Caller
from gateway.services import partner_keys


def bearer_token() -> str | None:
    """The `Authorization: Bearer <key>` value, None when absent or another scheme."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate() -> Caller:
    """The caller behind a valid, unrevoked, unexpired key; 401 otherwise."""
    with store.transaction() as conn:
        caller = partner_keys.authenticate(conn, bearer_token())
    state = context.current()
    state.caller = caller
    state.partner = caller.partner
    return caller
