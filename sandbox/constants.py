"""Fixed identities, defaults and every unconfirmed ([U]) choice of the emulator.

Each ``# [U]`` constant is a guess about real DocuSign behaviour that
``docs/docusign-facts.md`` could not confirm. Keep each guess in exactly one
place here, so that a real call that shows otherwise is a one-line edit.
"""

from __future__ import annotations

# --- seeded identities -----------------------------------------------------

DEMO_INTEGRATION_KEY = "8a0f3c2e-4b1d-4e6f-9c7a-1d2e3f4a5b01"
DEMO_USER_ID = "3c9e1f7a-2d4b-4a8c-b6e5-7f1a2b3c4d01"
DEMO_ACCOUNT_ID = "b7e4d2c1-9a8f-4e3d-8c2b-1a0f9e8d7c01"
DEMO_ORGANIZATION_ID = "e1d2c3b4-a5f6-4e7d-9c8b-7a6f5e4d3c01"
DEMO_USER_NAME = "Gateway System Sender"
DEMO_USER_GIVEN_NAME = "Gateway"
DEMO_USER_FAMILY_NAME = "System Sender"
DEMO_USER_EMAIL = "sender@sandbox.example"
DEMO_ACCOUNT_NAME = "Sandbox Demo Account"

MEMBERSHIP_TEMPLATE_ID = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
NDA_TEMPLATE_ID = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a02"
INTERNAL_TEMPLATE_ID = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a03"

DEMO_COUNTERSIGNER_NAME = "Grace Hopper"
DEMO_COUNTERSIGNER_EMAIL = "grace.hopper@sandbox.example"
DEMO_LEGAL_NAME = "Owner Legal Team"
DEMO_LEGAL_EMAIL = "legal@sandbox.example"

#: templates present after start and after ``POST /_sandbox/reset``, in the body shape of
#: ``POST /_sandbox/templates``: recipients in routing order; a signer without name/email
#: is a placeholder role filled through ``templateRoles``. A text tab's ``tooltip`` is the
#: readable text DocuSign shows the signer (the ``tabLabel`` is the data label).
SEED_TEMPLATES = (
    {
        "templateId": MEMBERSHIP_TEMPLATE_ID,
        "name": "Membership agreement",
        "emailSubject": "Please sign: Membership agreement",
        "recipients": [
            {
                "roleName": "Member",
                "type": "signer",
                "routingOrder": "1",
                "textTabs": [
                    {"tabLabel": "member_number", "tooltip": "Member number", "required": "true"},
                    {"tabLabel": "plan", "tooltip": "Membership plan", "required": "true"},
                    {"tabLabel": "start_date", "tooltip": "Start date", "required": "false"},
                ],
            },
            {
                "roleName": "Countersigner",
                "type": "signer",
                "routingOrder": "2",
                "name": DEMO_COUNTERSIGNER_NAME,
                "email": DEMO_COUNTERSIGNER_EMAIL,
            },
            {
                "roleName": "Legal",
                "type": "carbonCopy",
                "routingOrder": "3",
                "name": DEMO_LEGAL_NAME,
                "email": DEMO_LEGAL_EMAIL,
            },
        ],
    },
    {
        "templateId": NDA_TEMPLATE_ID,
        "name": "Mutual NDA",
        "emailSubject": "Please sign: Mutual NDA",
        "recipients": [
            {
                "roleName": "Signer",
                "type": "signer",
                "routingOrder": "1",
                "textTabs": [
                    {"tabLabel": "company", "tooltip": "Company", "required": "true"},
                    {"tabLabel": "title", "tooltip": "Job title", "required": "false"},
                ],
            }
        ],
    },
    {
        "templateId": INTERNAL_TEMPLATE_ID,
        "name": "Internal HR form",
        "emailSubject": "Please sign: Internal HR form",
        "recipients": [
            {
                "roleName": "Employee",
                "type": "signer",
                "routingOrder": "1",
                "textTabs": [{"tabLabel": "salary", "tooltip": "Annual salary", "required": "true"}],
            }
        ],
    },
)

# --- configuration defaults (app.config keys) -------------------------------

