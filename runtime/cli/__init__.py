"""The `mesh-runtime` command line: one module per group of commands, assembled in `app`."""

from runtime.cli.app import main

__all__ = ["main"]
