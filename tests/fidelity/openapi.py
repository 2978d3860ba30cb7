"""Validate eSignature REST bodies against DocuSign's own OpenAPI definitions.

The definitions come from ``tests/data/docusign-openapi/esignature-subset.json``, an
extract of DocuSign's Swagger 2.0 document (see the README there). Three checks:

1. **JSON Schema** (``jsonschema``, Draft 4: Swagger 2.0's schema objects are a Draft 4
   subset). Types only, in practice: DocuSign types most numbers as strings, so a JSON
   number where the definition says ``string`` is a violation.
2. **No undeclared properties**: Swagger definitions leave ``additionalProperties``
   open, so a misspelt or invented property would pass (1). The walk reports every
   object key that its definition does not declare, with its JSON path.
3. **Stated length limits**: ``x-ds-max-length``, taken from the "Maximum length: N"
   that DocuSign writes in a property's description (the source has no ``maxLength``).

Usage::

    from tests.fidelity.openapi import validate, match_operation
    problems = validate("envelopeDefinition", body)        # [] when it conforms
    op = match_operation("POST", "/restapi/v2.1/accounts/x/envelopes")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing as t
from pathlib import Path

import jsonschema

SUBSET = Path(__file__).resolve().parents[1] / "data" / "docusign-openapi" / "esignature-subset.json"
REST_PREFIX = "/restapi"

# Properties DocuSign sends that this (2022) document does not declare but the newer
# document behind the official SDK does. Keep this short: every entry is checked
# against docusign-esign's model (test_newer_properties_are_declared_by_the_sdk).
NEWER_PROPERTIES: dict[str, frozenset[str]] = {
    "envelopesInformation": frozenset({"nextUri", "previousUri"}),
    "recipients": frozenset({"participants"}),
}


@dataclasses.dataclass(frozen=True)
class Violation:
    """One way a body differs from its definition."""

    path: str  # JSON path in the body, e.g. "$.templateRoles[0].clientUserId"
    definition: str  # the innermost definition that owns the offending value
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (definition {self.definition})"


@dataclasses.dataclass(frozen=True)
class Operation:
    """A REST operation of the subset, matched from a method and a request path."""

    operation_id: str
    swagger_path: str
    query: frozenset[str]
    body: str | None  # definition name of the request body
    responses: dict[str, str]  # status code -> definition name

    def response_definition(self, status: int) -> str | None:
        """The definition of a response with this status (errors are ``errorDetails``)."""
        if str(status) in self.responses:
            return self.responses[str(status)]
        if status >= 400:
            return "errorDetails"
        return None


@functools.cache
def document() -> dict[str, t.Any]:
    """The subset document (loaded once)."""
    return json.loads(SUBSET.read_text(encoding="utf-8"))


def definitions() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], document()["definitions"])


def _ref_name(schema: t.Mapping[str, t.Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


@functools.cache
def _validator(name: str) -> jsonschema.Draft4Validator:
    if name not in definitions():
        raise KeyError(f"definition {name!r} is not in the subset; add it to make_subset.py")
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions()}
    return jsonschema.Draft4Validator(schema)


def _json_path(parts: t.Iterable[t.Any]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _owner(error: jsonschema.ValidationError, root: str) -> str:
    """The innermost definition along the error's schema path (which skips ``$ref`` hops)."""
    owner = root
    node: t.Any = definitions()[root]
    for key in error.absolute_schema_path:
        while isinstance(node, dict) and _ref_name(node) in definitions():
            owner = t.cast(str, _ref_name(node))
            node = definitions()[owner]
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return owner


def _schema_errors(name: str, instance: t.Any) -> list[Violation]:
    out = []
    for error in _validator(name).iter_errors(instance):
        out.append(Violation(_json_path(error.absolute_path), _owner(error, name),
                             f"{error.message} ({error.validator})"))
    return out