DEFAULT_CONFIG = {
    "SANDBOX_AUDIENCE": "account-d.docusign.com",
    # [U] access token lifetime; docs/docusign-facts.md §1 says 1 hour "C-ish"
    "SANDBOX_TOKEN_TTL": 3600,
    # signing URL lifetime: 5 minutes, docs/docusign-facts.md §5 [C]
    "SANDBOX_SIGNING_URL_TTL": 300,
    # hourly API limit per account, docs/docusign-facts.md §8 [C]
    "SANDBOX_HOURLY_LIMIT": 3000,
    # burst limit per SANDBOX_BURST_WINDOW seconds on demo, docs/docusign-facts.md §8 [C]
    "SANDBOX_BURST_LIMIT": 200,
    "SANDBOX_BURST_WINDOW": 30,
    # [U] per-envelope polling: "no more than one status poll per envelope every
    # 15 minutes" (docs/docusign-facts.md §8); counts successful GETs of an envelope or
    # of its recipients inside a sliding window
    "SANDBOX_ENVELOPE_POLL_LIMIT": 1,
    "SANDBOX_ENVELOPE_POLL_WINDOW": 900,
    # [U] Connect retry schedule; the real one is minutes to days apart (§9)
    "SANDBOX_CONNECT_RETRY_DELAYS": (1, 2, 4),
    # seconds the emulator waits for a Connect listener's answer
    "SANDBOX_CONNECT_TIMEOUT": 10,
    # None: derive from request.host_url (e.g. http://127.0.0.1:8090)
    "SANDBOX_BASE_URI": None,
    # None: same as the base URI (the emulator serves OAuth and REST together)
    "SANDBOX_AUTH_BASE_URL": None,
}

# --- JWT grant (docs/docusign-facts.md §1) ----------------------------------------------

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_ALGORITHM = "RS256"
REQUIRED_SCOPES = ("signature", "impersonation")
MAX_KEYS_PER_INTEGRATION_KEY = 5
# [U] longest accepted assertion lifetime (exp - now). Third parties say 1 h,
# code-examples-python uses 4000 s, so accept up to 4000 s.
MAX_ASSERTION_LIFETIME = 4000
# [U] error_description when exp - now exceeds MAX_ASSERTION_LIFETIME
ASSERTION_TOO_LONG_DESCRIPTION = "no_valid_keys_or_signatures"
# [U] clock skew tolerated on exp / nbf (seconds); the emulator allows none
CLOCK_SKEW_LEEWAY = 0
# [U] error for an assertion whose scope lacks "signature impersonation"
SCOPE_MISSING_ERROR = "invalid_scope"
# [U] error for a token request missing grant_type or assertion (RFC 6749)
MISSING_PARAMETER_ERROR = "invalid_request"
# [U] error for /oauth/userinfo with a missing, unknown or expired token
USERINFO_AUTH_ERROR_STATUS = 401
USERINFO_AUTH_ERROR = "invalid_token"
# [U] some payloads may carry the string "true"; the SDK keeps it as-is (§2)
USERINFO_IS_DEFAULT = True

# --- REST error codes and statuses (docs/docusign-facts.md §7) --------------------------

