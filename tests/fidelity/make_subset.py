"""Regenerate ``tests/data/docusign-openapi/esignature-subset.json`` from DocuSign's full document.

Not run by CI: the subset is committed. Run it when DocuSign publishes a new
``esignature.rest.swagger-v2.1.json`` (github.com/docusign/OpenAPI-Specifications)
or when the gateway starts using another endpoint (add its operationId below)::

    python tests/fidelity/make_subset.py /path/to/esignature.rest.swagger-v2.1.json

What the subset keeps, and how it differs from the source (see the README beside it):

- ``paths``: only the operations in :data:`OPERATIONS`, each with its ``operationId``,
  its query parameters (name, type), its body parameter's ``schema`` and its
  responses' ``schema`` (descriptions and examples dropped).
- ``definitions``: every definition those operations reference, with the transitive
  closure of their ``$ref`` s, and only the keys that validation reads (``type``,
  ``format``, ``properties``, ``items``, ``additionalProperties``, ``enum``, ``$ref``,
  ``x-ds-definition-name``); descriptions are dropped (they are 75% of the bytes).
- ``x-ds-max-length``: added to a string property whose description states exactly
  one "Maximum length: N" (DocuSign writes most of its length limits in prose, not
  as ``maxLength``); the validator enforces it.
- A ``$ref`` to a definition the source document lacks (it has dangling ones) is
  replaced by ``{"x-unresolved-ref": name}``, which accepts anything, and listed in
  ``x-subset.unresolvedRefs``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import typing as t
from pathlib import Path

# the REST operations the gateway (and the emulator) use
OPERATIONS = (
    "Envelopes_PostEnvelopes",  # create an envelope from a template
    "Envelopes_GetEnvelope",  # get envelope (status)
    "Envelopes_PutEnvelope",  # send a draft / void
    "Envelopes_GetEnvelopes",  # listStatusChanges
    "Recipients_GetRecipients",  # list recipients
    "Views_PostEnvelopeRecipientView",  # embedded signing URL
    "Templates_GetTemplate",  # `gateway policies check --upstream` reads a template
)
# definitions the tests name directly besides those the operations reach
EXTRA_DEFINITIONS = ("templateRole",)

OUT = Path(__file__).resolve().parents[1] / "data" / "docusign-openapi" / "esignature-subset.json"
SCHEMA_KEYS = ("type", "format", "properties", "items", "additionalProperties", "enum", "$ref",
               "x-ds-definition-name")
MAX_LENGTH_RE = re.compile(r"maximum length:?\s*(\d+)", re.IGNORECASE)


def _ref_name(ref: str) -> str:
    prefix = "#/definitions/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref[len(prefix):]


def _slim(schema: t.Any, definitions: dict[str, t.Any], unresolved: set[str]) -> t.Any:
    """A schema reduced to the keys validation reads, with the description's length limit."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        if name not in definitions:
            unresolved.add(name)
            return {"x-unresolved-ref": name}
    out: dict[str, t.Any] = {}
    for key in SCHEMA_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key == "properties":
            value = {name: _slim(prop, definitions, unresolved) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _slim(value, definitions, unresolved)
        out[key] = value
    limits = MAX_LENGTH_RE.findall(schema.get("description", ""))
    if schema.get("type") == "string" and len(set(limits)) == 1:
        out["x-ds-max-length"] = int(limits[0])
    return out


def _refs(schema: t.Any) -> t.Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str):
            yield _ref_name(schema["$ref"])
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def build_subset(full: dict[str, t.Any], *, source: str = "", sha256: str = "") -> dict[str, t.Any]:
    """The subset document (see the module docstring) of DocuSign's full Swagger 2.0 document."""
    definitions = full["definitions"]
    unresolved: set[str] = set()
    paths: dict[str, dict[str, t.Any]] = {}
    roots: list[str] = list(EXTRA_DEFINITIONS)
    wanted = set(OPERATIONS)
    for path, item in full["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or op.get("operationId") not in wanted:
                continue
            wanted.discard(op["operationId"])
            slim: dict[str, t.Any] = {"operationId": op["operationId"], "query": {}, "responses": {}}
            for param in op.get("parameters", []):
                if param.get("in") == "query":
                    slim["query"][param["name"]] = param.get("type", "string")
                elif param.get("in") == "body":
                    slim["body"] = _slim(param["schema"], definitions, unresolved)
                    roots.extend(_refs(param["schema"]))
            for status, response in op.get("responses", {}).items():
                if "schema" in response:
                    slim["responses"][status] = _slim(response["schema"], definitions, unresolved)
                    roots.extend(_refs(response["schema"]))
            paths.setdefault(path, {})[method] = slim
    if wanted:
        raise ValueError(f"operations not in the document: {sorted(wanted)}")
    keep: dict[str, t.Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in definitions:
            unresolved.add(name)
            continue
        keep[name] = _slim(definitions[name], definitions, unresolved)
        todo.extend(_refs(definitions[name]))
    return {
        "swagger": full["swagger"],
        "info": {"title": full["info"].get("title"), "version": full["info"].get("version")},
        "x-subset": {
            "source": source,
            "sha256": sha256,
            "operations": list(OPERATIONS),
            "unresolvedRefs": sorted(unresolved),
            "generator": "tests/fidelity/make_subset.py",
        },
        "paths": dict(sorted(paths.items())),
        "definitions": dict(sorted(keep.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else OUT
    raw = source.read_bytes()
    subset = build_subset(json.loads(raw), source=source.name, sha256=hashlib.sha256(raw).hexdigest())
    out.write_text(json.dumps(subset, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{out}: {len(subset['paths'])} paths, {len(subset['definitions'])} definitions, "
          f"unresolved refs {subset['x-subset']['unresolvedRefs']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
