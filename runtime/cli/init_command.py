"""`mesh-runtime init [DIR]`: a new mesh folder that `validate`, `test` and `up` accept as it is."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from runtime.cli.common import Commands, add_command

MESH = """\
# yaml-language-server: $schema=./schemas/mesh.schema.json
# A new mesh: `mesh-runtime up` serves it; `mesh-runtime test` runs mesh.test.yaml.
version: 1
name: {name}

nats:
  url: embedded            # or nats://host:4222; --nats and NATS_URL beat this

defaults:
  timeout: 10s

agents:
  hello.greet:
    description: Greets someone by name.
    handler: handlers:greet        # handlers.py beside this file, function greet
    input: {{$ref: schemas/greeting.json}}
    output:
      type: object
      properties: {{message: {{type: string}}}}
      required: [message]

  hello.shout:
    description: Upper-cases a text.
    handler: handlers:shout
    input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
    output: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}

pipelines:
  hello.loud:
    description: Greets someone, loudly.
    input: {{$ref: schemas/greeting.json}}
    steps:
      - id: greeting
        call: hello.greet            # no `with:`: the pipeline's input is passed on
      - id: loud
        call: hello.shout
        with: {{text: "${{{{ steps.greeting.message }}}}"}}
    returns:
      message: ${{{{ steps.loud.text }}}}
"""

HANDLERS = '''\
"""The handlers mesh.yaml names (`handler: handlers:greet`). A running `mesh-runtime up`
picks up every save of this file (and of mesh.yaml): no restart needed."""

from __future__ import annotations

from typing import Any

from runtime import INVALID_INPUT, Context, MeshError


def greet(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A plain function runs in a thread pool; `ctx` is optional."""
    name = payload["name"].strip()
    if not name:  # a mistake of the caller's: answered with this code, not handler_error
        raise MeshError(INVALID_INPUT, "name is blank")
    return {"message": f"{payload['greeting']}, {name}!"}


async def shout(payload: dict[str, Any]) -> dict[str, Any]:
    """An async function is awaited on the event loop."""
    return {"text": payload["text"].upper()}
'''

GREETING = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "greeting": {"type": "string", "default": "Hello"},
    },
    "required": ["name"],
    "additionalProperties": False,
}

TESTS = """\
# `mesh-runtime test` runs these cases against mesh.yaml on a NATS server of its own.
mesh: mesh.yaml
cases:
  - name: greets by name, with the default greeting
    call: hello.greet
    input: {name: Ada}
    expect:
      output: {message: "Hello, Ada!"}

  - name: a blank name is the caller's mistake
    call: hello.greet
    input: {name: " "}
    expect:
      error: {code: invalid_input, message: name is blank}

  - name: the pipeline greets loudly
    call: hello.loud
    input: {name: Ada, greeting: Hi}
    expect:
      output: {message: "HI, ADA!"}

  - name: a pipeline step can be stubbed
    call: hello.loud
    input: {name: Ada}
    stubs:
      hello.greet: {output: {message: Psst}}
    expect:
      assert: ["output.message == 'PSST'"]
"""


def register(commands: Commands) -> None:
    init = add_command(commands, "init", _init,
                       "create a new mesh folder: mesh.yaml, handlers.py, schemas/, a test file")
    init.add_argument("dir", nargs="?", type=Path, default=Path("."),
                      help="the folder (created if missing; default: the current folder)")


def files_for(folder: Path) -> dict[Path, str]:
    """What `init` writes, by path."""
    from runtime.load.model import mesh_json_schema

    name = re.sub(r"[^A-Za-z0-9_-]+", "-", folder.resolve().name).strip("-") or "mesh"
    return {
        folder / "mesh.yaml": MESH.format(name=name),
        folder / "handlers.py": HANDLERS,
        folder / "mesh.test.yaml": TESTS,
        folder / "schemas" / "greeting.json": json.dumps(GREETING, indent=2) + "\n",
        folder / "schemas" / "mesh.schema.json": json.dumps(mesh_json_schema(), indent=2) + "\n",
    }


def _init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        print(f"error: {folder} is a file, not a folder", file=sys.stderr)
        return 2
    files = files_for(folder)
    # A symlink counts as taken even when it points nowhere: writing through it would
    # create a file wherever it points.
    taken = [str(path) for path in files if path.exists() or path.is_symlink()]
    if taken:
        print(f"error: {', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; "
              "init never overwrites a file (name a new folder: mesh-runtime init my-mesh)",
              file=sys.stderr)
        return 1
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as file:  # never through a link made meanwhile
            file.write(text)
    print(f"created {folder}/: " + ", ".join(str(p.relative_to(folder)) for p in files))
    go = "" if folder == Path(".") else f"cd {folder} && "
    print(f"next: {go}mesh-runtime test && mesh-runtime up")
    return 0
