"""Partner policy files (`policies/<partner>.toml`): strict schema, immutable policies, hot reload.

A policy names everything a partner may do upstream: which operations, which templates (by
alias, never by raw id), which fields with which constraints, where signers may be sent back
to and which origins may frame the signing page. Loading is strict (unknown keys, bad URLs,
bad patterns are errors naming the file and the dotted key) and failing closed: a partner
whose file is missing or invalid gets no policy at all.

Modules: `urls` (strict URL parser, `return_url_allowed`), `schema` (the file format),
`model` (loaded policies), `loader` (file -> Policy or errors), `store` (hot-reload cache).
"""

from gateway.policy.loader import PolicyError
from gateway.policy.loader import PolicyFileInvalid
from gateway.policy.loader import load_policy
from gateway.policy.loader import parse_policy
from gateway.policy.model import FieldRule
from gateway.policy.model import Policy
from gateway.policy.model import TemplatePolicy
from gateway.policy.schema import OPERATIONS
from gateway.policy.schema import FieldSchema
from gateway.policy.schema import PolicySchema
from gateway.policy.schema import TemplateSchema
from gateway.policy.store import PolicyStore
from gateway.policy.store import get_policies
from gateway.policy.store import init_app
from gateway.policy.urls import return_url_allowed

__all__ = [
    "OPERATIONS",
    "FieldRule",
    "FieldSchema",
    "Policy",
    "PolicyError",
    "PolicyFileInvalid",
    "PolicySchema",
    "PolicyStore",
    "TemplatePolicy",
    "TemplateSchema",
    "get_policies",
    "init_app",
    "load_policy",
    "parse_policy",
    "return_url_allowed",
]
