"""Commands that read a mesh file and need no NATS: validate, graph, schema."""

from __future__ import annotations

import argparse
import json
import sys

from runtime.cli.common import Commands, add_command, file_option


def register(commands: Commands) -> None:
    validate = add_command(commands, "validate", _validate,
                           "check a mesh file whole (exit 0 valid, 1 invalid)")
    file_option(validate)
    graph = add_command(commands, "graph", _graph,
                        "print pipelines (and agents' triggers) as Mermaid flowcharts")
    file_option(graph)
    graph.add_argument("pipeline", nargs="?")
    add_command(commands, "schema", _schema, "print the JSON Schema of mesh.yaml")


def _validate(args: argparse.Namespace) -> int:
    from runtime.load.loader import load_mesh

    mesh = load_mesh(args.file)
    for warning in mesh.warnings:
        print(warning, file=sys.stderr)
    print(f"{args.file}: ok ({len(mesh.agents)} agents, {len(mesh.pipelines)} pipelines)")
    return 0


def _graph(args: argparse.Namespace) -> int:
    from runtime.load.loader import load_mesh
    from runtime.pipeline.graph import to_mermaid

    mesh = load_mesh(args.file)
    try:
        triggered = {name: list(a.triggers) for name, a in mesh.spec.agents.items() if a.triggers}
        print(to_mermaid(dict(mesh.spec.pipelines), args.pipeline, triggered))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _schema(args: argparse.Namespace) -> int:
    from runtime.load.model import mesh_json_schema

    print(json.dumps(mesh_json_schema(), indent=2))
    return 0
