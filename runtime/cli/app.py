"""`mesh-runtime`: the parser, assembled from each command module's `register`, and `main`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime.cli import (
    bus_commands,
    describe_command,
    event_commands,
    file_commands,
    init_command,
    llm_commands,
    orchestration_commands,
    runs_command,
    serve_command,
    status_command,
    test_command,
    ui_command,
)
from runtime.cli.common import Parser, closed_pipe, global_options, package_version
from runtime.core.issues import MeshFileError
from runtime.core.logs import setup_logging

# Each module adds its own subcommands; a new group of commands is one more entry here.
COMMAND_MODULES = (serve_command, file_commands, bus_commands, describe_command,
                   test_command, init_command, llm_commands, status_command,
                   orchestration_commands, event_commands, runs_command,
                   ui_command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `up` hands it to its workers
    setup_logging(args.verbose, getattr(args, "log_level", None),
                  getattr(args, "log_format", "text"))
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
        return code
    except BrokenPipeError:
        return closed_pipe()
    except MeshFileError as exc:
        for issue in sorted([*exc.issues, *exc.warnings]):
            print(issue, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _Version(argparse.Action):
    """--version, reading the installed version only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"mesh-runtime {package_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mesh-runtime", description="A declarative agent mesh on NATS.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    global_options(parser, top=True)
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
