"""The package's layering: imports point down the list of subpackages only, never up or in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
# From the top down; a module may import its own subpackage and any listed below it.
LAYERS = ["cli", "serve", "nats", "load", "pipeline", "core"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("runtime.")}


def test_every_subpackage_imports_only_downwards() -> None:
    wrong = []
    for layer in LAYERS:
        allowed = set(LAYERS[LAYERS.index(layer):])
        for path in sorted((RUNTIME / layer).rglob("*.py")):
            for name in sorted(_imports(path)):
                target = name.split(".")[1]
                if target in LAYERS and target not in allowed:
                    wrong.append(f"{path.relative_to(RUNTIME)} imports {name}")
    assert wrong == []


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
