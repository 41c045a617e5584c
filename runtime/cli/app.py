"""`mesh-runtime`: the parser, assembled from each command module's `register`, and `main`."""

from __future__ import annotations

import argparse
import logging
import sys

from runtime.cli import (
    bus_commands,
    describe_command,
    file_commands,
    init_command,
    llm_commands,
    meshtest_command,
    serve_command,
)
from runtime.cli.common import global_options, package_version
from runtime.core.issues import MeshFileError

# Each module adds its own subcommands; a new group of commands is one more entry here.
COMMAND_MODULES = (serve_command, file_commands, bus_commands, describe_command,
                   meshtest_command, init_command, llm_commands)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level or ("debug" if args.verbose else "info"))
    try:
        return int(args.run(args) or 0)
    except MeshFileError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-runtime", description="A declarative agent mesh on NATS.")
    parser.add_argument("--version", action="version", version=f"mesh-runtime {package_version()}")
    global_options(parser, top=True)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def _setup_logging(level: str) -> None:
    class Plain(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Plain("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # we log connection changes ourselves


if __name__ == "__main__":
    sys.exit(main())
