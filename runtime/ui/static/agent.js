// One agent or pipeline: what it is, its schemas, its graph, a form that calls it.
"use strict";
UI.pages.agent = async function (main, name) {
  UI.append(main, UI.el("p", { class: "muted" }, "reading " + name + "…"));
  const reply = await UI.api("/api/agents/" + encodeURIComponent(name));
  main.replaceChildren();
  if (!reply.ok) {
    UI.append(main, [UI.el("h1", {}, name), UI.problem(reply.body.error)]);
    return;
  }
  const info = reply.body;
  const stats = info.stats || {};
  UI.append(main, [
    UI.el("div", { class: "bar" }, UI.el("h1", { id: "agent-name" }, info.name),
      UI.el("span", { class: "kind" }, info.kind + (info.streaming ? ", streaming" : "")), UI.badge(info.status)),
    UI.el("p", { class: "description", id: "description" }, info.description || "(no description)"),
    UI.el("dl", { class: "facts" },
      UI.fact("version", info.version), UI.fact("subject", info.subject),
      UI.fact("tags", (info.tags || []).join(", ") || "-"),
      UI.fact("capabilities", (info.capabilities || []).join(", ") || "-"),
      UI.fact("instances", (info.instances || []).map((i) => i.id + (i.live === false ? " (dead)" : "")).join(", ") || "-"),
      UI.fact("stats", stats.requests + " requests, " + stats.errors + " errors, " + stats.in_flight +
        " in flight, avg " + UI.ms(stats.avg_ms) + ", p99 " + UI.ms(stats.p99_ms)),
      stats.last_error ? UI.fact("last error", stats.last_error) : null,
      UI.fact("triggers", (info.triggers || []).length ? UI.el("ul", { class: "plain" },
        info.triggers.map((t) => UI.el("li", {}, UI.el("code", {}, t)))) : "-"),
      (info.events || []).length ? UI.fact("emits", info.events.join(", ")) : null),
  ]);
  if (info.graph) {
    UI.append(main, [UI.el("h2", {}, "Steps"), UI.el("div", { id: "graph" }, UI.graph(info.graph))]);
  }
  UI.append(main, [UI.el("h2", {}, "Call it"), UI.form(info.name, info.input, info.streaming, info.kind)]);
  UI.append(main, UI.el("div", { class: "schemas" },
    UI.el("div", {}, UI.el("h2", {}, "Input schema"), UI.el("pre", { class: "json", id: "input-schema" },
      info.input === null ? "(none: anything)" : UI.json(info.input))),
    UI.el("div", {}, UI.el("h2", {}, info.streaming ? "Chunk schema" : "Output schema"),
      UI.el("pre", { class: "json", id: "output-schema" }, info.output === null ? "(none: anything)" : UI.json(info.output)))));
  if (info.kind === "pipeline" && UI.recentRuns) {
    UI.append(main, [UI.el("h2", {}, "Recent runs"), UI.recentRuns(info.name)]);
  }
};

UI.fact = function (term, value) {
  return [UI.el("dt", {}, term), UI.el("dd", {}, value)];
};
