// Runs: the list (filter by pipeline and status) and one run's timeline, live while it runs.
"use strict";
UI.RUN_STATUSES = ["", "running", "waiting", "ok", "failed", "cancelled"];

UI.runsTable = function (runs, showPipeline) {
  const columns = ["Run", showPipeline ? "Pipeline" : null, "Status", "Started", "Duration",
    "Steps done", "Now", "Error"].filter(Boolean);
  const body = UI.el("tbody", {});
  for (const r of runs) {
    body.appendChild(UI.el("tr", { "data-run": r.run, "data-status": r.status },
      UI.el("td", { class: "mono" }, UI.link(UI.runHref(r.run), r.run)),
      showPipeline ? UI.el("td", {}, UI.link(UI.agentHref(r.pipeline), r.pipeline)) : null,
      UI.el("td", {}, UI.badge(r.status)),
      UI.el("td", { class: "nowrap" }, UI.time(r.started)),
      UI.el("td", { class: "num" }, UI.ms(r.duration_ms)),
      UI.el("td", { class: "num" }, r.steps_done),
      UI.el("td", {}, r.step || ""),
      UI.el("td", { class: "desc" }, r.error ? (r.error.code || "") + ": " + (r.error.message || "") : "")));
  }
  if (!runs.length) body.appendChild(UI.el("tr", {}, UI.el("td", { colspan: columns.length, class: "muted" }, "No runs.")));
  return UI.el("table", { class: "grid runs", id: "runs-table" },
    UI.el("thead", {}, UI.el("tr", {}, columns.map((c) => UI.el("th", {}, c)))), body);
};

UI.fetchRuns = async function (pipeline, status, limit) {
  const query = new URLSearchParams();
  if (pipeline) query.set("pipeline", pipeline);
  if (status) query.set("status", status);
  query.set("limit", String(limit || 50));
  return UI.api("/api/runs?" + query.toString());
};

UI.pages.runs = function (main, params) {
  const pipeline = UI.el("input", { type: "text", id: "runs-pipeline", placeholder: "any pipeline",
    value: params.get("pipeline") || "", list: "pipelines" });
  const known = UI.el("datalist", { id: "pipelines" });
  UI.api("/api/mesh").then((reply) => {  // the pipelines the mesh serves, to pick from
    const rows = reply.ok && Array.isArray(reply.body.rows) ? reply.body.rows : [];
    UI.append(known, rows.filter((r) => r.kind === "pipeline").map((r) => UI.el("option", { value: r.name })));
  });
  const status = UI.el("select", { id: "runs-status" },
    UI.RUN_STATUSES.map((s) => UI.el("option", { value: s }, s || "any status")));
  status.value = params.get("status") || "";
  const holder = UI.el("div", { class: "scroll", id: "runs-holder" }, UI.el("p", { class: "muted" }, "reading the journal…"));
  function apply() {
    const query = new URLSearchParams();
    if (pipeline.value.trim()) query.set("pipeline", pipeline.value.trim());
    if (status.value) query.set("status", status.value);
    location.hash = "#/runs" + (query.toString() ? "?" + query.toString() : "");
  }
  pipeline.addEventListener("change", apply);
  status.addEventListener("change", apply);
  UI.append(main, [UI.el("h1", {}, "Runs"),
    UI.el("div", { class: "filters" }, UI.el("label", {}, "Pipeline ", pipeline), known, UI.el("label", {}, "Status ", status)),
    holder]);
  async function load() {
    const reply = await UI.fetchRuns(params.get("pipeline"), params.get("status"), 50);
    if (!holder.isConnected) return;
    holder.replaceChildren(reply.ok ? UI.runsTable(reply.body.runs || [], true) : UI.problem(reply.body.error));
  }
  load();
  UI.poll(load, 5000);
};

// Polling that stops when the page changes (the router closes streams and timers).
UI.poll = function (fn, every) {
  const timer = setInterval(fn, every);
  UI.streams.push({ close: () => clearInterval(timer) });
};

UI.recentRuns = function (pipeline) {
  const holder = UI.el("div", { class: "scroll", id: "recent-runs" }, UI.el("p", { class: "muted" }, "reading the journal…"));
  UI.fetchRuns(pipeline, "", 10).then((reply) => {
    holder.replaceChildren(reply.ok ? UI.runsTable(reply.body.runs || [], false) : UI.problem(reply.body.error),
      UI.el("p", {}, UI.link("#/runs?pipeline=" + encodeURIComponent(pipeline), "all runs of " + pipeline)));
  });
  return holder;
};

