"""Loaded policies: immutable dataclasses that answer what a partner may do and send."""

from __future__ import annotations

import ipaddress
import re
import typing as t
from dataclasses import dataclass

from gateway.policy.urls import return_url_allowed


@dataclass(frozen=True)
class FieldRule:
    """The constraints on one template field, as the partner must satisfy them."""

    name: str
    required: bool
    max_length: int
    pattern: re.Pattern[str] | None
    choices: tuple[str, ...] | None
    description: str | None

    def check(self, value: object) -> list[str]:
        """Problems with `value` for this field; never echoes the value itself.

        An empty string counts as absent: it satisfies an optional field and fails a
        required one, and is not checked against pattern or choices.
        """
        if not isinstance(value, str):
            return ["must be a string"]
        if value == "":
            return ["is required"] if self.required else []
        if len(value) > self.max_length:
            return [f"must be at most {self.max_length} characters"]
        problems = []
        if self.pattern is not None and not self.pattern.fullmatch(value):
            problems.append("does not match the required pattern")
        if self.choices is not None and value not in self.choices:
            problems.append(f"must be one of: {', '.join(self.choices)}")
        return problems

    def public(self) -> dict[str, t.Any]:
        """The field as a partner may see it."""
        return {
            "required": self.required,
            "max_length": self.max_length,
            "pattern": self.pattern.pattern if self.pattern is not None else None,
            "choices": list(self.choices) if self.choices is not None else None,
            "description": self.description,
        }


@dataclass(frozen=True)
class TemplatePolicy:
    """One approved template: the upstream id and role stay here, partners only see the alias."""

    alias: str
    template_id: str
    role: str
    email_subject: str
    fields: t.Mapping[str, FieldRule]

    def check_fields(self, values: t.Mapping[str, object]) -> dict[str, list[str]]:
        """`{}` when `values` satisfy the policy, else `{field_name: [messages]}`.

        Covers unknown fields, missing required fields, non-string values, values too long,
        pattern mismatches and values outside `choices`. Messages never echo the value.
        """
        errors: dict[str, list[str]] = {}
        for name in values:
            if name not in self.fields:
                errors[name] = ["unknown field"]
        for name, rule in self.fields.items():
            if name not in values:
                if rule.required:
                    errors[name] = ["is required"]
                continue
            problems = rule.check(values[name])
            if problems:
                errors[name] = problems
        return errors

    def public(self) -> dict[str, t.Any]:
        """The template as GET /v1/templates shows it: never the template id or the role."""
        return {
            "alias": self.alias,
            "fields": {name: rule.public() for name, rule in self.fields.items()},
        }


@dataclass(frozen=True)
class Policy:
    """Everything one partner may do, loaded from `source`."""

    partner: str
    display_name: str
    operations: frozenset[str]
    rate_limit: str
    return_urls: tuple[str, ...]
    frame_ancestors: tuple[str, ...]
    message_origins: tuple[str, ...]
    templates: t.Mapping[str, TemplatePolicy]
    source: str
    webhook_url: str | None = None
    #: where the key may be used from; None: anywhere
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None

    def allows(self, operation: str) -> bool:
        """Whether the policy lists `operation`."""
        return operation in self.operations

    def ip_allowed(self, address: str | None) -> bool:
        """Whether a request from `address` may use this partner's key (False when unknown)."""
        if self.allowed_ips is None:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        # an IPv4 client reached over a dual-stack socket shows up as ::ffff:a.b.c.d
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_ips)

    def return_url_allowed(self, url: str) -> bool:
        """Whether `url` matches one of this policy's `return_urls`."""
        return return_url_allowed(url, self.return_urls)
