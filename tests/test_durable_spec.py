"""`durable:`, `run_key:`, `wait:` and `sleep:` in mesh.yaml: what the loader accepts, and
every mistake as file:line:col: path: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from runtime.load.loader import load_mesh
from tests.helpers import write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    return code, [line.replace(str(path), "mesh.yaml") for line in err.splitlines()]


def test_durable_pipeline_with_wait_sleep_and_run_key_loads(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        agents:
          a.echo: {handler: "{mod}:echo"}
        pipelines:
          p.order:
            durable: true
            run_key: ${{ input.order_id }}
            steps:
              - {id: charge, call: a.echo}
              - {id: approval, wait: {signal: approve, timeout: 24h}}
              - {id: pause, sleep: 10m}
        """, HANDLERS)
    mesh = load_mesh(path)
    assert mesh.pipelines["p.order"].durable is True
    assert mesh.pipelines["p.order"].spec.steps[1].wait is not None
    assert mesh.pipelines["p.order"].spec.steps[1].wait.timeout == 86400.0
    assert mesh.pipelines["p.order"].spec.steps[2].sleep == 600.0


def test_defaults_durable_applies_unless_a_pipeline_says_otherwise(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        defaults: {durable: true}
        agents:
          a.echo: {handler: "{mod}:echo"}
        pipelines:
          p.one: {steps: [{id: a, call: a.echo}]}
          p.two: {durable: false, steps: [{id: a, call: a.echo}]}
        """, HANDLERS)
    mesh = load_mesh(path)
    assert mesh.pipelines["p.one"].durable is True
    assert mesh.pipelines["p.two"].durable is False


def test_mistakes_are_reported_with_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        agents:
          a.echo: {handler: "{mod}:echo"}
        pipelines:
          p.plain:
            run_key: ${{ input.id }}
            steps:
              - {id: w, wait: {signal: go}}
          p.bad:
            durable: true
            run_key: fixed
            steps:
              - {id: w, wait: {signal: "no good"}, timeout: 5s}
              - {id: v, wait: {signal: go}}
              - {id: u, wait: {signal: go}}
              - {id: s, sleep: 1m, for_each: input.items}
              - id: p
                parallel:
                  b: {sleep: 1s}
        """, HANDLERS)
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:6:14: pipelines.p.plain.run_key: run_key needs a durable pipeline: add "
        "`durable: true` to the pipeline (or to defaults:)",
        "mesh.yaml:8:23: pipelines.p.plain.steps[0].wait: wait steps need a durable pipeline: "
        "add `durable: true` to the pipeline (or to defaults:)",
        "mesh.yaml:11:14: pipelines.p.bad.run_key: run_key is an expression over the input, "
        "like ${{ input.order_id }}; a constant would allow one run ever",
        "mesh.yaml:13:32: pipelines.p.bad.steps[0].wait.signal: signal name 'no good' must be "
        "letters, digits, _ and - (it is one NATS subject token)",
        "mesh.yaml:13:53: pipelines.p.bad.steps[0].timeout: timeout does not apply to a wait "
        "step; use wait: {signal: ..., timeout: ...}",
        "mesh.yaml:15:32: pipelines.p.bad.steps[2].wait.signal: signal 'go' is already awaited "
        "by the step at steps[1]; give each wait step its own signal",
        "mesh.yaml:16:38: pipelines.p.bad.steps[3].for_each: for_each does not apply to a "
        "sleep step",
        "mesh.yaml:19:22: pipelines.p.bad.steps[4].parallel.b.sleep: a sleep step cannot run "
        "inside parallel (a parked run holds no branch open); put it in the top-level steps",
    ]
