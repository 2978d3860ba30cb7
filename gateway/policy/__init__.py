"""Partner policy files (`policies/<partner>.toml`): strict schema, immutable policies, hot reload.

A policy names everything a partner may do upstream: which operations, which templates (by
alias, never by raw id), which fields with which constraints, where signers may be sent back
to and which origins may frame the signing page. Loading is strict (unknown keys, bad URLs,
bad patterns are errors naming the file and the dotted key) and failing closed: a partner
whose file is missing or invalid gets no policy at all.

The pure URL matcher `return_url_allowed` lives here too, because it shares the strict URL
parser with the schema that validates `return_urls`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import tomllib
import types
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask
from flask import current_app
from limits import parse_many
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

log = logging.getLogger(__name__)

OPERATIONS: frozenset[str] = frozenset({"create_draft", "recipient_view", "status"})

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

DEFAULT_RATE_LIMIT = "60/minute"
DEFAULT_MAX_LENGTH = 255
MAX_FIELD_LENGTH = 4000
MAX_PATTERN_LENGTH = 500
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}

# keys that need no quoting in a dotted path (TOML's bare keys)
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------
# Errors


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


# ---------------------------------------------------------------------------
# Strict URL parsing, shared by the schema and by `return_url_allowed`


class _UrlRejected(ValueError):
    """The URL is not one the gateway is willing to reason about; the message says why."""


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str  # lower case; IPv6 in brackets, compressed
    port: int  # explicit or the scheme's default
    path: str  # as written, "" when absent
    has_query: bool

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


_DNS_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# WHATWG treats a host whose last label looks numeric as an IPv4 address (e.g. 0x7f.1).
_NUMERIC_LABEL_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_IPV6_NETLOC_RE = re.compile(r"\[([0-9a-f:.]+)\](?::([0-9]+))?")
_NETLOC_RE = re.compile(r"([^:\[\]]+)(?::([0-9]+))?")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_PERCENT_RE = re.compile(r"%(?![0-9a-fA-F]{2})")
_ENCODED_DOT_OR_SLASH_RE = re.compile(r"%(?:2e|2f|5c)", re.IGNORECASE)


def _check_chars(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise _UrlRejected(f"must be at most {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise _UrlRejected("must not contain backslashes")
    # urlsplit silently strips tabs, newlines and edge whitespace; refuse them before it can
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise _UrlRejected("must not contain whitespace, control or non-ASCII characters")


def _parse_host(host: str) -> str:
    if host.endswith("."):
        raise _UrlRejected("host must not end with a dot")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if (
        len(host) > 253
        or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels)
        or _NUMERIC_LABEL_RE.fullmatch(labels[-1])
    ):
        raise _UrlRejected("host is not a valid host name")
    return host


def _parse_netloc(netloc: str) -> tuple[str, int | None]:
    if "@" in netloc:
        raise _UrlRejected("must not contain user info (@)")
    netloc = netloc.lower()
    if match := _IPV6_NETLOC_RE.fullmatch(netloc):
        try:
            host = f"[{ipaddress.IPv6Address(match[1]).compressed}]"
        except ValueError:
            raise _UrlRejected("host is not a valid IPv6 address") from None
    elif match := _NETLOC_RE.fullmatch(netloc):
        host = _parse_host(match[1])
    else:
        raise _UrlRejected("host is missing or not valid")
    port = match[2]
    if port is None:
        if netloc.endswith(":"):
            raise _UrlRejected("port is not valid")
        return host, None
    if not _PORT_RE.fullmatch(port) or int(port) > 65535:
        raise _UrlRejected("port is not valid")
    return host, int(port)


def _check_path(path: str) -> None:
    segments = path.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise _UrlRejected("path must not contain '.' or '..' segments")
    if "" in segments[:-1]:
        raise _UrlRejected("path must not contain empty segments (//)")
    if _PERCENT_RE.search(path):
        raise _UrlRejected("path has a malformed percent-encoding")
    if _ENCODED_DOT_OR_SLASH_RE.search(path):
        raise _UrlRejected("path must not contain encoded '.', '/' or '\\' (%2e, %2f, %5c)")


def _parse_url(url: str) -> _Url:
    """Parse an absolute http(s) URL strictly, or raise `_UrlRejected` saying why."""
    if not isinstance(url, str):
        raise _UrlRejected("must be a string")
    _check_chars(url)
    if "#" in url:
        raise _UrlRejected("must not contain a fragment (#)")
    try:
        # urlsplit itself validates brackets (and, on some versions, the IPv6 inside them)
        parts = urlsplit(url)
    except ValueError:
        raise _UrlRejected("host is missing or not valid") from None
    if parts.scheme not in DEFAULT_PORTS or not url[len(parts.scheme) :].startswith("://"):
        raise _UrlRejected("must be an absolute http(s) URL")
    host, port = _parse_netloc(parts.netloc)
    _check_path(parts.path)
    return _Url(
        scheme=parts.scheme,
        host=host,
        port=DEFAULT_PORTS[parts.scheme] if port is None else port,
        path=parts.path,
        has_query="?" in url,
    )


def _path_within(candidate: str, allowed: str) -> bool:
    """True when `candidate` equals `allowed` or extends it at a `/` boundary."""
    candidate, allowed = candidate or "/", allowed or "/"
    if candidate == allowed:
        return True
    if not candidate.startswith(allowed):
        return False
    return allowed.endswith("/") or candidate[len(allowed)] == "/"


def return_url_allowed(candidate: str, allowed: t.Iterable[str]) -> bool:
    """Whether `candidate` may be used as a return URL given the policy's `allowed` URLs.

    Scheme, host and port must be equal (after default-port normalisation); the path must
    equal an allowed path or extend it at a `/` boundary; a query string is allowed. Anything
    the strict parser refuses (user info, fragments, backslashes, control characters,
    dot segments, encoded dots or slashes, odd hosts) is rejected outright.
    """
    try:
        url = _parse_url(candidate)
    except _UrlRejected:
        return False
    for entry in allowed:
        try:
            rule = _parse_url(entry)
        except _UrlRejected:
            continue
        same_origin = (url.scheme, url.host, url.port) == (rule.scheme, rule.host, rule.port)
        if same_origin and _path_within(url.path, rule.path):
            return True
    return False


# ---------------------------------------------------------------------------
# Schema: one Schema per level of the file


def _validation(fn: t.Callable[[str], None]) -> t.Callable[[str], None]:
    """Turn a `_UrlRejected`-raising check into a marshmallow validator."""

    def check(value: str) -> None:
        try:
            fn(value)
        except _UrlRejected as exc:
            raise ValidationError(str(exc)) from None

    return check


@_validation
def _check_return_url(value: str) -> None:
    url = _parse_url(value)
    if url.scheme != "https" and not url.is_loopback:
        raise _UrlRejected("must use https (http is only allowed for loopback hosts)")
    if url.has_query:
        raise _UrlRejected("must not contain a query string")


@_validation
def _check_origin(value: str) -> None:
    url = _parse_url(value)
    if url.scheme != "https" and not url.is_loopback:
        raise _UrlRejected("must use https (http is only allowed for loopback hosts)")
    if url.path or url.has_query:
        raise _UrlRejected("must be an origin (scheme://host[:port]) without a path or query")


def _check_rate_limit(value: str) -> None:
    try:
        limits = parse_many(value)
    except ValueError:
        raise ValidationError(
            "not a valid rate limit (expected e.g. '60/minute;1000/hour')"
        ) from None
    if any(limit.amount < 1 for limit in limits):
        raise ValidationError("every limit must allow at least 1 request")


def _check_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"not a valid regular expression ({exc.msg})") from None


def _check_unique(value: list[str]) -> None:
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        raise ValidationError(f"duplicate entries: {', '.join(duplicates)}")


def _length(low: int, high: int | None = None) -> validate.Length:
    if high is None:
        return validate.Length(min=low, error=f"must have at least {low} entries")
    return validate.Length(min=low, max=high, error=f"must have {low} to {high} entries")


def _fullmatch(regex: re.Pattern[str], error: str) -> t.Callable[[str], None]:
    """A validator on the WHOLE value (marshmallow's Regexp only anchors the start)."""

    def check(value: str) -> None:
        if not regex.fullmatch(value):
            raise ValidationError(error)

    return check


def _name(what: str, regex: re.Pattern[str]) -> t.Callable[[str], None]:
    return _fullmatch(regex, f"not a valid {what} (must match ^{regex.pattern}$)")


_MESSAGES = {
    "required": "required key is missing",
    "null": "must not be null",
    "too_large": "number too large",
}


def _string(description: str, **kwargs: t.Any) -> fields.String:
    return fields.String(
        metadata={"description": description},
        error_messages={**_MESSAGES, "invalid": "must be a string"},
        **kwargs,
    )


def _list(inner: fields.Field, description: str, **kwargs: t.Any) -> fields.List:
    return fields.List(
        inner,
        metadata={"description": description},
        error_messages={**_MESSAGES, "invalid": "must be an array"},
        **kwargs,
    )


class _StrictBoolean(fields.Boolean):
    """TOML has real booleans; refuse marshmallow's lenient "yes"/1/"on"."""

    def _deserialize(self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class _Table(fields.Dict):
    """A TOML table of named entries whose errors are keyed by entry name.

    marshmallow reports mapping errors as `{name: {"key": ..., "value": ...}}`; flatten that
    so error paths read like the file (`templates.membership.role`).
    """

    def __init__(self, keys: fields.Field, values: fields.Field, description: str, **kwargs: t.Any):
        super().__init__(
            keys=keys,
            values=values,
            metadata={"description": description},
            error_messages={**_MESSAGES, "invalid": "must be a table"},
            **kwargs,
        )

    def _deserialize(self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            if not isinstance(exc.messages, dict):
                raise
            raise ValidationError(
                {name: node.get("key") or node.get("value") for name, node in exc.messages.items()}
            ) from None


class _StrictSchema(Schema):
    """Unknown keys are errors at every level (marshmallow 4's default, stated for the reader)."""

    error_messages = {"unknown": "unknown key", "type": "must be a table"}


class FieldSchema(_StrictSchema):
    """`[templates.<alias>.fields.<label>]`: constraints on one DocuSign text tab."""

    required = _StrictBoolean(
        load_default=False,
        metadata={"description": "The partner must send a non-empty value."},
        error_messages={**_MESSAGES, "invalid": "must be true or false"},
    )
    max_length = fields.Integer(
        strict=True,
        load_default=DEFAULT_MAX_LENGTH,
        validate=validate.Range(
            min=1, max=MAX_FIELD_LENGTH, error=f"must be between 1 and {MAX_FIELD_LENGTH}"
        ),
        metadata={"description": "Longest accepted value, in characters."},
        error_messages={**_MESSAGES, "invalid": "must be an integer"},
    )
    pattern = _string(
        "Regular expression the whole value must match (re.fullmatch).",
        load_default=None,
        validate=[
            validate.Length(
                min=1, max=MAX_PATTERN_LENGTH, error=f"must be 1 to {MAX_PATTERN_LENGTH} characters"
            ),
            _check_regex,
        ],
    )
    choices = _list(
        _string("One accepted value.", validate=validate.Length(min=1, error="must not be empty")),
        "The only accepted values.",
        load_default=None,
        validate=[_length(1, 100), _check_unique],
    )
    description = _string(
        "Shown to the partner by GET /v1/templates.",
        load_default=None,
        validate=validate.Length(min=1, max=500, error="must be 1 to 500 characters"),
    )

    @validates_schema
    def _choices_fit(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        """Every choice must itself pass max_length and pattern, or it could never be sent."""
        choices = data.get("choices") or []
        pattern, max_length = data.get("pattern"), data["max_length"]
        errors: dict[int, list[str]] = {}
        for index, choice in enumerate(choices):
            if len(choice) > max_length:
                errors.setdefault(index, []).append(f"longer than max_length ({max_length})")
            if pattern is not None and not re.fullmatch(pattern, choice):
                errors.setdefault(index, []).append("does not match pattern")
        if errors:
            raise ValidationError({"choices": errors})


class TemplateSchema(_StrictSchema):
    """`[templates.<alias>]`: one approved DocuSign template."""

    template_id = _string(
        "The DocuSign template GUID; never shown to the partner.",
        required=True,
        validate=_fullmatch(GUID_RE, "not a GUID (8-4-4-4-12 hex digits)"),
    )
    role = _string(
        "The template role the signer fills; never shown to the partner.",
        required=True,
        validate=validate.Length(min=1, max=100, error="must be 1 to 100 characters"),
    )
    email_subject = _string(
        "Subject of the envelope (DocuSign's limit: 100 characters).",
        required=True,
        validate=validate.Length(min=1, max=100, error="must be 1 to 100 characters"),
    )
    # `fields` would shadow Schema.fields, hence the attribute name
    field_rules = _Table(
        _string("The DocuSign text tab label.", validate=_name("field name", FIELD_NAME_RE)),
        fields.Nested(FieldSchema),
        "The text tabs the partner may fill, by tab label.",
        data_key="fields",
        load_default=dict,
        validate=validate.Length(max=50, error="must have at most 50 fields"),
    )


class PolicySchema(_StrictSchema):
    """The whole `policies/<partner>.toml` file."""

    partner = _string(
        "The partner's name; must equal the file name without .toml.",
        required=True,
        validate=_name("partner name", NAME_RE),
    )
    display_name = _string(
        "Human-readable name for the admin pages and the audit trail.",
        required=True,
        validate=validate.Length(min=1, max=100, error="must be 1 to 100 characters"),
    )
    operations = _list(
        _string(
            "An operation.",
            validate=validate.OneOf(
                sorted(OPERATIONS), error=f"must be one of: {', '.join(sorted(OPERATIONS))}"
            ),
        ),
        "What the partner may do upstream.",
        required=True,
        validate=[_length(1), _check_unique],
    )
    rate_limit = _string(
        "Per-partner limits in `limits` notation, e.g. '60/minute;1000/hour'.",
        load_default=DEFAULT_RATE_LIMIT,
        validate=_check_rate_limit,
    )
    return_urls = _list(
        _string("An allowed return URL (prefix).", validate=_check_return_url),
        "Where signers may be sent back to; required when recipient_view is allowed.",
        load_default=list,
        validate=validate.Length(max=20, error="must have at most 20 entries"),
    )
    frame_ancestors = _list(
        _string("An origin allowed to frame the signing page.", validate=_check_origin),
        "Origins allowed to embed the signing page (DocuSign frameAncestors).",
        load_default=list,
        validate=validate.Length(max=10, error="must have at most 10 entries"),
    )
    message_origins = _list(
        _string("An origin that receives signing events.", validate=_check_origin),
        "Origins DocuSign posts signing-session messages to (DocuSign messageOrigins).",
        load_default=list,
        validate=validate.Length(max=10, error="must have at most 10 entries"),
    )
    templates = _Table(
        _string("The template alias partners use.", validate=_name("template alias", NAME_RE)),
        fields.Nested(TemplateSchema),
        "The approved templates, by alias.",
        required=True,
        validate=validate.Length(min=1, max=100, error="must have 1 to 100 templates"),
    )

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _return_urls_for_recipient_view(
        self, data: dict[str, t.Any], original: dict[str, t.Any], **kwargs: t.Any
    ) -> None:
        # judged on the input, so an invalid entry is not also reported as "missing"
        if "recipient_view" in data.get("operations", ()) and original.get("return_urls") in (
            None,
            [],
        ):
            raise ValidationError(
                "required (at least 1 entry) when operations include recipient_view",
                "return_urls",
            )


# ---------------------------------------------------------------------------
# Loaded policies


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

    def allows(self, operation: str) -> bool:
        """Whether the policy lists `operation`."""
        return operation in self.operations

    def return_url_allowed(self, url: str) -> bool:
        """Whether `url` matches one of this policy's `return_urls`."""
        return return_url_allowed(url, self.return_urls)


# ---------------------------------------------------------------------------
# Loading


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


def _build(data: dict[str, t.Any], source: str) -> Policy:
    templates = {
        alias: TemplatePolicy(
            alias=alias,
            template_id=spec["template_id"],
            role=spec["role"],
            email_subject=spec["email_subject"],
            fields=types.MappingProxyType(
                {
                    name: FieldRule(
                        name=name,
                        required=rule["required"],
                        max_length=rule["max_length"],
                        pattern=re.compile(rule["pattern"]) if rule["pattern"] else None,
                        choices=tuple(rule["choices"]) if rule["choices"] is not None else None,
                        description=rule["description"],
                    )
                    for name, rule in spec["field_rules"].items()
                }
            ),
        )
        for alias, spec in data["templates"].items()
    }
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


def _read(path: str) -> tuple[bytes, tuple[int, int, int]]:
    """The file's bytes and the stat key of exactly those bytes (fstat of the same handle)."""
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        return handle.read(), (st.st_mtime_ns, st.st_size, st.st_ino)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load and validate one policy file; raise `PolicyFileInvalid` naming every problem."""
    source = os.fspath(path)
    try:
        raw, _ = _read(source)
    except OSError as exc:
        raise PolicyFileInvalid(
            source, [PolicyError(source, "", f"cannot read file ({exc.strerror})")]
        ) from None
    return parse_policy(raw, source)


# ---------------------------------------------------------------------------
# The store: one stat per request, reload on change, fail closed


_MISSING = (-1, -1, -1)


class PolicyStore:
    """The policies of one directory, reloaded when a file changes, without a restart."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self._cache: dict[str, tuple[tuple[int, int, int], Policy | None]] = {}
        self._lock = threading.Lock()

    def path_for(self, partner: str) -> str:
        """The policy file that would hold `partner`'s policy."""
        return os.path.join(self.directory, f"{partner}.toml")

    def get(self, partner: str) -> Policy | None:
        """`partner`'s current policy, or None when its file is missing or invalid.

        Costs one `os.stat` when nothing changed; a change of (mtime, size, inode) triggers a
        reload, and its failure is logged once until the file changes again.
        """
        if not isinstance(partner, str) or not NAME_RE.fullmatch(partner):
            return None
        path = self.path_for(partner)
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = _MISSING
        cached = self._cache.get(partner)
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:
            cached = self._cache.get(partner)
            if cached is not None and cached[0] == key:
                return cached[1]
            key, policy = self._load(partner, path)
            self._cache[partner] = (key, policy)
            return policy

    def _load(self, partner: str, path: str) -> tuple[tuple[int, int, int], Policy | None]:
        try:
            raw, key = _read(path)
        except FileNotFoundError:
            log.warning("no policy file for partner %r at %s: denying everything", partner, path)
            return _MISSING, None
        except OSError as exc:
            log.error("cannot read policy file %s (%s): denying everything", path, exc.strerror)
            return _MISSING, None
        try:
            policy = parse_policy(raw, path)
        except PolicyFileInvalid as exc:
            log.error("invalid policy file, partner %r denied everything:\n%s", partner, exc)
            return key, None
        log.info("loaded policy for partner %r from %s", partner, path)
        return key, policy

    def names(self) -> list[str]:
        """Partner names that have a policy file (valid or not), sorted."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return []
        stems = (name[: -len(".toml")] for name in entries if name.endswith(".toml"))
        return sorted(stem for stem in stems if NAME_RE.fullmatch(stem))

    def check_all(self) -> tuple[dict[str, Policy], list[PolicyFileInvalid]]:
        """Load every `*.toml` in the directory: the valid policies and every invalid file."""
        try:
            entries = sorted(os.listdir(self.directory))
        except OSError as exc:
            error = PolicyError(self.directory, "", f"cannot list directory ({exc.strerror})")
            return {}, [PolicyFileInvalid(self.directory, [error])]
        valid: dict[str, Policy] = {}
        invalid: list[PolicyFileInvalid] = []
        for entry in entries:
            path = os.path.join(self.directory, entry)
            if not entry.endswith(".toml") or not os.path.isfile(path):
                continue
            try:
                policy = load_policy(path)
            except PolicyFileInvalid as exc:
                invalid.append(exc)
            else:
                valid[policy.partner] = policy
        return valid, invalid


def init_app(app: Flask) -> None:
    """Attach a `PolicyStore` for `POLICY_DIR` (relative paths from the working directory)."""
    directory = os.path.join(os.getcwd(), app.config["POLICY_DIR"])
    app.extensions["policies"] = PolicyStore(directory)


def get_policies() -> PolicyStore:
    """The current app's `PolicyStore`."""
    return t.cast(PolicyStore, current_app.extensions["policies"])
