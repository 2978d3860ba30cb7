"""The request body: JSON, then the view's marshmallow schema (unknown fields refused)."""

from __future__ import annotations

import typing as t

from flask import request
from marshmallow import Schema
from marshmallow import ValidationError

from gateway import errors


def load_body(schema: Schema) -> dict[str, t.Any]:
    """Parse and validate the JSON body: 400 if unparseable, 422 with per-field errors if invalid."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise errors.MalformedJSON()
    try:
        return t.cast(dict[str, t.Any], schema.load(data))
    except ValidationError as exc:
        raise errors.ValidationFailed(errors=t.cast(dict, exc.normalized_messages())) from None
