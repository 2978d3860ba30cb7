// Renders /openapi.json into #operations: no framework, no external assets.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function resolve(spec, obj) {
  // follows local "#/components/..." references, one hop at a time
  let current = obj;
  while (current && current.$ref) {
    current = current.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o || {})[k], spec);
  }
  return current || {};
}

// a compact JSON-ish sketch of a schema, with references expanded (cycle-safe)
function sketch(spec, schema, depth, seen) {
  const s = resolve(spec, schema);
  const pad = "  ".repeat(depth);
  if (schema && schema.$ref) {
    if (seen.has(schema.$ref)) return schema.$ref.split("/").pop();
    seen = new Set(seen).add(schema.$ref);
  }
  if (s.type === "object" || s.properties) {
    const required = new Set(s.required || []);
    const lines = Object.entries(s.properties || {}).map(([name, prop]) => {
      const mark = required.has(name) ? "" : "?";
      return `${pad}  ${name}${mark}: ${sketch(spec, prop, depth + 1, seen)}`;
    });
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      lines.push(`${pad}  <key>: ${sketch(spec, s.additionalProperties, depth + 1, seen)}`);
    }
    return lines.length ? `{\n${lines.join(",\n")}\n${pad}}` : "object";
  }
  if (s.type === "array") return `[${sketch(spec, s.items || {}, depth, seen)}]`;
  let text = s.type || "any";
  if (s.format) text += ` (${s.format})`;
  if (s.enum) text += ` one of ${s.enum.join(" | ")}`;
  if (s.nullable) text += " | null";
  return text;
}

function schemaBlock(spec, content) {
  const frag = document.createDocumentFragment();
  for (const [media, body] of Object.entries(content || {})) {
    frag.append(el("div", { class: "muted" }, media));
    if (body.schema) frag.append(el("pre", {}, sketch(spec, body.schema, 0, new Set())));
  }
  return frag;
}

function parameters(spec, op) {
  const params = (op.parameters || []).map((p) => resolve(spec, p));
  if (!params.length) return null;
  const rows = params.map((p) => el("tr", {},
    el("td", {}, el("code", {}, p.name)), el("td", {}, p.in + (p.required ? ", required" : "")),
    el("td", {}, sketch(spec, p.schema || {}, 0, new Set())), el("td", {}, p.description || "")));
  return el("table", {}, el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"),
    el("th", {}, "Type"), el("th", {}, "Description")), ...rows);
}

function responses(spec, op) {
  const rows = Object.entries(op.responses || {}).map(([status, ref]) => {
    const r = resolve(spec, ref);
    return el("tr", {}, el("td", { class: "status" }, status),
      el("td", {}, r.description || "", schemaBlock(spec, r.content)));
  });
  return el("table", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Response")), ...rows);
}

function operation(spec, path, method, op) {
  const body = op.requestBody ? resolve(spec, op.requestBody) : null;
  const secured = (op.security || spec.security || []).length > 0;
  return el("details", { class: "op", id: op.operationId || `${method}-${path}` },
    el("summary", {}, el("span", { class: `method ${method}` }, method),
      el("span", { class: "path" }, path), el("span", { class: "muted" }, op.summary || "")),
    el("div", {},
      op.description ? el("p", {}, op.description) : null,
      el("p", { class: "muted" }, secured ? "Needs a partner key: Authorization: Bearer pgw_..." : "No key."),
      parameters(spec, op),
      body ? el("h4", {}, "Request body") : null,
      body ? schemaBlock(spec, body.content) : null,
      el("h4", {}, "Responses"), responses(spec, op)));
}

function render(spec) {
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("summary").textContent = spec.info.description || "";
  const groups = new Map();
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["Other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(spec, path, method, op));
    }
  }
  const main = document.getElementById("operations");
  for (const [tag, ops] of groups) {
    main.append(el("h2", {}, tag), ...ops);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  fetch("/openapi.json", { headers: { Accept: "application/json" } })
    .then((resp) => {
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      return resp.json();
    })
    .then(render)
    .catch((err) => {
      const summary = document.getElementById("summary");
      summary.textContent = `Could not load /openapi.json (${err.message}).`;
      summary.className = "error";
    });
});
