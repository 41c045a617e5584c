"""`mesh-runtime ui` on a mesh of 1,000 agents: how long the page takes to draw every row.

    python benchmarks/ui.py [--agents 1000] [--rounds 5]

Starts a nats-server, `mesh-runtime up` on a generated mesh, and `mesh-runtime ui`, then
opens the page in headless Chromium (Debian's `chromium`, driven by Playwright) once per
round in a fresh browser context (no cache) and reads when the table of every agent was
painted (performance.now() at the first frame after the first reading was drawn: from the
start of navigation). Beside it, side by side in the same rounds: `mesh-runtime status
--json` on the same mesh, the terminal's way to see the same rows (process start included).
Target: first paint < 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _harness import Child, Children, child_env, machine_line, mesh_runtime_argv, start_nats
from _startup import generate_mesh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    argv = mesh_runtime_argv()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if argv is None or chromium is None:
        print("needs the mesh-runtime command (pip install -e '.[test]') and Debian's chromium",
              file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    print(machine_line())
    folder = Path(tempfile.mkdtemp(prefix="mesh-bench-ui-"))
    mesh_file = generate_mesh(folder, args.agents)
    nats = start_nats()
    try:
        with Children() as children:
            up = children.start(Child("up", [*argv, "up", "-f", str(mesh_file), "--nats", nats.url,
                                             "--no-reload"], cwd=folder))
            _wait_log(up, f"ready: {args.agents} agents", 180)
            port = _free_port()
            ui = children.start(Child("ui", [*argv, "ui", "--nats", nats.url, "--port", str(port)]))
            _wait_log(ui, "serving the mesh", 60)
            base = f"http://127.0.0.1:{port}"
            urllib.request.urlopen(base + "/api/mesh", timeout=30).close()  # its first reading
            paints, statuses = [], []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium,
                                                     args=["--no-sandbox", "--disable-gpu"])
                for round_ in range(args.rounds):
                    context = browser.new_context(viewport={"width": 1280, "height": 860})
                    page = context.new_page()
                    page.goto(base + "/")
                    page.wait_for_function("() => window.meshFirstPaint !== undefined",
                                           timeout=60_000)
                    rows = page.locator("#mesh-rows tr").count()
                    paints.append(page.evaluate("() => window.meshFirstPaint"))
                    context.close()
                    started = time.perf_counter()
                    subprocess.run([*argv, "status", "--json", "--nats", nats.url], check=True,
                                   capture_output=True, env=child_env())
                    statuses.append((time.perf_counter() - started) * 1000)
                    print(f"round {round_ + 1}: first paint {paints[-1]:.0f} ms ({rows} rows), "
                          f"status --json {statuses[-1]:.0f} ms", file=sys.stderr)
                browser.close()
    finally:
        nats.stop()
        shutil.rmtree(folder, ignore_errors=True)
    paint, status = statistics.median(paints), statistics.median(statuses)
    print(f"{args.agents} agents, median of {args.rounds} rounds:")
    print(f"  page first paint (every row drawn)  {paint:7.0f} ms   min {min(paints):.0f}, "
          f"max {max(paints):.0f}")
    print(f"  mesh-runtime status --json          {status:7.0f} ms   min {min(statuses):.0f}, "
          f"max {max(statuses):.0f}")
    print(f"  ratio page / status: {paint / status:.2f}; target first paint < 1000 ms: "
          f"{'met' if paint < 1000 else 'MISSED'}")
    return 0


def _wait_log(child: Child, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log_path and text in child.log_path.read_text(errors="replace"):
            return
        if child.exit_code() is not None:
            raise SystemExit(f"{child.name} exited: {child.last_line()}")
        time.sleep(0.1)
    raise SystemExit(f"{child.name}: no {text!r} within {timeout:g}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    os.environ.pop("NATS_URL", None)
    sys.exit(main())
