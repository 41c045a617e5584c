// Recent errors, as every error reply is copied to mesh.errors.<name>, newest first.
"use strict";
UI.pages.errors = async function (main) {
  const body = UI.el("tbody", { id: "error-rows" });
  const columns = ["When", "Agent", "Code", "Message", "Trace id", "Request id"];
  UI.append(main, [UI.el("h1", {}, "Recent errors"),
    UI.el("p", { class: "muted" }, "Every error answered on the mesh since this page's server started (the last 300)."),
    UI.el("div", { class: "scroll" }, UI.el("table", { class: "grid", id: "error-table" },
      UI.el("thead", {}, UI.el("tr", {}, columns.map((c) => UI.el("th", {}, c)))), body))]);
  const empty = UI.el("tr", { class: "empty" }, UI.el("td", { colspan: 6, class: "muted" }, "No errors yet."));
  body.appendChild(empty);

  function row(e) {
    return UI.el("tr", { "data-code": e.code },
      UI.el("td", { class: "nowrap" }, UI.time(e.at)),
      UI.el("td", {}, UI.link(UI.agentHref(e.agent), e.agent)),
      UI.el("td", {}, UI.el("span", { class: "badge s-error" }, e.code)),
      UI.el("td", { class: "desc", title: e.details || "" }, e.message),
      UI.el("td", { class: "mono trace" }, e.trace_id || "-"),
      UI.el("td", { class: "mono" }, e.request_id || "-"));
  }

  function add(e) {
    empty.remove();
    body.insertBefore(row(e), body.firstChild);
    while (body.children.length > 300) body.lastChild.remove();
  }

  // Listen first, then read the backlog: nothing between the two is missed (a duplicate is).
  const seen = new Set();
  const key = (e) => [e.at, e.agent, e.request_id, e.code].join("|");
  UI.stream("/api/errors/events", { mesh_error: (e) => { if (!seen.has(key(e))) { seen.add(key(e)); add(e); } } });
  const reply = await UI.api("/api/errors");
  for (const e of (reply.body.errors || [])) if (!seen.has(key(e))) { seen.add(key(e)); add(e); }
};