def _walk(schema: t.Mapping[str, t.Any], value: t.Any, path: str, owner: str,
          out: list[Violation]) -> None:
    """Check declared property names and stated length limits, recursively."""
    ref = _ref_name(schema)
    if ref is not None:
        schema = definitions().get(ref, {})
        owner = ref
    if "x-unresolved-ref" in schema:
        return
    limit = schema.get("x-ds-max-length")
    if isinstance(value, str) and isinstance(limit, int) and len(value) > limit:
        out.append(Violation(path, owner, f"{len(value)} characters, more than the stated "
                                          f"maximum length {limit}"))
    if isinstance(value, dict):
        declared = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}"
            if isinstance(declared, dict) and key in declared:
                _walk(declared[key], item, sub, owner, out)
            elif isinstance(extra, dict):
                _walk(extra, item, sub, owner, out)
            elif extra is True or (declared is None and extra is None):
                continue  # a free-form object
            elif key not in NEWER_PROPERTIES.get(owner, ()):
                out.append(Violation(sub, owner, f"property {key!r} is not declared by {owner}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", owner, out)


def validate(name: str, instance: t.Any) -> list[Violation]:
    """Every violation of definition ``name`` by ``instance`` (a decoded JSON body)."""
    out = _schema_errors(name, instance)
    _walk({"$ref": f"#/definitions/{name}"}, instance, "$", name, out)
    return out


@functools.cache
def _operations() -> list[tuple[re.Pattern[str], str, Operation]]:
    ops = []
    for swagger_path, item in document()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(swagger_path)) + "$")
        for method, op in item.items():
            body = _ref_name(op["body"]) if "body" in op else None
            responses = {status: _ref_name(schema) or "" for status, schema in op["responses"].items()}
            ops.append((pattern, method.upper(),
                        Operation(op["operationId"], swagger_path, frozenset(op["query"]), body, responses)))
    return ops


def match_operation(method: str, path: str) -> Operation | None:
    """The subset's operation for ``method`` and a request path (with or without ``/restapi``)."""
    if path.startswith(REST_PREFIX + "/"):
        path = path[len(REST_PREFIX):]
    path = path.rstrip("/") or "/"
    for pattern, op_method, op in _operations():
        if op_method == method.upper() and pattern.match(path):
            return op
    return None


def check_exchange(method: str, path: str, query: t.Iterable[str], request_body: t.Any,
                   status: int, response_body: t.Any, *, check_request: bool = True
                   ) -> list[str]:
    """Problems with one REST exchange, as readable lines (empty when it conforms).

    :param query: the query parameter names sent
    :param request_body: the decoded JSON request body (None when there was none)
    :param response_body: the decoded JSON response body (None when not JSON)
    :param check_request: also check the query names and the request body
    """
    where = f"{method} {path} -> {status}"
    op = match_operation(method, path)
    problems: list[str] = []
    if op is None:
        if status < 400:
            problems.append(f"{where}: route not in the OpenAPI subset (add its operation to "
                            "tests/fidelity/make_subset.py)")
        elif response_body is None:
            problems.append(f"{where}: error response is not a JSON errorDetails")
        else:
            problems += [f"{where} response {v}" for v in validate("errorDetails", response_body)]
        return problems
    if check_request:
        unknown = sorted(set(query) - op.query)
        if unknown:
            problems.append(f"{where} request: query parameter(s) {unknown} not declared by "
                            f"{op.operation_id}")
        if op.body is not None:
            if request_body is None:
                problems.append(f"{where} request: no JSON body ({op.body} expected)")
            else:
                problems += [f"{where} request {v}" for v in validate(op.body, request_body)]
    definition = op.response_definition(status)
    if definition is None:
        problems.append(f"{where}: status {status} not documented for {op.operation_id} "
                        f"(documented: {sorted(op.responses)})")
    elif response_body is None:
        problems.append(f"{where}: response is not JSON ({definition} expected)")
    else:
        problems += [f"{where} response {v}" for v in validate(definition, response_body)]
    return problems
