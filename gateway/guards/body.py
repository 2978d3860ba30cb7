"""The request body: bounded JSON, then the view's marshmallow schema (unknown fields refused).

Python's json module recurses once per nesting level, so a body of a few thousand `[`
raises RecursionError (a 500) instead of a parse error. `parse_json` counts the nesting
first, outside strings, and refuses anything deeper than `MAX_JSON_DEPTH`; the size is
bounded before that by MAX_CONTENT_LENGTH (partner API) or CONNECT_MAX_BYTES (Connect).
"""

from __future__ import annotations

import json
import re
import typing as t

from flask import request
from marshmallow import Schema
from marshmallow import ValidationError

from gateway import errors

#: deeper than anything the partner API or a Connect JSON SIM message nests (about 8)
MAX_JSON_DEPTH = 64
# a string (skipped whole, escapes included) or one bracket
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _too_deep(raw: bytes, limit: int) -> bool:
    depth = 0
    for match in _TOKENS.finditer(raw):
        char = match.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def parse_json(raw: bytes, *, what: str = "The request body") -> t.Any:
    """Parse `raw` as JSON with its nesting bounded: 400 `malformed_json` otherwise."""
    if _too_deep(raw, MAX_JSON_DEPTH):
        raise errors.MalformedJSON(f"{what} nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.MalformedJSON(f"{what} is not valid JSON.") from None


def load_json_object() -> dict[str, t.Any]:
    """The request's JSON object body: 400 `malformed_json` naming what is wrong."""
    if not request.is_json:
        sent = request.mimetype or "none"
        raise errors.MalformedJSON(
            "The request body must be a JSON object sent with Content-Type: application/json;"
            f" this request's Content-Type is {sent[:80]!r}.")
    data = parse_json(request.get_data(cache=True))
    if not isinstance(data, dict):
        raise errors.MalformedJSON("The request body must be a JSON object.")
    return data


def load_body(schema: Schema) -> dict[str, t.Any]:
    """Parse and validate the JSON body: 400 if unparseable, 422 with per-field errors if invalid."""
    data = load_json_object()
    try:
        return t.cast(dict[str, t.Any], schema.load(data))
    except ValidationError as exc:
        raise errors.ValidationFailed(errors=t.cast(dict, exc.normalized_messages())) from None
