"""`"package.module:attribute"` to the object it names, with one exact message per mistake."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any


class ImportFromStringError(ValueError):
    """The import string is malformed, or its module or attribute cannot be found."""


class ModuleNotFound(ImportFromStringError):
    """The module itself is not found (not one it imports): `module` is its name."""

    def __init__(self, module: str):
        super().__init__(f"module '{module}' not found")
        self.module = module


class ModuleFailed(ImportFromStringError):
    """The module was found but raised while importing (a SyntaxError, say): every agent
    whose handler it holds fails for this one reason."""

    def __init__(self, module: str, message: str):
        super().__init__(message)
        self.module = module


def also_named_by(message: str, agents: list[str]) -> str:
    """`message` of a module that failed, saying which agents' handlers it holds."""
    if len(agents) < 2:
        return message
    shown = ", ".join(agents[:10]) + (f" and {len(agents) - 10} more" if len(agents) > 10 else "")
    return f"{message} (the handler module of {len(agents)} agents: {shown})"


def import_from_string(spec: str) -> Any:
    """Import `module:attr` (attr may be dotted); raises ImportFromStringError."""
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs or ":" in attrs:
        raise ImportFromStringError(
            f"handler must be 'module:attribute' (like 'handlers:summarize'), got '{spec}'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name) and module_name[len(exc.name):][:1] in ("", "."):
            raise ModuleNotFound(module_name) from None
        raise ModuleFailed(
            module_name, f"module '{module_name}' failed to import: No module named '{exc.name}'"
        ) from None
    except SyntaxError as exc:  # where, in the form editors jump to
        raise ModuleFailed(
            module_name, f"module '{module_name}' failed to import: {_position(exc)}: "
            f"{type(exc).__name__}: {exc.msg}"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise ModuleFailed(
            module_name, f"module '{module_name}' failed to import: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for attr in attrs.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ImportFromStringError(
                f"module '{module_name}' has no attribute '{attrs}'"
            ) from None
    return target


def _position(error: SyntaxError) -> str:
    """`file:line:col` of a syntax error, the file relative to the working folder."""
    shown = error.filename or "?"
    with contextlib.suppress(ValueError):
        shown = str(Path(shown).resolve().relative_to(Path.cwd()))
    return f"{shown}:{error.lineno or 0}:{error.offset or 0}"
