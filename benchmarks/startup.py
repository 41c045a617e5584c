"""Startup benchmark: `mesh-runtime up` to `ready:`, and loading a 1,000-agent mesh.yaml.

    python benchmarks/startup.py [--runs 5] [--load-runs 3]

(1) The repo's demo mesh.yaml with its embedded NATS on 127.0.0.1:4222 (skipped when that
port is taken): time from launch to the `ready:` line, then SIGTERM and wait for the exit.
(2) A generated 1,000-agent mesh.yaml: `runtime.load.loader.load_mesh` in a fresh Python, and
`mesh-runtime validate -f` as a whole command. Medians. Exit status 1 when a step failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _client import median
from _harness import ROOT, format_table, machine_line, mesh_runtime_argv, orphan_notes
from _startup import LoadProbe, generate_mesh, port_taken, time_up, wait_port_free

DEMO = ROOT / "mesh.yaml"
EMBEDDED_PORT = 4222
READY_TARGET = 1.0
LOAD_TARGET = 3.0
AGENTS = 1000

Row = list[str]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="`up` runs (default 5)")
    parser.add_argument("--load-runs", type=int, default=3, help="load/validate runs (default 3)")
    return parser.parse_args()


def seconds_row(label: str, runs: list[float], target: str) -> Row:
    listed = " ".join(f"{r:.2f}" for r in runs)
    return [label, f"{median(runs):.3f}", listed, target]


def up_rows(argv: list[str], runs: int) -> tuple[list[Row], bool]:
    label = "up → ready: (demo mesh, embedded NATS)"
    if not DEMO.exists():
        return [[label, f"skipped: {DEMO} does not exist"]], True
    if port_taken(EMBEDDED_PORT):
        return [[label, f"skipped: 127.0.0.1:{EMBEDDED_PORT} is taken (stop what listens)"]], True
    ready: list[float] = []
    stops: list[float] = []
    codes: list[int | None] = []
    for _ in range(runs):
        result = time_up([*argv, "up", "-f", str(DEMO)], ROOT, timeout=20.0)
        if result.failure:
            return [[label, f"failed: {result.failure}"]], False
        ready.append(result.ready)
        stops.append(result.stopped)
        codes.append(result.code)
        if not wait_port_free(EMBEDDED_PORT, timeout=10.0):
            return [[label, f"failed: port {EMBEDDED_PORT} still taken after `up` exited"]], False
    bad = [c for c in codes if c != 0]
    stop_note = f"exit 0 expected: got {bad[0]} in {len(bad)} of {len(codes)}" if bad else ""
    return [
        seconds_row(label, ready, f"< {READY_TARGET:g} s"),
        seconds_row("up: SIGTERM → exit", stops, stop_note),
    ], not bad


def load_rows(argv: list[str], runs: int) -> tuple[list[Row], bool]:
    """load_mesh() in a fresh Python, and `mesh-runtime validate`, each failing on its own."""
    loads: list[float] = []
    wholes: list[float] = []
    validates: list[float] = []
    load_failure = validate_failure = ""
    agents: int | None = None
    with tempfile.TemporaryDirectory(prefix="mesh-bench-1000-") as folder:
        mesh_file = generate_mesh(Path(folder), AGENTS)
        probe = LoadProbe(mesh_file)
        validate = [*argv, "validate", "-f", str(mesh_file)]
        for _ in range(runs):
            if not load_failure:
                load = probe.run()
                load_failure, agents = load.failure, load.agents
                loads.append(load.load)
                wholes.append(load.whole)
            if not validate_failure:
                took, validate_failure = LoadProbe.time_command(validate)
                validates.append(took)
    counted = f", {agents} loaded" if agents is not None else ""
    load_label = f"load_mesh() in-process ({AGENTS:,} agents{counted})"
    validate_label = f"mesh-runtime validate -f ({AGENTS:,} agents)"
    rows = (
        [[load_label, f"failed: {load_failure}"]]
        if load_failure
        else [seconds_row(load_label, loads, ""),
              seconds_row("python -c 'load_mesh(...)' whole", wholes, "")]
    )  # fmt: skip
    rows.append(
        [validate_label, f"failed: {validate_failure}"]
        if validate_failure
        else seconds_row(validate_label, validates, f"< {LOAD_TARGET:g} s")
    )
    return rows, not (load_failure or validate_failure)


def main() -> int:
    args = parse_args()
    argv = mesh_runtime_argv()
    if argv is None:
        print("mesh-runtime is not installed (pip install -e .)", file=sys.stderr)
        return 1
    up, up_ok = up_rows(argv, args.runs)
    load, load_ok = load_rows(argv, args.load_runs)
    header = ["measure", "median (s)", "runs (s)", "target"]
    print(format_table(header, [*up, *load]))
    print(f"runs: {args.runs} of `up`, {args.load_runs} of load/validate")
    for note in orphan_notes():
        print(note)
    print(machine_line())
    return 0 if up_ok and load_ok else 1


if __name__ == "__main__":
    sys.exit(main())