UI.pages.run = async function (main, runId) {
  const reply = await UI.api("/api/runs/" + encodeURIComponent(runId));
  if (!reply.ok) { UI.append(main, [UI.el("h1", {}, "Run " + runId), UI.problem(reply.body.error)]); return; }
  const run = UI.runState(reply.body);
  const head = UI.el("div", { class: "bar" });
  const controls = UI.el("div", { class: "actions", id: "run-actions" });
  const notice = UI.el("div", { id: "run-notice" });
  const timeline = UI.el("div", { class: "scroll", id: "timeline" });
  const result = UI.el("div", { id: "run-result" });
  const graphHolder = UI.el("div", { id: "run-graph" });
  UI.append(main, [head, controls, notice, UI.el("h2", {}, "Timeline"), timeline, result,
    UI.el("h2", {}, "Input"), UI.el("pre", { class: "json" }, UI.json(run.input)), graphHolder]);

  async function act(what, body) {
    const answer = await UI.api("/api/runs/" + encodeURIComponent(runId) + "/" + what,
      { method: "POST", body: JSON.stringify(body || {}), headers: { "Content-Type": "application/json" } });
    notice.replaceChildren(answer.ok ? UI.el("p", { class: "muted" }, answer.body.message || "sent")
      : UI.problem(answer.body.error));
    if (answer.ok && what === "resume") follow();  // it runs again: follow it live
  }
  const signalName = UI.el("input", { type: "text", id: "signal-name", placeholder: "signal name", class: "filter" });
  const signalData = UI.el("input", { type: "text", id: "signal-data", placeholder: "JSON (optional)", class: "filter" });
  UI.append(controls, [
    UI.el("button", { class: "danger", id: "cancel", type: "button", onclick: () => act("cancel") }, "Cancel"),
    UI.el("button", { class: "secondary", id: "resume", type: "button", onclick: () => act("resume") }, "Resume"),
    signalName, signalData,
    UI.el("button", { class: "secondary", id: "signal", type: "button",
      onclick: () => act("signal", { name: signalName.value, data: signalData.value }) }, "Send signal")]);

  function draw() {
    head.replaceChildren(UI.el("h1", { class: "mono" }, "Run " + run.run),
      UI.link(UI.agentHref(run.pipeline), run.pipeline), UI.el("span", { id: "run-status" }, UI.badge(run.status)),
      UI.el("span", { class: "muted" }, "started " + UI.time(run.started) + (run.trace_id ? " · trace " + run.trace_id : "")));
    document.getElementById("cancel").disabled = !(run.status === "running" || run.status === "waiting");
    document.getElementById("resume").disabled = !(run.status === "failed" || run.status === "cancelled");
    timeline.replaceChildren(UI.timelineTable(run));
    const waiting = [...run.steps.values()].find((st) => st.status === "waiting" && st.signal);
    if (waiting && !signalName.value) signalName.value = waiting.signal;  // what it waits for
    result.replaceChildren();
    if (run.output !== undefined) UI.append(result, [UI.el("h2", {}, "Output"), UI.el("pre", { class: "json", id: "run-output" }, UI.json(run.output))]);
    if (run.error) UI.append(result, [UI.el("h2", {}, "Error"), UI.problem(run.error)]);
    for (const box of graphHolder.querySelectorAll("[data-step]")) {
      const step = run.steps.get(box.getAttribute("data-step"));
      box.classList.remove("st-ok", "st-failed", "st-running", "st-skipped");
      if (step) box.classList.add("st-" + step.status);
    }
  }
  draw();
  UI.api("/api/agents/" + encodeURIComponent(run.pipeline)).then((info) => {
    if (info.ok && info.body.graph && graphHolder.isConnected) {
      graphHolder.replaceChildren(UI.el("h2", {}, "Steps"), UI.graph(info.body.graph));
      draw();
    }
  });
  let source = null;
  function follow() {
    if (source) return;
    source = UI.stream("/api/runs/" + encodeURIComponent(runId) + "/events", {
      journal: (event) => { if (UI.runEvent(run, event)) draw(); },
      problem: (error) => notice.replaceChildren(UI.problem(error)),
      end: () => {
        source.close(); source = null;
        const live = document.getElementById("live"); live.textContent = ""; live.className = "live";
      },
    });
  }
  if (run.status === "running" || run.status === "waiting") follow();
};

