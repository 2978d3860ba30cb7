"""Schemathesis against `/openapi.json`, through the WSGI app: no 5xx, every answer as documented.

Each documented operation gets a bounded number of generated requests, valid
(positive) and schema-breaking (negative), with a real partner key; the status and
recipient-view operations also run against a real envelope so they get past 404.
Examples are derandomized, so CI sees the same requests every run.
"""

from __future__ import annotations

import typing as t

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import ignored_auth
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import response_headers_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.conftest import as_public_host

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth]
#: generated requests per operation and mode: enough to reach every documented branch,
#: few enough to keep the whole run well under a minute
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def _run(strategy: t.Any, examples: int, headers: dict[str, str]) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    def exercise(case: t.Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    exercise()


@pytest.fixture
def api(app: t.Any) -> t.Any:
    # the gateway answers only for PUBLIC_URL's host; schemathesis's client names localhost
    # the fuzzer's invalid keys all come from one address: keep them under its anonymous limit
    app.config["ANONYMOUS_RATE_LIMIT"] = "100000/minute"
    return schemathesis.openapi.from_wsgi("/openapi.json", as_public_host(app))


def _operations(api: t.Any) -> list[t.Any]:
    return [result.ok() for result in api.get_all_operations()]


def _modes(operation: t.Any) -> list[GenerationMode]:
    # an operation without inputs has nothing to break: only valid requests exist
    inputs = (operation.path_parameters, operation.headers, operation.query, operation.body)
    if any(len(part) for part in inputs):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def test_every_operation_survives_fuzzing(api, other_partner):
    # "other" has a generous rate limit, so the partner operations are not all 429s
    envelope = other_partner.create()
    assert envelope.status_code == 201
    envelope_id = envelope.json["envelope_id"]
    operations = _operations(api)
    assert len(operations) >= 10
    for operation in operations:
        for mode in _modes(operation):
            _run(operation.as_strategy(generation_mode=mode), EXAMPLES[mode], other_partner.headers)
        for fixed in _reaching_success(operation, envelope_id):
            _run(operation.as_strategy(**fixed), EXAMPLES[GenerationMode.POSITIVE], other_partner.headers)


#: a body "other"'s policy accepts: with it, only the headers vary and DocuSign is reached
VALID_CREATE = {"template": "membership", "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
                "fields": {"member_number": "12345", "plan": "plus"}}


def _reaching_success(operation: t.Any, envelope_id: str) -> list[dict[str, t.Any]]:
    """Fixed inputs that get past the policy checks, so the success schemas are exercised too."""
    if operation.label == "POST /v1/envelopes":
        return [{"body": VALID_CREATE}]
    own = {"path_parameters": {"envelope_id": envelope_id}}
    if operation.label == "POST /v1/envelopes/{envelope_id}/recipient-view":
        return [own, own | {"body": {"return_url": "https://other.example/done"}}]
    if operation.label == "GET /v1/envelopes/{envelope_id}":
        return [own]
    return []
