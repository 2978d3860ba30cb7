"""The policy file format: one marshmallow schema per TOML level, every key described and bounded.

Longer than 300 lines on purpose: it is the one declaration of the file format (each key with
its description, default and bounds, as `policies/README.md` documents them), and the small
field and validator helpers above the schemas exist only to keep that declaration terse.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t

from limits import parse_many
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

from gateway.policy.urls import UrlRejected
from gateway.policy.urls import parse_url

OPERATIONS: frozenset[str] = frozenset({"create_draft", "recipient_view", "status"})

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

DEFAULT_RATE_LIMIT = "60/minute"
DEFAULT_MAX_LENGTH = 255
MAX_FIELD_LENGTH = 4000
MAX_PATTERN_LENGTH = 500


def _validation(fn: t.Callable[[str], None]) -> t.Callable[[str], None]:
    """Turn a `UrlRejected`-raising check into a marshmallow validator."""

    def check(value: str) -> None:
        try:
            fn(value)
        except UrlRejected as exc:
            raise ValidationError(str(exc)) from None

    return check


@_validation
def _check_return_url(value: str) -> None:
    url = parse_url(value)
    if url.scheme != "https" and not url.is_loopback:
        raise UrlRejected("must use https (http is only allowed for loopback hosts)")
    if url.has_query:
        raise UrlRejected("must not contain a query string")


@_validation
def _check_webhook_url(value: str) -> None:
    url = parse_url(value)
    if url.scheme != "https" and not url.is_loopback:
        raise UrlRejected("must use https (http is only allowed for loopback hosts)")


@_validation
def _check_origin(value: str) -> None:
    url = parse_url(value)
    if url.scheme != "https" and not url.is_loopback:
        raise UrlRejected("must use https (http is only allowed for loopback hosts)")
    if url.path or url.has_query:
        raise UrlRejected("must be an origin (scheme://host[:port]) without a path or query")


def _check_rate_limit(value: str) -> None:
    try:
        limits = parse_many(value)
    except ValueError:
        raise ValidationError(
            "not a valid rate limit (expected e.g. '60/minute;1000/hour')"
        ) from None
    if any(limit.amount < 1 for limit in limits):
        raise ValidationError("every limit must allow at least 1 request")


def _check_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        # strict: `10.0.0.1/8` is refused rather than silently widened to 10.0.0.0/8
        raise ValidationError(f"not an IPv4 or IPv6 address or CIDR network ({exc})") from None


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
    webhook_url = _string(
        "Where the gateway POSTs this partner's signed envelope events (Standard Webhooks).",
        load_default=None, validate=_check_webhook_url,
    )
    allowed_ips = _list(
        _string("An address or CIDR network, IPv4 or IPv6.", validate=_check_network),
        "Where the partner's key may be used from (the client address after PROXY_HOPS); "
        "absent: anywhere.",
        load_default=None,
        validate=[_length(1, 100), _check_unique],
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
