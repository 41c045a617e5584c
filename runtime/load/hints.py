"""One line on the usual cause of a mistake, added to the message that reports it."""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path

_MODULES_LISTED = 500  # a mesh folder beside a huge tree: look at this many names at most


def yaml_hint(problem: str, context: str, line: str) -> str:
    """The usual cause of a YAML syntax error, as ` (...)`, or ''.

    `line` is the text of the line the parser stopped on.
    """
    if "'\\t'" in problem or "\t" in line[: len(line) - len(line.lstrip())]:
        return " (a tab: YAML indents with spaces only)"
    if "flow" in context and "${{" in line:
        return (' (an unquoted ${{ }} inside {...} or [...]: quote it, like '
                '{text: "${{ input.text }}"})')
    if "mapping values are not allowed" in problem or "expected <block end>" in problem:
        return (" (usually an odd indent: keys of one mapping line up exactly; or a ': ' "
                "inside a value that needs quotes)")
    return ""


def module_hint(module: str, folder: Path) -> str:
    """A did-you-mean among the modules beside the mesh file, and where Python looked."""
    parts = module.split(".")
    beside = folder.joinpath(*parts[:-1])  # `pkg.sub.mod`: the modules beside it, too
    nearby = [f"{'.'.join(parts[:-1])}.{name}" for name in _modules_beside(beside)] \
        if len(parts) > 1 else []
    close = difflib.get_close_matches(module, [*nearby, *_modules_beside(folder)], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (looked in {folder}, the mesh file's folder, then on Python's path)"


def handler_file_hint(spec: str) -> str | None:
    """For `./handlers.py:f` and the like: what to write instead, else None."""
    module, _, attrs = spec.partition(":")
    if not (module.endswith(".py") or "/" in module or "\\" in module):
        return None
    parts = [p for p in module.removesuffix(".py").replace("\\", "/").split("/")
             if p not in ("", ".")]
    if not parts or ".." in parts:
        return (f"handler names a module, not a file: put the module beside mesh.yaml (or "
                f"in a package below it) and write 'module:{attrs or 'function'}'")
    return (f"handler names a module, not a file: write '{'.'.join(parts)}:{attrs or 'f'}' "
            f"(not '{spec}')")


def _modules_beside(folder: Path) -> list[str]:
    names: list[str] = []
    try:
        entries = list(itertools.islice(folder.iterdir(), _MODULES_LISTED))
    except OSError:
        return names
    for entry in entries:
        if entry.suffix == ".py" and entry.stem.isidentifier():
            names.append(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            names.append(entry.name)
            names += [f"{entry.name}.{sub.stem}" for sub in itertools.islice(
                entry.glob("*.py"), _MODULES_LISTED) if sub.stem != "__init__"]
    return sorted(names)
