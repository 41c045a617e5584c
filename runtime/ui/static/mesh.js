// The mesh: every agent and pipeline with its health, redrawn on each live reading.
"use strict";
UI.pages.mesh = function (main) {
  const filter = UI.el("input", { type: "search", placeholder: "filter by name, kind or status",
    class: "filter", id: "mesh-filter" });
  const summary = UI.el("p", { class: "muted", id: "mesh-summary" }, "reading the mesh…");
  const body = UI.el("tbody", { id: "mesh-rows" });
  const columns = ["Name", "Kind", "Status", "Instances", "In flight", "Requests", "Errors",
    "p99", "Description"];
  const table = UI.el("table", { class: "grid", id: "mesh-table" },
    UI.el("thead", {}, UI.el("tr", {}, columns.map((c) => UI.el("th", {}, c)))), body);
  UI.append(main, [UI.el("div", { class: "bar" }, UI.el("h1", {}, "The mesh"), filter), summary,
    UI.el("div", { class: "scroll" }, table)]);
  let latest = null;

  function draw() {
    if (!latest) return;
    const rows = Array.isArray(latest.rows) ? latest.rows : [];
    const wanted = filter.value.trim().toLowerCase();
    const shown = wanted ? rows.filter((r) => [r.name, r.kind, r.status].join(" ")
      .toLowerCase().includes(wanted)) : rows;
    const fragment = document.createDocumentFragment();
    for (const r of shown) {
      fragment.appendChild(UI.el("tr", { "data-name": r.name, class: "k-" + r.kind },
        UI.el("td", {}, UI.link(UI.agentHref(r.name), r.name)),
        UI.el("td", {}, r.kind, r.streaming ? " (stream)" : ""),
        UI.el("td", {}, UI.badge(r.status)),
        UI.el("td", { class: "num" }, r.instances),
        UI.el("td", { class: "num" }, r.in_flight),
        UI.el("td", { class: "num" }, r.requests),
        UI.el("td", { class: "num" + (r.errors ? " bad" : "") }, r.errors),
        UI.el("td", { class: "num" }, r.requests ? UI.ms(r.p99_ms) : "-"),
        UI.el("td", { class: "desc" }, r.description)));
    }
    body.replaceChildren(fragment);
    // when the first reading was drawn, since the page was opened (the benchmark reads it)
    if (rows.length && window.meshFirstPaint === undefined) {
      requestAnimationFrame(() => { window.meshFirstPaint = performance.now(); });
    }
    const agents = rows.filter((r) => r.kind === "agent").length;
    const offline = rows.filter((r) => r.status === "offline").length;
    let text = agents + " agents, " + (rows.length - agents) + " pipelines, " + offline +
      " offline · read " + UI.time(latest.at);
    if (wanted) text += " · " + shown.length + " shown";
    if (latest.jetstream === false) text += " · this NATS server has no JetStream: no catalog";
    if (latest.problem) text += " · " + latest.problem;
    summary.textContent = text;
    if (!rows.length) body.replaceChildren(UI.el("tr", {}, UI.el("td", { colspan: 9, class: "muted" },
      "Nothing is listed or served. Start a mesh with `mesh-runtime up`.")));
  }

  filter.addEventListener("input", draw);
  UI.stream("/api/mesh/events", { mesh: (reading) => { latest = reading; draw(); } });
};