# [U] 401 for a missing / unknown / expired bearer token
AUTH_FAILED_STATUS = 401
AUTH_FAILED_CODE = "USER_AUTHENTICATION_FAILED"
# [U] accountId in the path is not the token user's account
ACCOUNT_MISMATCH_STATUS = 400
ACCOUNT_MISMATCH_CODE = "USER_LACKS_MEMBERSHIP"
# [U] status for an unknown envelope id (most DocuSign errors are 400)
ENVELOPE_NOT_FOUND_STATUS = 404
ENVELOPE_NOT_FOUND_CODE = "ENVELOPE_DOES_NOT_EXIST"
# [U] unknown templateId on create
TEMPLATE_NOT_FOUND_CODE = "TEMPLATE_ID_INVALID"
# [U] status of that error on ``GET /templates/{templateId}``: the OpenAPI document
# lists only 200 and 400 for Templates_GetTemplate
TEMPLATE_NOT_FOUND_STATUS = 400
# [U] templateRoles do not match the template's roles (unknown, missing, twice)
ROLE_MISMATCH_CODE = "TEMPLATE_ROLE_MISMATCH"
# [U] a placeholder recipient (no name/email in the template) that templateRoles does not
# fill is an error (ROLE_MISMATCH_CODE); False would drop it from the envelope instead.
# Preset recipients (name and email in the template) are kept when not named.
PLACEHOLDER_ROLE_REQUIRED = True
# a recipient view for a signer whose routing order has not come yet. Real code and
# message, seen in public client code handling DocuSign's answer
RECIPIENT_NOT_IN_SEQUENCE_CODE = "RECIPIENT_NOT_IN_SEQUENCE"
RECIPIENT_NOT_IN_SEQUENCE_MESSAGE = "The token for an out of sequence recipient cannot be generated."
# recipient view returnUrl: the OpenAPI document (recipientViewRequest.returnUrl) says
# "Maximum Length: 470 characters. If the returnUrl exceeds this limit, the user is
# redirected to a truncated URL".
RETURN_URL_MAX = 470
# [U] as documented: truncate (the emulator is no stricter than DocuSign). True refuses
# with INVALID_REQUEST_PARAMETER instead, should a real call show DocuSign refusing.
RETURN_URL_TOO_LONG_REFUSED = False
# [U] textTabs[].tabLabel that the template does not have (real DocuSign may
# silently ignore unknown labels; the emulator rejects them to catch typos)
UNKNOWN_TAB_LABEL_CODE = "INVALID_TAB_LABEL"
# [U] invalid recipient email / empty recipient name on create
INVALID_EMAIL_CODE = "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT"
INVALID_NAME_CODE = "INVALID_USERNAME_FOR_RECIPIENT"
# [U] real DocuSign is believed to default a missing create status to
# "created"; the emulator insists on an explicit "created" or "sent"
CREATE_STATUS_REQUIRED = True
# [U] recipient view on an envelope that is not sent/delivered (§4)
VIEW_INVALID_STATUS_CODE = "ENVELOPE_INVALID_STATUS"
# [U] PUT status "sent" / "created" on an envelope in the wrong state
UPDATE_INVALID_STATUS_CODE = "ENVELOPE_INVALID_STATUS"
# [U] PUT status "voided" on a draft or a completed/declined/voided envelope
VOID_INVALID_STATUS_CODE = "ENVELOPE_CANNOT_VOID_INVALID_STATE"
# [U] unknown route under /restapi, and a known route with the wrong method
UNKNOWN_ROUTE_STATUS = 404
UNKNOWN_ROUTE_CODE = "RESOURCE_NOT_FOUND"
METHOD_NOT_ALLOWED_STATUS = 405
METHOD_NOT_ALLOWED_CODE = "METHOD_NOT_ALLOWED"
# [U] envelope create answers 201; update answers 200 (§3, §4)
CREATE_ENVELOPE_STATUS = 201
UPDATE_ENVELOPE_STATUS = 200
# [U] recipient view answers 201 (§5)
RECIPIENT_VIEW_STATUS = 201

# --- listStatusChanges (GET /envelopes) ----------------------------------------

# [U] ``custom_field`` reads ``<name>=<value>`` and matches a text custom field exactly
# (name and value case-sensitive)
LIST_CUSTOM_FIELD_SEPARATOR = "="
# ``status`` values listStatusChanges accepts (OpenAPI Envelopes_GetEnvelopes); ``any``
# matches every status. [U] any other value is 400 INVALID_REQUEST_PARAMETER
LIST_STATUS_VALUES = (
    "any",
    "completed",
    "created",
    "declined",
    "deleted",
    "delivered",
    "processing",
    "sent",
    "signed",
    "timedout",
    "voided",
)
# [U] an empty result leaves the ``envelopes`` key out instead of sending []
LIST_OMITS_EMPTY_ENVELOPES = True
# [U] wording of the error when neither from_date nor envelope_ids/transaction_ids is given
LIST_FROM_DATE_REQUIRED_MESSAGE = (
    "The from_date parameter is required unless envelope_ids or transaction_ids are given."
)

