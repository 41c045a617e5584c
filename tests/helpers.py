"""Test helpers: write a mesh folder, run the CLI the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_mesh(folder: Path, text: str, handlers: str | None = None) -> tuple[Path, str]:
    """Write mesh.yaml (and a uniquely named handler module); returns (path, module name).

    `{mod}` in the text is replaced by the module name, unique per call so that
    Python's module cache never serves one test's handlers to another.
    """
    module = f"handlers_{uuid.uuid4().hex[:8]}"
    if handlers is not None:
        (folder / f"{module}.py").write_text(textwrap.dedent(handlers))
    path = folder / "mesh.yaml"
    path.write_text(textwrap.dedent(text).lstrip().replace("{mod}", module))
    return path, module


def cli(*args: str, cwd: Path | None = None, input: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `mesh-runtime ARGS` as a separate process, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args], cwd=cwd or ROOT, input=input,
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
