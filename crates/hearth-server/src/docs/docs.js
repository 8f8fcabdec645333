// The Hearth API reference: renders /api/openapi.json (operations by tag, with parameters,
// request and answer bodies, their schemas and examples) and sends a request with the access
// token pasted at the top. Served as its own file so the page's Content-Security-Policy allows
// no inline script; it talks to this origin only.
"use strict";

let SPEC = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function refName(ref) {
  return ref.replace("#/components/schemas/", "");
}

function resolve(schema) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 16; i++) s = (SPEC.components.schemas || {})[refName(s.$ref)] || {};
  return s;
}

// A short type label: `string`, `array of Appointment`, `Patient | null`, ...
function typeLabel(schema) {
  if (!schema) return "any";
  if (schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref) }, refName(schema.$ref));
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    if (schema[key]) {
      const span = el("span", {});
      schema[key].forEach((s, i) => {
        if (i) span.append(key === "allOf" ? " & " : " | ");
        span.append(typeLabel(s));
      });
      return span;
    }
  }
  let t = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any");
  if (schema.enum) t += " (" + schema.enum.map((v) => JSON.stringify(v)).join(", ") + ")";
  if (schema.format) t += " <" + schema.format + ">";
  if (t.startsWith("array") && schema.items) return el("span", {}, "array of ", typeLabel(schema.items));
  return t;
}

// A table of an object schema's fields (resolving one level of $ref), or a line for others.
function schemaView(schema) {
  const s = resolve(schema);
  const wrap = el("div", {});
  if (schema && schema.$ref) wrap.append(el("div", { class: "muted" }, "schema ", typeLabel(schema)));
  if (s.description) wrap.append(el("div", { class: "muted" }, s.description));
  const target = s.type === "array" || (Array.isArray(s.type) && s.type.includes("array")) ? resolve(s.items) : s;
  if (target !== s) wrap.append(el("div", {}, "array of ", typeLabel(s.items)));
  const props = target.properties || {};
  const required = new Set(target.required || []);
  if (Object.keys(props).length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description")));
    for (const [name, p] of Object.entries(props)) {
      t.append(el("tr", {},
        el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req" }, " required") : null),
        el("td", {}, typeLabel(p)),
        el("td", {}, p.description || (p.$ref ? resolve(p).description || "" : ""))));
    }
    wrap.append(t);
  } else if (!(schema && schema.$ref)) {
    wrap.append(el("div", {}, typeLabel(s)));
  }
  if (target.additionalProperties && Object.keys(props).length) wrap.append(el("div", { class: "muted" }, "other fields allowed"));
  return wrap;
}

function exampleOf(media) {
  if (!media) return undefined;
  if (media.example !== undefined) return media.example;
  if (media.examples) {
    const first = Object.values(media.examples)[0];
    if (first && first.value !== undefined) return first.value;
  }
  const s = resolve(media.schema);
  if (s.example !== undefined) return s.example;
  if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
  return undefined;
}

function bodyView(content) {
  const box = el("div", {});
  for (const [ct, media] of Object.entries(content || {})) {
    box.append(el("div", { class: "muted" }, ct));
    if (media.schema) box.append(schemaView(media.schema));
    const ex = exampleOf(media);
    if (ex !== undefined) box.append(el("div", { class: "muted" }, "example"), el("pre", {}, JSON.stringify(ex, null, 2)));
  }
  return box;
}

function securityView(op) {
  const sec = op.security || SPEC.security || [];
  // `[{}]` names no credential; `[{}, {…}]` makes the other alternatives optional.
  const names = sec.map((r) => Object.keys(r).join(" + ")).filter(Boolean);
  if (!names.length) return el("span", { class: "lock" }, "no sign-in");
  const optional = sec.some((r) => !Object.keys(r).length);
  return el("span", { class: "lock" }, "🔒 " + names.join(" or ") + (optional ? " (optional)" : ""));
}

