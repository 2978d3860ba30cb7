"""Guards 2 and 3: the partner's policy must load, and must list the operation."""

from __future__ import annotations

from gateway import context
from gateway import errors
from gateway.context import Caller
from gateway.policy import Policy
from gateway.policy import get_policies


def load_policy(caller: Caller) -> Policy:
    """The caller's policy; none, or an invalid file, is 403 (fail closed)."""
    policy = get_policies().get(caller.partner)
    if policy is None:
        raise errors.PolicyUnavailable()
    context.current().policy = policy
    return policy


def check_operation(policy: Policy, operation: str | None) -> None:
    """403 unless the policy lists `operation` (None: any partner with a valid policy)."""
    if operation is not None and not policy.allows(operation):
        raise errors.OperationNotAllowed()
