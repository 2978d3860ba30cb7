"""The ordered pipeline every partner request passes before its view runs.

1. authenticate the key (every call hits the store: revocation bites at once);
2. load the partner's policy (none, or an invalid file: fail closed);
3. check the operation is in the policy;
4. count the call against the partner's rate limit.
The view then validates its body against the schema and the policy, and checks
ownership of any envelope it names.
"""

from __future__ import annotations

import functools
import typing as t

from flask import g
from flask import request

from gateway import errors
from gateway import store
from gateway.guards.ratelimit import partner_limit
from gateway.policy import Policy
from gateway.policy import get_policies
from gateway.services import partner_keys as keys

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate() -> keys.Caller:
    with store.transaction() as conn:
        caller = keys.authenticate(conn, bearer_token())
    g.caller = caller
    g.partner = caller.partner
    return caller


def load_policy(caller: keys.Caller) -> Policy:
    policy = get_policies().get(caller.partner)
    if policy is None:
        raise errors.PolicyUnavailable()
    g.policy = policy
    return policy


def check_operation(policy: Policy, operation: str | None) -> None:
    if operation is not None and not policy.allows(operation):
        raise errors.OperationNotAllowed()


def partner_call(operation: str | None) -> t.Callable[[F], F]:
    """Guard a partner view; `operation` None means any partner with a valid policy may call it."""

    def decorate(view: F) -> F:
        limited = partner_limit(view)

        @functools.wraps(view)
        def guarded(*args: t.Any, **kwargs: t.Any) -> t.Any:
            g.operation = operation or view.__name__
            caller = authenticate()
            policy = load_policy(caller)
            check_operation(policy, operation)
            return limited(*args, **kwargs)

        return t.cast(F, guarded)

    return decorate
