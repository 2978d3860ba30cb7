"""The guards a partner request passes, in this order, before anything reaches DocuSign.

`partner_call(operation)` runs the fixed pipeline around a view:

1. `authenticate`: the key (every call hits the store: revocation bites at once);
2. `operation.load_policy`: the partner's policy (none, or an invalid file: fail closed);
3. `client_ip.check_client_ip`: the client address is in the policy's `allowed_ips`
   (401 like a bad key otherwise);
4. `operation.check_operation`: the operation is in the policy;
5. `ratelimit.partner_limit`: the call counts against the partner's rate limit.

Inside the view, the rules that need the request body or an envelope, in this order:

6. `body.load_body`: the JSON body against the view's schema;
7. `ownership.owned_envelope`: the envelope is the caller's (404 otherwise);
8. `template_fields.approved_template` (create) or `return_url.check_return_url`
   (recipient view): the policy's template, field and return-URL rules.
"""

from __future__ import annotations

import functools
import typing as t

from gateway import context
from gateway.guards.authenticate import authenticate
from gateway.guards.client_ip import check_client_ip
from gateway.guards.operation import check_operation
from gateway.guards.operation import load_policy
from gateway.guards.ratelimit import partner_limit

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def partner_call(operation: str | None) -> t.Callable[[F], F]:
    """Guard a partner view; `operation` None means any partner with a valid policy may call it."""

    def decorate(view: F) -> F:
        limited = partner_limit(view)

        @functools.wraps(view)
        def guarded(*args: t.Any, **kwargs: t.Any) -> t.Any:
            context.current().operation = operation or view.__name__
            caller = authenticate()
            policy = load_policy(caller)
            check_client_ip(policy)
            check_operation(policy, operation)
            return limited(*args, **kwargs)

        return t.cast(F, guarded)

    return decorate