function tryIt(method, path, op) {
  const box = el("form", { class: "try" });
  box.append(el("strong", {}, "Try it"));
  const inputs = [];
  for (const p of op.parameters || []) {
    if (p.in !== "path" && p.in !== "query") continue;
    const input = el("input", { type: "text", "data-name": p.name, "data-in": p.in, placeholder: p.description || "" });
    inputs.push(input);
    box.append(el("label", {}, el("code", {}, p.name), " (" + p.in + (p.required ? ", required" : "") + ") ", input));
  }
  let body = null;
  const content = (op.requestBody || {}).content || {};
  const ct = Object.keys(content)[0];
  if (ct) {
    const ex = exampleOf(content[ct]);
    body = el("textarea", { spellcheck: "false" });
    body.value = ex === undefined ? "" : typeof ex === "string" ? ex : JSON.stringify(ex, null, 2);
    box.append(el("label", {}, "body (" + ct + ")"), body);
  }
  const out = el("div", {});
  const button = el("button", { type: "submit" }, "Send");
  box.append(button, out);
  box.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    for (const i of inputs) {
      const v = i.value.trim();
      if (i.dataset.in === "path") url = url.replace("{" + i.dataset.name + "}", encodeURIComponent(v));
      else if (v) query.append(i.dataset.name, v);
    }
    if ([...query].length) url += "?" + query;
    const headers = { Accept: "application/json" };
    const token = document.getElementById("token").value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: method.toUpperCase(), headers, credentials: "same-origin" };
    if (body && body.value.trim()) {
      headers["Content-Type"] = ct;
      init.body = body.value;
    }
    out.replaceChildren(el("div", { class: "muted" }, init.method + " " + url + " …"));
    try {
      const r = await fetch(url, init);
      const text = await r.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      const hs = [...r.headers].map(([k, v]) => k + ": " + v).join("\n");
      out.replaceChildren(
        el("div", { class: r.ok ? "status-ok" : "status-err" }, r.status + " " + r.statusText),
        el("details", {}, el("summary", {}, "headers"), el("pre", {}, hs)),
        el("pre", {}, shown));
    } catch (e) {
      out.replaceChildren(el("div", { class: "status-err" }, "request failed: " + e));
    }
  });
  return box;
}

function operation(path, method, op) {
  const d = el("details", { class: "op", id: op.operationId || method + path });
  d.append(el("summary", {}, el("span", { class: "method " + method }, method), el("code", {}, path), " ",
    el("span", { class: "muted" }, op.summary || ""), securityView(op)));
  if (op.description && op.description !== op.summary) d.append(el("p", { class: "muted" }, op.description));
  const params = op.parameters || [];
  if (params.length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
    for (const p of params) {
      t.append(el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? el("span", { class: "req" }, " required") : null),
        el("td", {}, p.in), el("td", {}, typeLabel(p.schema)), el("td", {}, p.description || "")));
    }
    d.append(el("h4", {}, "Parameters"), t);
  }
  if (op.requestBody) {
    d.append(el("h4", {}, "Request body"));
    if (op.requestBody.description) d.append(el("p", { class: "muted" }, op.requestBody.description));
    d.append(bodyView(op.requestBody.content));
  }
  d.append(el("h4", {}, "Answers"));
  const t = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "answer")));
  for (const [status, r] of Object.entries(op.responses || {})) {
    t.append(el("tr", {}, el("td", {}, el("code", {}, status)), el("td", {}, r.description || "", bodyView(r.content))));
  }
  d.append(t, tryIt(method, path, op));
  return d;
}

function render(spec) {
  SPEC = spec;
  spec.components = spec.components || {};
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("description").textContent = spec.info.description || "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  const ops = document.getElementById("ops");
  const toc = document.getElementById("toc");
  for (const tag of [...byTag.keys()].sort()) {
    const id = "tag-" + tag.replace(/[^a-z0-9]+/gi, "-");
    toc.append(el("a", { href: "#" + id }, tag));
    ops.append(el("h2", { id }, tag));
    for (const [path, method, op] of byTag.get(tag)) ops.append(operation(path, method, op));
  }
  const schemas = document.getElementById("schemas");
  const names = Object.keys(spec.components.schemas || {}).sort();
  if (names.length) {
    toc.append(el("a", { href: "#schemas-title" }, "schemas"));
    schemas.append(el("h2", { id: "schemas-title" }, "Schemas"));
    for (const name of names) {
      const s = spec.components.schemas[name];
      const d = el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("code", {}, name)), schemaView(s));
      if (s.example !== undefined) d.append(el("div", { class: "muted" }, "example"), el("pre", {}, JSON.stringify(s.example, null, 2)));
      schemas.append(d);
    }
  }
  // A link to a schema opens it.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a[href^='#schema-']");
    if (a) {
      const target = document.getElementById(a.getAttribute("href").slice(1));
      if (target) target.open = true;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("auth").addEventListener("submit", (ev) => ev.preventDefault());
  fetch("/api/openapi.json")
    .then((r) => r.json())
    .then(render)
    .catch((e) => {
      document.getElementById("description").textContent = "Could not load the API description: " + e;
    });
});
