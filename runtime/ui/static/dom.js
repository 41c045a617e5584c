// Helpers every page uses. Text from the mesh is only ever set as text (createTextNode,
// textContent), never parsed as HTML: a description holding <script> shows as written.
"use strict";
const UI = { streams: [], pages: {} };

UI.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  UI.append(node, children);
  return node;
};

UI.append = function (node, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

UI.api = async function (path, options) {
  const init = Object.assign({ credentials: "same-origin" }, options || {});
  init.headers = Object.assign({ "X-Mesh-UI": "1" }, init.headers || {});
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, body: { ok: false, error: { code: "unreachable",
      message: "the ui server does not answer: " + err } } };
  }
  let body;
  try {
    body = await response.json();
  } catch (err) {
    body = { ok: false, error: { code: "bad_answer", message: "HTTP " + response.status } };
  }
  return { ok: response.ok, status: response.status, body: body };
};

// An EventSource that the router closes when the page changes.
UI.stream = function (path, handlers) {
  const source = new EventSource(path, { withCredentials: true });
  const live = document.getElementById("live");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (err) { return; }
      handler(data);
    });
  }
  UI.streams.push(source);
  return source;
};

UI.closeStreams = function () {
  for (const source of UI.streams) source.close();
  UI.streams = [];
  const live = document.getElementById("live");
  live.textContent = ""; live.className = "live";
};

UI.badge = function (status) {
  const text = String(status || "unknown");
  return UI.el("span", { class: "badge s-" + text.replace(/[^a-z_]/g, "") }, text);
};

UI.json = function (value, limit) {
  let text;
  try { text = JSON.stringify(value, null, 2); } catch (err) { text = String(value); }
  if (text === undefined) text = "null";
  limit = limit || 20000;
  return text.length > limit ? text.slice(0, limit) + "\n… (cut: " + text.length + " characters)" : text;
};

UI.short = function (value, limit) {
  let text = typeof value === "string" ? value : UI.json(value);
  text = text.replace(/\s+/g, " ");
  limit = limit || 80;
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
};

UI.time = function (seconds) {
  if (typeof seconds !== "number") return "";
  const date = new Date(seconds * 1000);
  return date.toISOString().replace("T", " ").slice(0, 19) + "Z";
};

UI.ms = function (value) {
  if (typeof value !== "number") return "";
  return value >= 10000 ? (value / 1000).toFixed(1) + " s" : value.toFixed(1) + " ms";
};

UI.link = function (href, text) { return UI.el("a", { href: href }, text); };
UI.agentHref = (name) => "#/agent/" + encodeURIComponent(name);
UI.runHref = (run) => "#/run/" + encodeURIComponent(run);

UI.problem = function (error) {
  const code = error && error.code ? String(error.code) : "error";
  const message = error && error.message ? String(error.message) : "";
  return UI.el("div", { class: "problem" }, UI.el("strong", {}, code), message ? ": " + message : "");
};
