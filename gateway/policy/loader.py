"""Reading policy files: TOML parsing, schema validation and errors naming the file and key."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
import types
import typing as t

from marshmallow import ValidationError

from gateway.policy.model import FieldRule
from gateway.policy.model import Policy
from gateway.policy.model import TemplatePolicy
from gateway.policy.schema import NAME_RE
from gateway.policy.schema import PolicySchema

# keys that need no quoting in a dotted path (TOML's bare keys)
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class PolicyError(Exception):
    """One problem in one policy file, at one dotted key."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(path, key, message)
        self.path = path
        self.key = key
        self.message = message

    def __str__(self) -> str:
        if self.key:
            return f"{self.path}: {self.key}: {self.message}"
        return f"{self.path}: {self.message}"


class PolicyFileInvalid(Exception):
    """A policy file that cannot be used; `errors` lists every problem found in it."""

    def __init__(self, path: str, errors: list[PolicyError]) -> None:
        super().__init__(path, errors)
        self.path = path
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def _dotted(path: t.Sequence[str | int]) -> str:
    """`["templates", "a b", "choices", 2]` -> `templates."a b".choices[2]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def _flatten(source: str, messages: t.Any, path: tuple[str | int, ...] = ()) -> list[PolicyError]:
    """marshmallow's nested error dict -> one PolicyError per message, keyed by dotted path."""
    if isinstance(messages, dict):
        errors = []
        for key, node in messages.items():
            # schema-level errors belong to the table they were raised on; an unknown key
            # literally named "_schema" lands here too, and keeps its name
            own_level = key == "_schema" and node != ["unknown key"]
            errors.extend(_flatten(source, node, path if own_level else (*path, key)))
        return errors
    if isinstance(messages, list):
        errors = []
        for message in messages:
            errors.extend(_flatten(source, message, path))
        return errors
    return [PolicyError(source, _dotted(path), str(messages))]


_TOML_POSITION_RE = re.compile(r"\s*\((at line \d+, column \d+|at end of document)\)$")


def _toml_error(source: str, exc: tomllib.TOMLDecodeError) -> PolicyError:
    message = str(exc)
    position = _TOML_POSITION_RE.search(message)
    if position is None:
        return PolicyError(source, "", f"invalid TOML: {message}")
    reason = message[: position.start()]
    return PolicyError(source, "", f"invalid TOML {position[1]}: {reason[:1].lower()}{reason[1:]}")


def _field_rule(name: str, rule: dict[str, t.Any]) -> FieldRule:
    return FieldRule(
        name=name,
        required=rule["required"],
        max_length=rule["max_length"],
        pattern=re.compile(rule["pattern"]) if rule["pattern"] else None,
        choices=tuple(rule["choices"]) if rule["choices"] is not None else None,
        description=rule["description"],
    )


def _template(alias: str, spec: dict[str, t.Any]) -> TemplatePolicy:
    rules = {name: _field_rule(name, rule) for name, rule in spec["field_rules"].items()}
    return TemplatePolicy(
        alias=alias,
        template_id=spec["template_id"],
        role=spec["role"],
        email_subject=spec["email_subject"],
        fields=types.MappingProxyType(rules),
    )


def _build(data: dict[str, t.Any], source: str) -> Policy:
    templates = {alias: _template(alias, spec) for alias, spec in data["templates"].items()}
    return Policy(
        partner=data["partner"],
        display_name=data["display_name"],
        operations=frozenset(data["operations"]),
        rate_limit=data["rate_limit"],
        return_urls=tuple(data["return_urls"]),
        frame_ancestors=tuple(data["frame_ancestors"]),
        message_origins=tuple(data["message_origins"]),
        templates=types.MappingProxyType(templates),
        source=source,
        webhook_url=data["webhook_url"],
        allowed_ips=None if data["allowed_ips"] is None
        else tuple(ipaddress.ip_network(n) for n in data["allowed_ips"]),
    )


def parse_policy(raw: bytes, source: str) -> Policy:
    """Validate the bytes of a policy file named `source`; raise `PolicyFileInvalid`.

    :param raw: the file's content.
    :param source: the file's path; its stem must equal the `partner` key.
    """
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyFileInvalid(source, [PolicyError(source, "", "not valid UTF-8")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileInvalid(source, [_toml_error(source, exc)]) from None
    errors: list[PolicyError] = []
    data: dict[str, t.Any] = {}
    try:
        data = PolicySchema().load(document)
    except ValidationError as exc:
        errors = _flatten(source, exc.messages)
    stem = os.path.splitext(os.path.basename(source))[0]
    partner = document.get("partner")
    if isinstance(partner, str) and NAME_RE.fullmatch(partner) and partner != stem:
        errors.insert(0, PolicyError(source, "partner", f"must equal the file name ({stem!r})"))
    if errors:
        raise PolicyFileInvalid(source, errors)
    return _build(data, source)


def read_file(path: str) -> tuple[bytes, tuple[int, int, int]]:
    """The file's bytes and the stat key of exactly those bytes (fstat of the same handle)."""
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        return handle.read(), (st.st_mtime_ns, st.st_size, st.st_ino)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load and validate one policy file; raise `PolicyFileInvalid` naming every problem."""
    source = os.fspath(path)
    try:
        raw, _ = read_file(source)
    except OSError as exc:
        raise PolicyFileInvalid(
            source, [PolicyError(source, "", f"cannot read file ({exc.strerror})")]
        ) from None
    return parse_policy(raw, source)
