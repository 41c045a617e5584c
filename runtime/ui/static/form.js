// A form built from an input schema: a field per top-level property, and the payload as
// JSON text below it (what is sent; edit it by hand for anything the fields cannot say).
"use strict";
UI.form = function (name, schema, streaming, kind) {
  const payload = UI.el("textarea", { class: "payload", id: "payload", rows: 6, spellcheck: "false" });
  const fields = UI.el("div", { class: "fields" });
  const answer = UI.el("div", { class: "answer", id: "answer" });
  const button = UI.el("button", { type: "submit", id: "call" }, "Call " + name);
  const detach = kind === "pipeline" ? UI.el("input", { type: "checkbox", id: "async" }) : null;
  const properties = schema && typeof schema === "object" && schema.properties &&
    typeof schema.properties === "object" && !Array.isArray(schema.properties) ? schema.properties : {};
  const required = schema && Array.isArray(schema.required) ? schema.required.map(String) : [];
  const readers = [];

  for (const key of Object.keys(properties).slice(0, 50)) {
    const spec = properties[key] && typeof properties[key] === "object" ? properties[key] : {};
    const field = UI.formField(key, spec, required.includes(key));
    readers.push(field.read);
    fields.appendChild(field.node);
    field.node.addEventListener("input", sync);
    field.node.addEventListener("change", sync);
  }

  function sync() {
    const value = {};
    for (const read of readers) {
      const got = read();
      if (got.error) { answer.replaceChildren(UI.problem({ code: "invalid_json", message: got.error })); return; }
      if (got.set) value[got.key] = got.value;
    }
    answer.replaceChildren();
    payload.value = JSON.stringify(value, null, 2);
  }

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    answer.replaceChildren(UI.el("p", { class: "muted" }, "calling…"));
    const query = streaming ? "?stream=true" : detach && detach.checked ? "?async=true" : "";
    const reply = await UI.api("/api/agents/" + encodeURIComponent(name) + "/call" + query,
      { method: "POST", body: payload.value, headers: { "Content-Type": "application/json" } });
    button.disabled = false;
    const body = reply.body || {};
    if (body.ok && body.run) { location.hash = UI.runHref(body.run); return; }
    const runLink = kind === "pipeline" && body.request_id
      ? UI.el("p", {}, UI.link(UI.runHref(body.request_id), "this run's timeline")) : null;
    const head = body.ok ? "ok" : "error" + (body.error && body.error.code ? " · " + body.error.code : "");
    const timing = typeof body.ms === "number" ? " · " + UI.ms(body.ms) : "";
    answer.replaceChildren();  // (replaceChildren would write a null as the text "null")
    UI.append(answer, [
      UI.el("div", { class: "answer-head " + (body.ok ? "ok" : "bad") }, head + timing),
      body.ok ? null : UI.problem(body.error), runLink,
      UI.el("pre", { class: "json", id: "answer-json" }, UI.json(body.ok ? body.result : body.error))]);
  }

  if (readers.length) sync(); else payload.value = "{}";
  return UI.el("form", { class: "call", id: "call-form", onsubmit: submit },
    readers.length ? fields : UI.el("p", { class: "muted" }, "No input fields: the schema names no properties."),
    UI.el("label", { for: "payload" }, "Payload (JSON, sent as is)"), payload,
    UI.el("div", { class: "actions" }, button, detach ? UI.el("label", { for: "async" }, detach,
      " start the run and follow it (do not wait for its answer)") : null), answer);
};

UI.formField = function (key, spec, isRequired) {
  const id = "field-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
  const type = Array.isArray(spec.type) ? spec.type.find((t) => t !== "null") : spec.type;
  const initial = spec.default !== undefined ? spec.default
    : Array.isArray(spec.examples) && spec.examples.length ? spec.examples[0] : undefined;
  let control;
  let read;
  if (Array.isArray(spec.enum) && spec.enum.length) {
    control = UI.el("select", { id: id }, UI.el("option", { value: "" }, "(not set)"),
      spec.enum.slice(0, 200).map((v, i) => UI.el("option", { value: String(i) }, JSON.stringify(v))));
    if (initial !== undefined) control.value = String(spec.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(initial)));
    read = () => control.value === "" ? { key: key, set: false } : { key: key, set: true, value: spec.enum[Number(control.value)] };
  } else if (type === "boolean") {
    control = UI.el("input", { id: id, type: "checkbox" });
    control.checked = initial === true;
    read = () => ({ key: key, set: true, value: control.checked });
  } else if (type === "integer" || type === "number") {
    control = UI.el("input", { id: id, type: "number", step: type === "integer" ? "1" : "any" });
    if (typeof initial === "number") control.value = String(initial);
    read = () => control.value === "" ? { key: key, set: false } : { key: key, set: true, value: Number(control.value) };
  } else if (type === "string") {
    const long = (spec.maxLength || 0) > 200 || /text|body|content|prompt/i.test(key);
    control = UI.el(long ? "textarea" : "input", { id: id, rows: long ? 3 : null, type: long ? null : "text" });
    if (typeof initial === "string") control.value = initial;
    read = () => control.value === "" && !isRequired ? { key: key, set: false } : { key: key, set: true, value: control.value };
  } else {
    control = UI.el("textarea", { id: id, rows: 2, class: "jsonfield", placeholder: "JSON" });
    if (initial !== undefined) control.value = JSON.stringify(initial);
    read = () => {
      if (control.value.trim() === "") return { key: key, set: false };
      try { return { key: key, set: true, value: JSON.parse(control.value) }; }
      catch (err) { return { key: key, error: "the field '" + key + "' is not JSON: " + err.message }; }
    };
  }
  const label = UI.el("label", { for: id }, key, isRequired ? UI.el("span", { class: "req" }, " *") : null,
    type ? UI.el("span", { class: "type" }, " " + String(type)) : null);
  const help = typeof spec.description === "string" ? UI.el("div", { class: "help" }, spec.description) : null;
  return { node: UI.el("div", { class: "field" }, label, control, help), read: read };
};
