// A pipeline's steps drawn as boxes and arrows (from the server's outline of its card).
"use strict";
UI.graph = function (outline, stepPrefix) {
  const root = UI.el("div", { class: "graph" });
  const triggers = Array.isArray(outline.triggers) ? outline.triggers : [];
  if (triggers.length) {
    UI.append(root, [UI.el("div", { class: "triggers" },
      triggers.map((t) => UI.el("div", { class: "node pill trigger" }, "⚡ " + t))), UI.el("div", { class: "arrow" })]);
  }
  UI.append(root, [UI.el("div", { class: "node pill" }, "input"), UI.el("div", { class: "arrow" })]);
  UI.append(root, UI.graphSequence(outline.steps || [], ""));
  const end = outline.returns ? "returns: " + outline.returns : "output";
  UI.append(root, [UI.el("div", { class: "node pill" }, end)]);
  if (outline.cut) UI.append(root, UI.el("p", { class: "muted" }, "(cut: a big pipeline)"));
  return root;
};

UI.graphSequence = function (nodes, path) {
  const parts = [];
  for (const node of nodes) {
    const here = path ? path + "." + node.id : node.id;
    parts.push(UI.graphNode(node, here), UI.el("div", { class: "arrow" }));
  }
  return parts;
};

UI.graphNode = function (node, path) {
  const box = UI.el("div", { class: "node" + (node.for_each ? " many" : "") +
    (node.branches ? " fork" : ""), "data-step": path || "" });
  if (node.when) UI.append(box, UI.el("div", { class: "when" }, "when " + node.when + " (else skipped)"));
  if (node.id) UI.append(box, UI.el("div", { class: "title" }, node.id));
  UI.append(box, UI.el("div", { class: "action" }, node.action));
  if (node.for_each) UI.append(box, UI.el("div", { class: "note" }, "for each " + node.for_each));
  if (node.notes) UI.append(box, UI.el("div", { class: "note" }, node.notes));
  if (node.branches) {
    const row = UI.el("div", { class: "branches" });
    for (const branch of node.branches) {
      const column = UI.el("div", { class: "branch" }, UI.el("div", { class: "label" }, branch.name));
      const steps = branch.steps || [];
      // a branch that is one step without its own id is named by the branch
      const inner = steps.length === 1 && !steps[0].id ? [UI.graphNode(steps[0], path + "." + branch.name)]
        : UI.graphSequence(steps, path + "." + branch.name).slice(0, -1);
      UI.append(column, inner);
      row.appendChild(column);
    }
    box.appendChild(row);
  }
  return box;
};
