"""The package's layering: imports point down the list of subpackages only, never up or in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
# From the top down; a module may import its own subpackage and any listed below it. Folders
# this wave adds have their place here before they exist (README, "Layout").
LAYERS = ["cli", "ui", "meshtest", "supervise", "observe", "triggers", "serve", "runs", "nats",
          "load", "pipeline", "tracing", "core"]
MAX_MODULES = 20  # in one folder, __init__.py not counted
CLI_SUPPORT = {"__init__.py", "app.py", "common.py"}  # every other cli module is a command


def _modules() -> dict[str, Path]:
    found = {}
    for path in RUNTIME.rglob("*.py"):
        parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every runtime module that a file imports, at the top, in a function or for typing."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from runtime.serve import exact_json` names a module
                dotted = f"{node.module}.{alias.name}"
                names.add(dotted if dotted in modules else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("runtime.") and n in modules}


def test_every_subpackage_imports_only_downwards() -> None:
    modules = _modules()
    wrong = []
    for layer in LAYERS:
        allowed = set(LAYERS[LAYERS.index(layer):])
        for path in sorted((RUNTIME / layer).rglob("*.py")):
            for name in sorted(_imports(path, modules)):
                target = name.split(".")[1]
                if target in LAYERS and target not in allowed:
                    wrong.append(f"{path.relative_to(RUNTIME)} imports {name}")
    assert wrong == []


def test_every_subpackage_has_its_place_in_the_layers() -> None:
    folders = sorted(p.name for p in RUNTIME.iterdir() if (p / "__init__.py").exists())
    assert [f for f in folders if f not in LAYERS] == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    circles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == []


def test_no_folder_holds_more_than_twenty_modules() -> None:
    crowded = {}
    for folder in [RUNTIME, *(p for p in RUNTIME.rglob("*") if p.is_dir())]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > MAX_MODULES:
            crowded[str(folder.relative_to(RUNTIME.parent))] = count
    assert crowded == {}


def test_cli_holds_only_argument_parsing_and_command_modules() -> None:
    others = sorted(p.name for p in (RUNTIME / "cli").glob("*.py")
                    if p.name not in CLI_SUPPORT
                    and not p.stem.endswith(("_command", "_commands")))
    assert others == []


def test_every_module_is_in_a_subpackage() -> None:
    at_root = sorted(p.name for p in RUNTIME.glob("*.py"))
    # The package's public API, `python -m runtime`, and two old import paths kept for handlers.
    assert at_root == ["__init__.py", "__main__.py", "context.py", "protocol.py"]


def test_handlers_import_the_public_api_from_the_root_and_the_old_paths_still_work() -> None:
    import runtime
    from runtime.context import Context as OldContext
    from runtime.protocol import INVALID_INPUT as OLD_CODE
    from runtime.protocol import MeshError as OldMeshError

    assert (runtime.Context, runtime.MeshError, runtime.INVALID_INPUT) == (
        OldContext, OldMeshError, OLD_CODE)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    return groups
