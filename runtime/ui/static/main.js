// The router: #/ (the mesh), #/agent/NAME, #/runs?pipeline=&status=, #/run/ID, #/errors.
"use strict";
UI.route = function () {
  UI.closeStreams();
  const main = document.getElementById("main");
  main.replaceChildren();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch (e) { return p; } });
  let page = "mesh";
  if (parts[0] === "agent" && parts[1]) { page = "agents"; UI.pages.agent(main, parts[1]); }
  else if (parts[0] === "run" && parts[1]) { page = "runs"; UI.pages.run(main, parts[1]); }
  else if (parts[0] === "runs") { page = "runs"; UI.pages.runs(main, params); }
  else if (parts[0] === "errors") { page = "errors"; UI.pages.errors(main); }
  else UI.pages.mesh(main);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("here", link.getAttribute("data-nav") === page);
  }
};
window.addEventListener("hashchange", UI.route);
UI.route();
