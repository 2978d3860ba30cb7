"""Request and response bodies of the partner API, as marshmallow schemas.

The views validate with these and `/openapi.json` is generated from them, so the
documented contract and the enforced one cannot drift apart. Unknown fields are
rejected (marshmallow's default `RAISE`).
"""

from __future__ import annotations

from marshmallow import Schema
from marshmallow import fields
from marshmallow import validate

from gateway.services.envelopes import SIGNER_RANK
from gateway.services.envelopes import STATUSES as ENVELOPE_STATUSES


class SignerSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"description": "The signer's full name."})
    email = fields.Email(required=True, validate=validate.Length(max=100),
                         metadata={"description": "The signer's email address."})


class CreateEnvelopeSchema(Schema):
    template = fields.String(
        required=True, validate=validate.Length(min=1, max=63),
        metadata={"description": "A template alias from the partner's policy (GET /v1/templates)."},
    )
    signer = fields.Nested(SignerSchema, required=True)
    fields_ = fields.Dict(
        data_key="fields", attribute="fields", keys=fields.String(), values=fields.Raw(),
        load_default=dict,
        metadata={"description": "Values for the template's fields, as the policy lists them; "
                                 "every value is a string."},
    )
    reference = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=255),
        metadata={"description": "The partner's own reference, echoed back."},
    )


class EnvelopeCreatedSchema(Schema):
    envelope_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "Always `created` (a draft)."})
    template = fields.String(required=True)
    reference = fields.String(allow_none=True)
    created_at = fields.String(required=True, metadata={"description": "RFC 3339 UTC time."})


class RecipientViewRequestSchema(Schema):
    return_url = fields.String(
        required=True, validate=validate.Length(min=1, max=2048),
        metadata={"description": "Where the signer's browser returns; must match one of the "
                                 "policy's return_urls (scheme, host, port exact; path prefix)."},
    )


class RecipientViewSchema(Schema):
    url = fields.String(required=True, metadata={"description": "Single-use signing URL for an iframe."})
    expires_at = fields.String(required=True, metadata={"description": "RFC 3339 UTC time."})


class EnvelopeStatusSchema(Schema):
    envelope_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ENVELOPE_STATUSES), metadata={
        "description": "The envelope's DocuSign status."})
    signer_status = fields.String(allow_none=True, validate=validate.OneOf(tuple(SIGNER_RANK)),
                                  metadata={"description": "The partner's own signer's recipient "
                                            "status; `completed` while the envelope may still wait "
                                            "for the owner's countersignature."})
    template = fields.String(required=True)
    reference = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    last_event = fields.String(allow_none=True, metadata={
        "description": "The last signing event seen (e.g. `signing_complete`) or Connect event."})


class TemplateFieldSchema(Schema):
    required = fields.Boolean(required=True)
    max_length = fields.Integer(required=True)
    pattern = fields.String(allow_none=True)
    choices = fields.List(fields.String(), allow_none=True)
    description = fields.String(allow_none=True)


class TemplateSchema(Schema):
    alias = fields.String(required=True)
    fields_ = fields.Dict(keys=fields.String(), values=fields.Nested(TemplateFieldSchema),
                          data_key="fields", attribute="fields",
                          metadata={"description": "Field name (the tab label) to its constraints."})


class TemplateListSchema(Schema):
    templates = fields.List(fields.Nested(TemplateSchema), required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details: the only error body the gateway ever sends."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"description": "Stable snake_case error code."})
    request_id = fields.String(allow_none=True)
    errors = fields.Dict(metadata={"description": "Per-field messages, for validation errors."})
