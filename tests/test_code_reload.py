"""Code reload through a real `mesh-runtime up`: edit the handlers' Python while it serves.

An edit of the code starts new worker processes; once they serve, the old ones finish
what they have and exit. Every wait is on a log line or an answer, never a sleep.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.client import open_client
from tests.helpers import ROOT, UpProcess, write_mesh

CODE = """
    import asyncio

    async def answer(payload):
        await asyncio.sleep(0.005)  # so that requests are in flight during a swap
        return {{"n": payload.get("n", 0), "version": {version}}}
"""

MESH = """
    version: 1
    agents:
      {prefix}.answer:
        handler: {mod}:answer
"""


@dataclass
class Served:
    """A mesh folder served by a real `up`, and how to edit its code and its file."""

    folder: Path
    module: str
    prefix: str
    url: str
    up: UpProcess

    @property
    def code(self) -> Path:
        return self.folder / f"{self.module}.py"

    def write_code(self, version: int, extra: str = "") -> None:
        self.code.write_text(textwrap.dedent(CODE.format(version=version)) + textwrap.dedent(extra))

    def write_mesh(self, extra: str = "") -> None:
        text = textwrap.dedent(MESH.format(prefix=self.prefix, mod=self.module))
        (self.folder / "mesh.yaml").write_text(text.lstrip() + extra)

    async def after(self, text: str, edit: object) -> str:
        """Run `edit` (a callable) and wait for the log line with `text` that follows it."""
        start = len(self.up.lines)
        edit()  # type: ignore[operator]
        return await asyncio.to_thread(self.up.wait_for, text, 30, start)


@pytest.fixture
def served(nats_url: str, tmp_path: Path, unique: str) -> Iterator[Served]:
    prefix = f"c{unique}"
    _, module = write_mesh(tmp_path, MESH.replace("{prefix}", prefix), "")
    site = Served(tmp_path, module, prefix, nats_url, None)  # type: ignore[arg-type]
    site.write_code(1)
    site.up = UpProcess(tmp_path / "mesh.yaml", nats_url)
    try:
        site.up.wait_for("ready:")
        yield site
    finally:
        site.up.stop()


async def ask(url: str, name: str) -> dict[str, object]:
    """One call, on a connection of its own."""
    nc = await open_client(url)
    try:
        return await call_agent(nc, name, {}, 5)  # type: ignore[no-any-return]
    finally:
        await nc.close()


@dataclass
class Load:
    """Clients calling one agent back to back until told to stop; every answer counted."""

    nc: Client
    name: str
    clients: int = 6
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    versions: Counter[int] = field(default_factory=Counter)
    last: dict[int, int] = field(default_factory=dict)  # client -> version of its last answer
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(self.clients)))

    async def _client(self, index: int) -> None:
        for n in range(100_000):  # bounded: stops by itself if the test never says so
            if self.stop.is_set():
                return
            try:
                reply = await call_agent(self.nc, self.name, {"n": n}, timeout=5)
            except MeshError as exc:
                self.failures.append(f"{exc.code}: {exc}")
                continue
            if reply["n"] != n:
                self.failures.append(f"wrong reply {reply}")
            self.versions[reply["version"]] += 1
            self.last[index] = reply["version"]


async def test_a_code_edit_under_load_loses_no_request_and_the_new_code_answers(
        served: Served) -> None:
    nc = await open_client(served.url)
    load = Load(nc, f"{served.prefix}.answer")
    running = asyncio.create_task(load.run())
    try:
        while sum(load.versions.values()) < 50:  # the clients are under way
            await asyncio.sleep(0.01)
        line = await served.after("reloaded:", lambda: served.write_code(2))
        for _ in range(500):  # bounded: until every client has had an answer of the new code
            if len(load.last) == load.clients and set(load.last.values()) == {2}:
                break
            await asyncio.sleep(0.01)
        line3 = await served.after("reloaded:", lambda: served.write_code(3))
        for _ in range(500):
            if set(load.last.values()) == {3}:
                break
            await asyncio.sleep(0.01)
    finally:
        load.stop.set()
        await running
        await nc.close()
    assert re.fullmatch(rf"reloaded: generation 2: new code in {served.module}\.py "
                        r"\(1 worker, \d+ ms\)", line)
    assert line3.startswith("reloaded: generation 3: new code in ")
    assert load.failures == []
    assert load.versions[1] > 0 and load.versions[2] > 0 and load.versions[3] > 0
    assert set(load.last.values()) == {3}
    assert served.up.stop() == 0


async def test_a_syntax_error_keeps_the_old_code_serving_and_says_where(
        served: Served) -> None:
    broken = "\n\ndef later(payload:\n    return payload\n"
    with pytest.raises(SyntaxError) as expected:
        compile(textwrap.dedent(CODE.format(version=2)) + broken, served.code.name, "exec")
    rejected = await served.after("reload rejected", lambda: served.write_code(2, broken))
    nc = await open_client(served.url)
    try:
        still = await call_agent(nc, f"{served.prefix}.answer", {"n": 1}, 5)
        fixed = await served.after("reloaded:", lambda: served.write_code(2))
        after = await call_agent(nc, f"{served.prefix}.answer", {"n": 2}, 5)
    finally:
        await nc.close()
    position = f"{served.code.name}:{expected.value.lineno}:{expected.value.offset}"
    problem = next(line for line in served.up.lines if "SyntaxError" in line)
    assert problem == (f"error: mesh.yaml:4:14: agents.{served.prefix}.answer.handler: module "
                       f"'{served.module}' failed to import: {position}: SyntaxError: "
                       f"{expected.value.msg}")
    assert rejected == (f"warning: reload rejected: the new code in {served.code.name} does "
                        "not load; still serving generation 1")
    assert still == {"n": 1, "version": 1}
    assert fixed.startswith("reloaded: generation 2: new code in ")
    assert after == {"n": 2, "version": 2}


ADDED = """
    def added(payload):
        return {"added": True}
