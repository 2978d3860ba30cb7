"""`/openapi.json` is generated from the schemas the views validate with; `/docs` is self-contained."""

from __future__ import annotations

import re
import typing as t

import pytest
import schemathesis
from flask import Flask

from gateway.web import openapi
from gateway.web import schemas

#: routes that are not part of the documented API: the console is HTML forms, the rest assets
UNDOCUMENTED = re.compile(r"^/(admin|docs|static)(/|$)|^/(favicon\.ico|robots\.txt)$")


@pytest.fixture
def spec(client: t.Any) -> dict[str, t.Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    return t.cast(dict[str, t.Any], resp.json)


def test_the_document_is_valid_openapi(spec):
    assert spec["openapi"] == "3.0.3"
    schemathesis.openapi.from_dict(spec).validate()


def test_every_registered_route_is_documented(app, spec):
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    served = {(path, method) for path, method in openapi._registered(app)
              if method not in ("head", "options") and not UNDOCUMENTED.match(path)}
    assert served == documented


def test_only_registered_routes_are_documented():
    app = Flask(__name__)
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    paths = openapi.build_spec(app).to_dict()["paths"]
    assert list(paths) == ["/healthz"]


@pytest.mark.parametrize(("component", "schema"), [
    ("CreateEnvelope", schemas.CreateEnvelopeSchema),
    ("RecipientViewRequest", schemas.RecipientViewRequestSchema),
    ("EnvelopeCreated", schemas.EnvelopeCreatedSchema),
    ("EnvelopeStatus", schemas.EnvelopeStatusSchema),
    ("Problem", schemas.ProblemSchema),
])
def test_bodies_are_the_validating_schemas(spec, component, schema):
    documented = spec["components"]["schemas"][component]
    instance = schema()
    names = {f.data_key or name for name, f in instance.fields.items()}
    required = {f.data_key or name for name, f in instance.fields.items() if f.required}
    assert set(documented["properties"]) == names
    assert set(documented.get("required", [])) == required
    # marshmallow rejects unknown fields, and so does the document
    assert documented["additionalProperties"] is False


def test_request_bodies_reference_the_schemas(spec):
    create = spec["paths"]["/v1/envelopes"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateEnvelope"}
    signer = spec["components"]["schemas"]["CreateEnvelope"]["properties"]["signer"]
    assert signer == {"$ref": "#/components/schemas/Signer"}
    assert spec["components"]["schemas"]["Signer"]["properties"]["email"]["format"] == "email"


def _resolve(spec: dict[str, t.Any], obj: dict[str, t.Any]) -> dict[str, t.Any]:
    while "$ref" in obj:
        obj = spec["components"]["responses"][obj["$ref"].rsplit("/", 1)[1]]
    return obj


def test_every_error_response_is_problem_json(spec):
    checked = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                response = _resolve(spec, response)
                if status[0] not in "45" or (path, status) == ("/v1/return/{token}", "400"):
                    continue  # the relay answers a signer's browser with a page
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}
                checked += 1
    assert checked > 30


def test_partner_operations_declare_the_bearer_key(spec):
    assert spec["components"]["securitySchemes"]["partnerKey"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for operation in item.values():
            partner = path.startswith("/v1/") and not path.startswith("/v1/return/")
            assert (operation["security"] == [{"partnerKey": []}]) is partner
            if partner:
                assert "401" in operation["responses"]


def test_401_documents_www_authenticate(spec):
    unauthenticated = spec["components"]["responses"]["Unauthenticated"]
    assert unauthenticated["headers"]["WWW-Authenticate"]["required"] is True


def test_the_document_is_built_once(app, client):
    client.get("/openapi.json")
    first = app.extensions["openapi"]
    client.get("/openapi.json")
    assert app.extensions["openapi"] is first


def _fetch(client: t.Any, url: str) -> tuple[int, str, t.Any]:
    # file responses stream from disk: close them, or the file handle leaks a ResourceWarning
    with client.get(url) as resp:
        return resp.status_code, resp.get_data(as_text=True), resp.headers


def test_docs_page_has_no_external_assets(client):
    status, html, headers = _fetch(client, "/docs")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        assert _fetch(client, url)[0] == 200, url


def test_docs_script_renders_from_the_local_document(client):
    status, script, _ = _fetch(client, "/docs/static/docs.js")
    assert status == 200
    assert 'fetch("/openapi.json"' in script
    assert "http://" not in script and "https://" not in script