// A run as the page keeps it: built from the journal's events, one at a time.
UI.runState = function (shown) {
  const run = { run: shown.run, pipeline: shown.pipeline, status: shown.status || "running",
    input: shown.input, steps: new Map(), applied: 0, started: null, trace_id: null };
  if (shown.output !== undefined) run.output = shown.output;
  if (shown.error) run.error = shown.error;
  (shown.events || []).forEach((event, index) => UI.runEvent(run, Object.assign({}, event, { index: index })));
  run.status = shown.status || run.status;
  return run;
};

UI.runEvent = function (run, e) {
  if (!e || typeof e !== "object") return false;
  // the live stream starts from the run's first event: skip those already applied
  if (typeof e.index === "number") { if (e.index < run.applied) return false; run.applied = e.index + 1; }
  if (e.trace_id) run.trace_id = e.trace_id;
  const kind = String(e.event || "");
  // a pipeline that a step calls writes under the same run id: only the run's own count
  if (run.pipeline && e.pipeline && e.pipeline !== run.pipeline) return true;
  if (kind === "run_started") { run.started = e.at; if (e.input !== undefined) run.input = e.input; }
  else if (kind === "run_finished") { run.status = "ok"; run.output = e.output; run.ended = e.at; }
  else if (kind === "run_failed") { run.status = "failed"; run.error = e.error; run.ended = e.at; }
  else if (kind === "run_cancelled") { run.status = "cancelled"; run.ended = e.at; }
  else if (kind === "run_resumed") { run.status = "running"; delete run.error; delete run.output; run.ended = null; }
  else if (kind.startsWith("step_") && e.step) {
    const path = String(e.step);
    const step = run.steps.get(path) || { step: path, status: "pending" };
    run.steps.set(path, step);
    if (e.attempt) step.attempt = e.attempt;
    if (kind === "step_started") { step.status = "running"; step.started = e.at; step.ended = null; }
    else if (kind === "step_finished") { step.status = "ok"; step.ended = e.at; step.output = e.output; step.error = null; }
    else if (kind === "step_failed") { step.status = "failed"; step.ended = e.at; step.error = e.error; }
    else if (kind === "step_skipped") { step.status = "skipped"; step.at = e.at; }
    else if (kind === "step_waiting") {
      step.status = "waiting"; run.status = "waiting"; step.signal = e.signal || null;
      step.progress = e.signal ? "waits for the signal " + e.signal : "sleeps" + (e.until ? " until " + UI.time(e.until) : "");
    }
    else if (kind === "step_progress") {
      step.progress = [typeof e.progress === "number" ? Math.round(e.progress * 100) + "%" : "", e.message || ""].join(" ").trim();
    }
  }
  return true;
};

UI.timelineTable = function (run) {
  const body = UI.el("tbody", {});
  for (const s of run.steps.values()) {
    const offset = run.started && s.started ? UI.ms((s.started - run.started) * 1000) : "";
    const duration = s.started && s.ended ? UI.ms((s.ended - s.started) * 1000) : s.status === "running" ? "…" : "";
    const shown = s.error ? UI.problem(s.error) : s.output !== undefined ? UI.el("details", {},
      UI.el("summary", { class: "mono" }, UI.short(JSON.stringify(s.output) || "null", 100)),
      UI.el("pre", { class: "json" }, UI.json(s.output, 20000))) : s.progress || "";
    body.appendChild(UI.el("tr", { "data-step": s.step, "data-status": s.status },
      UI.el("td", { class: "mono" }, s.step), UI.el("td", {}, UI.badge(s.status)),
      UI.el("td", { class: "num" }, s.attempt || ""), UI.el("td", { class: "num" }, offset),
      UI.el("td", { class: "num" }, duration), UI.el("td", { class: "desc" }, shown)));
  }
  if (!run.steps.size) body.appendChild(UI.el("tr", {}, UI.el("td", { colspan: 6, class: "muted" }, "No step has started.")));
  return UI.el("table", { class: "grid timeline" }, UI.el("thead", {}, UI.el("tr", {},
    ["Step", "Status", "Attempt", "At", "Duration", "Output or error"].map((c) => UI.el("th", {}, c)))), body);
};