"""

ADDED_AGENT = "  {prefix}.added:\n    handler: {mod}:added\n"


async def test_a_new_function_then_the_mesh_names_it(served: Served) -> None:
    agent = ADDED_AGENT.format(prefix=served.prefix, mod=served.module)
    await served.after("reloaded: generation 2", lambda: served.write_code(1, ADDED))
    line = await served.after("reloaded: generation 3", lambda: served.write_mesh(agent))
    reply = await ask(served.url, f"{served.prefix}.added")
    assert line.startswith(f"reloaded: generation 3: added {served.prefix}.added (")
    assert reply == {"added": True}


async def test_the_mesh_names_a_function_then_it_is_written(served: Served) -> None:
    agent = ADDED_AGENT.format(prefix=served.prefix, mod=served.module)
    await served.after("reload rejected", lambda: served.write_mesh(agent))
    problem = next(line for line in served.up.lines if "has no attribute" in line)
    line = await served.after("reloaded: generation 2", lambda: served.write_code(1, ADDED))
    reply = await ask(served.url, f"{served.prefix}.added")
    assert problem.endswith(f"module '{served.module}' has no attribute 'added'")
    assert line.startswith("reloaded: generation 2: new code in ")
    assert reply == {"added": True}


async def test_the_mesh_names_code_changed_where_no_watcher_looks(
        tmp_path: Path, nats_url: str, unique: str) -> None:
    """A module outside the mesh folder, imported by a handler module but not one itself,
    is not watched; once mesh.yaml names a function added to it since, new workers load it."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "mesh").mkdir()
    library = tmp_path / "lib" / f"lib_{unique}.py"
    library.write_text("VERSION = 1\n")
    path, _ = write_mesh(tmp_path / "mesh", MESH.replace("{prefix}", f"s{unique}"),
                              f"import lib_{unique}\n" + textwrap.dedent(CODE.format(version=1)))
    up = UpProcess(path, nats_url, env={"PYTHONPATH": f"{ROOT}:{tmp_path / 'lib'}"})
    try:
        up.wait_for("ready:")
        library.write_text("VERSION = 1\n\ndef later(payload):\n    return {'later': True}\n")
        start = len(up.lines)
        path.write_text(path.read_text() + f"  s{unique}.later:\n    handler: lib_{unique}:later\n")
        line = await asyncio.to_thread(up.wait_for, "reloaded:", 30, start)
        reply = await ask(nats_url, f"s{unique}.later")
    finally:
        up.stop()
    assert re.fullmatch(r"reloaded: generation 2: new workers for code that the mesh file "
                        r"names, changed since the workers started \(1 worker, \d+ ms\)", line)
    assert reply == {"later": True}
