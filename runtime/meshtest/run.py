"""Running `*.test.yaml` files: one embedded NATS server, each mesh served in turn, stubs per case."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.issues import Issue
from runtime.core.text import suggest
from runtime.load.mesh import ExternalDef, Mesh
from runtime.meshtest.check import differences
from runtime.meshtest.stubs import stub_for
from runtime.meshtest.testfile import Case, Stubbed, TestFile
from runtime.nats.caller import call_agent
from runtime.serve.server import MeshServer

Report = Callable[[str], None]


@dataclass
class Outcome:
    passed: int = 0
    failed: int = 0
    errors: int = 0  # files that could not run: their own mistakes, or their mesh's
    deselected: int = 0  # cases left out by -k


def check_names(test: TestFile, mesh: Mesh) -> list[Issue]:
    """`call:` and every stub must name something the mesh serves or declares."""
    served = set(mesh.endpoints)
    known = served | set(mesh.external)
    issues = []
    for i, case in enumerate(test.cases):
        if case.call in mesh.external and case.call not in case.stubs:
            issues.append(test.doc.issue(("cases", i, "call"), f"'{case.call}' is served by another "
                                         "process (external:): stub it to call it in a test"))
        elif case.call not in known:
            issues.append(test.doc.issue(("cases", i, "call"), f"'{case.call}' is not an agent or "
                                         f"pipeline of {test.mesh.name}{suggest(case.call, sorted(served))}"))
        for name in case.stubs:
            if name not in known:
                hint = suggest(name, sorted(known))
                issues.append(test.doc.issue(("cases", i, "stubs", name), f"cannot stub '{name}': "
                                             f"not an agent of {test.mesh.name}{hint}", key=True))
            else:
                issues.extend(_stub_output_issues(test, mesh, (i, name), case.stubs[name]))
    return issues


def _stub_output_issues(test: TestFile, mesh: Mesh, where: tuple[int, str],
                        stubbed: Stubbed) -> list[Issue]:
    """A stub's output must be one the real agent could give: else the test proves nothing."""
    index, name = where
    target = mesh.endpoints.get(name) or mesh.external[name]
    schema = target.output
    streaming = target.spec.streaming if isinstance(target, ExternalDef) else target.streaming
    issues = []
    for n, answer in enumerate(stubbed.answers):
        if answer.error is not None or schema is None:
            continue
        # A streaming agent's schema is each chunk's; its stub's output lists the chunks.
        items = answer.output if streaming and isinstance(answer.output, list) else [answer.output]
        errors = [e for item in items for e in schema.errors(item)]
        if errors:
            path = ("cases", index, "stubs", name, *(() if stubbed.repeat else (n,)), "output")
            first = errors[0]
            issues.append(test.doc.issue(path, f"not an output '{name}' could give: "
                                         f"{first['path'] or '/'}: {first['message']}"))
    return issues


async def run_mesh(nc: Client, server: MeshServer, mesh: Mesh, tests: list[TestFile],
                   outcome: Outcome, report: Report, only: str = "") -> None:
    """Serve `mesh` and run the cases of `tests` (those whose label contains `only`)."""
    await server.apply(mesh)
    for test in tests:
        issues = check_names(test, mesh)
        if issues:
            report_errors(test.display, issues, outcome, report)
            continue
        for index, case in enumerate(test.cases):
            label = f"{test.display}::{test.case_name(index)}"
            if only.lower() not in label.lower():
                outcome.deselected += 1
                continue
            started = time.perf_counter()
            found = await run_case(nc, server, mesh, case)
            took = (time.perf_counter() - started) * 1000
            if found:
                outcome.failed += 1
                report(f"FAIL  {label} ({took:.0f} ms)")
                for line in found:
                    report(f"      {line}")
            else:
                outcome.passed += 1
                report(f"ok    {label} ({took:.0f} ms)")


async def run_case(nc: Client, server: MeshServer, mesh: Mesh, case: Case) -> list[str]:
    """Run one case (its stubs replacing their agents meanwhile); its differences."""
    stubs = [stub_for(nc, mesh, name, answers) for name, answers in case.stubs.items()]
    if stubs:
        await server.apply(_without(mesh, set(case.stubs)))
        for stub in stubs:
            await stub.start()
    try:
        output, error = await _call(nc, mesh, case)
    finally:
        for stub in stubs:
            await stub.stop()
        if stubs:
            await server.apply(mesh)
    return differences(case, output, error)


async def _call(nc: Client, mesh: Mesh, case: Case) -> tuple[Any, p.MeshError | None]:
    from runtime.nats.client import stream

    endpoint = mesh.endpoints.get(case.call)  # None: a stubbed external agent
    # The agent's own timeout answers first; a stub answers at once.
    timeout = (endpoint.timeout if endpoint else mesh.spec.defaults.timeout) + 1
    try:
        if endpoint is not None and endpoint.streaming:
            return [chunk async for chunk in stream(nc, case.call, case.input, timeout)], None
        return await call_agent(nc, case.call, case.input, timeout), None
    except p.MeshError as exc:
        return None, exc


def _without(mesh: Mesh, names: set[str]) -> Mesh:
    return dataclasses.replace(
        mesh, agents={n: a for n, a in mesh.agents.items() if n not in names},
        pipelines={n: d for n, d in mesh.pipelines.items() if n not in names})


def report_errors(display: str, issues: list[Issue], outcome: Outcome, report: Report) -> None:
    outcome.errors += 1
    report(f"ERROR {display}")
    for issue in issues:
        report(f"      {issue}")


def summary(outcome: Outcome, seconds: float) -> str:
    parts = [f"{outcome.passed} passed"]
    if outcome.failed:
        parts.append(f"{outcome.failed} failed")
    if outcome.errors:
        parts.append(f"{outcome.errors} error" + ("s" if outcome.errors > 1 else ""))
    if outcome.deselected:
        parts.append(f"{outcome.deselected} deselected")
    return f"{', '.join(parts)} in {seconds:.2f}s"