UNKNOWN_RECIPIENT_CODE = "UNKNOWN_ENVELOPE_RECIPIENT"
INVALID_PARAMETER_CODE = "INVALID_REQUEST_PARAMETER"
INVALID_BODY_CODE = "INVALID_REQUEST_BODY"
INVALID_BODY_MESSAGE = "The request body is missing or improperly formatted."
INVALID_PARAMETER_PREFIX = "The request contained at least one invalid parameter. "
UNSPECIFIED_ERROR_CODE = "UNSPECIFIED_ERROR"

# --- rate limits (docs/docusign-facts.md §8) --------------------------------------------

# [U] HTTP status of the three limit errors (newer behaviour; older was 400)
RATE_LIMIT_STATUS = 429
HOURLY_LIMIT_CODE = "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"
BURST_LIMIT_CODE = "BURST_APIINVOCATION_LIMIT_EXCEEDED"
POLL_LIMIT_CODE = "Hourly_Envelope_Polling_Limit_Exceeded"
# [U] whether the three limit errors carry ``Retry-After``. DocuSign documents only the
# X-RateLimit-Limit/-Remaining/-Reset and X-BurstLimit-Limit/-Remaining headers
# (developers.docusign.com/platform/resource-limits, esign101/rules-and-limits); no
# DocuSign page, SDK or issue seen shows a Retry-After on these errors. The emulator
# therefore sends none: a Retry-After of up to 900 s made urllib3 (under the official
# Python SDK) sleep that long before retrying a GET, which real DocuSign would not cause.
# Clients wait for X-RateLimit-Reset (hourly) or back off on their own (burst, polling).
RATE_LIMIT_SENDS_RETRY_AFTER = False

# [U] envelopes expire this many days after sending (account default)
ENVELOPE_EXPIRE_DAYS = 120

# --- recipient view / signing (docs/docusign-facts.md §5) --------------------------------

VIEWABLE_STATUSES = ("sent", "delivered")
# recipient types the emulator models, as keys of the ``recipients`` object
RECIPIENT_TYPES = {"signer": "signers", "carbonCopy": "carbonCopies"}
# [U] a carbon copy whose routing order comes is ``sent`` and never holds up later
# orders. False: it becomes ``completed`` when the envelope completes; True: at once
# (recipient-sent then recipient-completed)
CARBON_COPY_COMPLETES_WHEN_SENT = False
TERMINAL_STATUSES = ("completed", "declined", "voided")
SIGNING_EVENTS = {"sign": "signing_complete", "decline": "decline", "cancel": "cancel"}
SIGNING_PATH_PREFIX = "/Signing/MTRedeem/v1/"

# --- Connect (docs/docusign-facts.md §9) ------------------------------------------------

CONNECT_API_VERSION = "v2.1"
# [U] configurationId is an integer in real messages; the emulator has one
CONNECT_CONFIGURATION_ID = 10501
CONNECT_SIGNATURE_HEADER = "X-DocuSign-Signature-{n}"
# [U] header sent next to the signatures
CONNECT_DIGEST_HEADER = ("X-Authorization-Digest", "HMACSHA256")
# [U] the envelope summary includes recipients and custom fields
CONNECT_INCLUDE_RECIPIENTS = True
CONNECTED_STATUSES = ("sent", "delivered", "completed", "declined", "voided")
# recipient status changes that post ``recipient-<status>`` (§9 event names)
CONNECTED_RECIPIENT_STATUSES = ("sent", "delivered", "completed", "declined")

# --- formats -----------------------------------------------------------------

# DocuSign writes 7 fractional digits, e.g. 2019-11-05T11:01:37.5966414Z (§3)
DATETIME_FRACTION_DIGITS = 7

# --- the control API's endpoint names (calls and faults) ---------------------

ENDPOINT_NAMES = (
    "token",
    "userinfo",
    "create_envelope",
    "get_envelope",
    "update_envelope",
    "list_recipients",
    "recipient_view",
    "list_status_changes",
    "get_template",
)
OAUTH_ENDPOINTS = ("token", "userinfo")
FAULT_MODES = ("status", "delay", "drop")

__all__ = [name for name in dir() if name.isupper()]
