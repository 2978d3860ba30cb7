"""The create rules: the template alias must be approved, the fields must satisfy the policy."""

from __future__ import annotations

import typing as t

from gateway import errors
from gateway.policy import Policy
from gateway.policy import TemplatePolicy


def approved_template(policy: Policy, alias: str, fields: t.Mapping[str, object]) -> TemplatePolicy:
    """The policy's template for `alias` (403 if not approved) once `fields` pass its rules (422)."""
    template = policy.templates.get(alias)
    if template is None:
        raise errors.TemplateNotAllowed()
    problems = template.check_fields(fields)
    if problems:
        raise errors.FieldInvalid(errors={"fields": problems})
    return template
