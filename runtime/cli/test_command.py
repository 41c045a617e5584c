"""`mesh-runtime test [PATH...]`: run `*.test.yaml` files against their meshes, pytest-style."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.cli.common import Commands, add_command

if TYPE_CHECKING:  # imported when the command runs: other commands should not pay for them
    from runtime.meshtest.run import Outcome
    from runtime.meshtest.testfile import TestFile


def register(commands: Commands) -> None:
    test = add_command(commands, "test", _test,
                       "run *.test.yaml files against their meshes (exit 1 if a case fails)")
    test.add_argument("paths", nargs="*", type=Path, default=[Path(".")], metavar="PATH",
                      help="test files, or folders searched with their subfolders (default: .)")
    test.add_argument("-k", dest="only", default="", metavar="TEXT",
                      help="run only the cases whose FILE::NAME contains TEXT (any case)")


def _test(args: argparse.Namespace) -> int:
    from runtime.meshtest.run import Outcome, report_errors, summary
    from runtime.meshtest.testfile import TEST_SUFFIX, TestFileError, find_test_files, load_test_file
    from runtime.nats.embedded import NatsServerError
    from runtime.supervise.runner import run_fast

    started = time.perf_counter()
    if not (args.verbose or args.log_level):  # keep the case lines readable: warnings only
        logging.getLogger().setLevel(logging.WARNING)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = find_test_files(args.paths)
    if not files:
        where = " ".join(str(p) for p in args.paths)
        print(f"error: no *{TEST_SUFFIX} files under {where}", file=sys.stderr)
        return 1
    outcome = Outcome()
    by_mesh: dict[Path, list[TestFile]] = {}
    for path in files:
        try:
            test = load_test_file(path, _display(path))
        except TestFileError as exc:
            report_errors(_display(path), exc.issues, outcome, _print)
            continue
        by_mesh.setdefault(test.mesh, []).append(test)
    if by_mesh:
        try:
            run_fast(_run_all(by_mesh, outcome, args.only))
        except NatsServerError as exc:  # no nats-server binary, or it would not start
            print(f"error: cannot start a NATS server for the tests: {exc}", file=sys.stderr)
            return 2
    print(summary(outcome, time.perf_counter() - started))
    code = 1 if outcome.failed or outcome.errors else 0
    if outcome.deselected and not (outcome.passed or outcome.failed):
        print(f"error: no case matches -k {args.only!r}", file=sys.stderr)
        code = 1
    _exit_now_if_threads_run_on(code)
    return code


def _exit_now_if_threads_run_on(code: int) -> None:
    """A sync handler stuck past its timeout would hold the interpreter's exit until it
    returns (Python joins its threads): the run is over, so leave without it."""
    from runtime.load.handlers import threads_busy

    stuck = threads_busy()
    if stuck:
        print(f"note: {stuck} sync handler call(s) still running past their timeout; "
              "not waiting for them", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


async def _run_all(by_mesh: dict[Path, list[TestFile]], outcome: Outcome, only: str) -> None:
    from runtime.core.issues import MeshFileError
    from runtime.load.loader import load_mesh
    from runtime.meshtest.run import report_errors, run_mesh
    from runtime.nats.catalog import Discovery
    from runtime.nats.connection import connect
    from runtime.nats.embedded import NatsServer, NatsServerError
    from runtime.serve.server import MeshServer

    try:
        nats_server = await asyncio.to_thread(NatsServer().start)  # a free port of its own
    except OSError as exc:  # the binary is there but cannot run
        raise NatsServerError(str(exc)) from None
    try:
        nc = await connect([nats_server.url], name="mesh-runtime test")
        discovery = await Discovery.open(nc)
        for mesh_path, tests in by_mesh.items():
            with _HandlerImports(mesh_path.parent):
                try:
                    mesh = load_mesh(mesh_path)
                except MeshFileError as exc:
                    for test in tests:
                        report_errors(test.display, exc.issues, outcome, _print)
                    continue
                server = MeshServer(nc, discovery)
                try:
                    await run_mesh(nc, server, mesh, tests, outcome, _print, only)
                finally:
                    await server.shutdown()
        await nc.drain()
    finally:
        nats_server.stop()


class _HandlerImports:
    """Each mesh imports its own handlers: two meshes may both have a `handlers.py`. The
    modules a mesh's load brought in from its folder are forgotten when it is done (never
    mesh-runtime's own), and its folder leaves `sys.path`."""

    def __init__(self, folder: Path):
        self.folder = str(folder)

    def __enter__(self) -> None:
        self.before = set(sys.modules)
        while self.folder in sys.path:  # the loader puts it first again
            sys.path.remove(self.folder)

    def __exit__(self, *exc: object) -> None:
        for name in set(sys.modules) - self.before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(self.folder + "/") and name.split(".")[0] != "runtime":
                del sys.modules[name]
        while self.folder in sys.path:
            sys.path.remove(self.folder)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print(line: str) -> None:
    print(line, flush=True)
