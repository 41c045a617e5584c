"""Hot reload through a real `mesh-runtime up` process: edit its files while it serves.

Every wait is on a log line of the process (`reloaded`, `reload rejected`) or on an
answer, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from runtime.core.issues import MeshFileError
from runtime.core.protocol import NOT_FOUND, MeshError
from runtime.load.loader import LoadCache, load_mesh
from runtime.nats.caller import call_agent
from runtime.nats.client import catalog, open_client
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh

HANDLERS = """
    import asyncio

    async def steady(payload, ctx):
        return {"n": payload.get("n", 0), "tag": ctx.config.get("tag", "")}

    async def answer(payload, ctx):
        return {"tag": ctx.config["tag"], "by": "answer"}

    async def answer2(payload, ctx):
        return {"tag": ctx.config["tag"], "by": "answer2"}

    async def slow(payload):
        await asyncio.sleep(payload.get("seconds", 0.5))
        return {"slept": payload.get("seconds", 0.5)}
"""

STEADY_OUTPUT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def mesh_text(p: str, *, tag: str = "v1", handler: str = "answer", added: bool = False,
              doomed: bool = True, returns: str = "v1") -> str:
    """The test mesh, as a user would edit it (`{mod}` is the handler module)."""
    agents = {
        "steady": ["handler: '{mod}:steady'", "output: {$ref: schemas/steady.json}",
                   "config: {tag: steady}"],
        "changing": [f"handler: '{{mod}}:{handler}'", f"config: {{tag: {tag}}}"],
        "doomed": ["handler: '{mod}:slow'"] if doomed else None,
        "slow": ["handler: '{mod}:slow'"],
        "added": ["handler: '{mod}:answer'", "config: {tag: added}"] if added else None,
    }
    lines = ["version: 1", "name: reload-test", "defaults: {timeout: 5s}", "agents:"]
    for short, body in agents.items():
        if body is not None:
            lines += [f"  {p}.{short}:", *(f"    {line}" for line in body)]
    return "\n".join(lines) + textwrap.dedent(f"""
        pipelines:
          {p}.pipe:
            steps:
              - id: first
                call: {p}.steady
                with: {{n: "${{{{ input.n }}}}"}}
              - id: wait
                when: input.wait
                call: {p}.slow
                with: {{seconds: 0.6}}
            returns:
              n: ${{{{ steps.first.n }}}}
              version: {returns}
        """)


@dataclass
class Served:
    """A mesh folder served by a real `up` process, and how to edit its files."""

    folder: Path
    module: str
    up: UpProcess
    url: str
    prefix: str
    generation: int = 1

    @property
    def path(self) -> Path:
        return self.folder / "mesh.yaml"

    def text(self, **options: Any) -> str:
        return mesh_text(self.prefix, **options).replace("{mod}", self.module)

    def write_in_place(self, text: str) -> None:
        with self.path.open("w") as f:  # truncate and write the same file, as most tools do
            f.write(text)

    def write_by_rename(self, text: str) -> None:
        temp = self.folder / ".mesh.yaml.swp-new"
        temp.write_text(text)
        os.replace(temp, self.path)  # as vim, VS Code and most editors save

    async def reloaded(self, write: Any, *args: Any) -> str:
        """Make an edit and wait for the reload it causes; returns the log line."""
        start = len(self.up.lines)
        write(*args)
        line = await asyncio.to_thread(self.up.wait_for, "reloaded:", 20, start)
        generation = int(re.search(r"generation (\d+)", line).group(1))  # type: ignore[union-attr]
        assert generation == self.generation + 1, line
        self.generation = generation
        return line

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"


@pytest.fixture
def served(fresh_nats: NatsServer, tmp_path: Path, unique: str) -> Iterator[Served]:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "steady.json").write_text(json.dumps(STEADY_OUTPUT))
    prefix = f"r{unique}"
    _, module = write_mesh(tmp_path, "version: 1\n", HANDLERS)
    (tmp_path / "mesh.yaml").write_text(mesh_text(prefix).replace("{mod}", module))
    up = UpProcess(tmp_path / "mesh.yaml", fresh_nats.url)
    try:
        up.wait_for("ready:")
        yield Served(tmp_path, module, up, fresh_nats.url, prefix)
    finally:
        up.stop()


@dataclass
class Load:
    """Clients calling agents that exist before and after every edit, until told to stop."""

    nc: Client
    names: list[str]
    clients: int = 6
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    calls: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(self.clients)))

    async def _client(self, index: int) -> None:
        name = self.names[index % len(self.names)]
        for n in range(100_000):  # bounded: stops by itself if the test never says so
            if self.stop.is_set():
                return
            try:
                reply = await call_agent(self.nc, name, {"n": n}, timeout=5)
                if reply.get("n") != n:
                    self.failures.append(f"{name}: wrong reply {reply}")
            except MeshError as exc:
                self.failures.append(f"{name}: {exc.code}: {exc}")
            self.calls[name] += 1


async def names_in_catalog(nc: Client) -> set[str]:
    return {e["name"] for e in await catalog(nc) or []}


async def test_edits_under_load_lose_no_request(served: Served) -> None:
    nc = await open_client(served.url)
    load = Load(nc, [served.name("steady"), served.name("pipe")])
    running = asyncio.create_task(load.run())
    try:
        # Added, by writing the file in place: it answers, and is listed.
        line = await served.reloaded(served.write_in_place, served.text(added=True))
        assert f"added {served.name('added')}" in line
        assert "changed" not in line and "removed" not in line
        assert (await call_agent(nc, served.name("added"), {}, 5))["tag"] == "added"
        assert served.name("added") in await names_in_catalog(nc)

        # Changed, saved by rename: the very next answer shows the new config.
        line = await served.reloaded(served.write_by_rename, served.text(added=True, tag="v2"))
        assert line.startswith(f"reloaded: generation 3: changed {served.name('changing')} (")
        assert await call_agent(nc, served.name("changing"), {}, 5) == {"tag": "v2", "by": "answer"}

        # Changed handler attribute.
        await served.reloaded(served.write_in_place,
                              served.text(added=True, tag="v2", handler="answer2"))
        assert (await call_agent(nc, served.name("changing"), {}, 5))["by"] == "answer2"

        # Removed: it stops answering and leaves the catalog.
        line = await served.reloaded(served.write_by_rename,
                                     served.text(added=True, tag="v2", handler="answer2",
                                                 doomed=False))
        assert f"removed {served.name('doomed')}" in line
        with pytest.raises(MeshError) as gone:
            await call_agent(nc, served.name("doomed"), {}, 2)
        assert gone.value.code == NOT_FOUND
        listed = await names_in_catalog(nc)
        assert served.name("doomed") not in listed and served.name("steady") in listed

        # Invalid: every problem logged as file:line:col, and nothing changes.
        start = len(served.up.lines)
        served.write_in_place(served.text(added=True, tag="v3", handler="answr2", doomed=False))
        rejected = await asyncio.to_thread(served.up.wait_for, "reload rejected", 20, start)
        assert rejected.endswith(f"reload rejected: 1 problem; still serving generation "
                                 f"{served.generation}")
        problem = await asyncio.to_thread(served.up.wait_for, "has no attribute", 5, start)
        assert re.search(rf"mesh\.yaml:\d+:\d+: agents\.{served.prefix}\.changing\.handler: "
                         rf"module '{served.module}' has no attribute 'answr2'", problem)
        assert await call_agent(nc, served.name("changing"), {}, 5) == {"tag": "v2", "by": "answer2"}

        # Undoing the mistake says so, and changes nothing either.
        start = len(served.up.lines)
        served.write_by_rename(served.text(added=True, tag="v2", handler="answer2", doomed=False))
        again = await asyncio.to_thread(served.up.wait_for, "valid again", 20, start)
        assert again == ("mesh.yaml is valid again; no definition changed, still generation "
                         f"{served.generation}")

        # A schema file edit changes the agent that refers to it.
        edited = {**STEADY_OUTPUT, "description": "edited while serving"}
        line = await served.reloaded((served.folder / "schemas" / "steady.json").write_text,
                                     json.dumps(edited))
        assert line.startswith(f"reloaded: generation {served.generation}: "
                               f"changed {served.name('steady')} (")
    finally:
        load.stop.set()
        await running
        await nc.close()
    assert load.failures == []
    assert all(load.calls[name] > 0 for name in load.names), load.calls
    assert served.up.stop() == 0


async def test_a_save_that_changes_nothing_does_not_bump_the_generation(served: Served) -> None:
    served.write_in_place(served.text())  # the same text again: no reload line
    line = await served.reloaded(served.write_by_rename, served.text(tag="v9"))
    assert "changed" in line  # and this one is generation 2, checked by `reloaded`


async def test_in_flight_requests_finish_on_the_definition_they_started_with(
        served: Served) -> None:
    nc = await open_client(served.url)
    try:
        pipe = asyncio.create_task(call_agent(nc, served.name("pipe"), {"n": 1, "wait": True}, 5))
        await call_agent(nc, served.name("steady"), {}, 5)  # the pipeline's request has arrived
        line = await served.reloaded(served.write_by_rename, served.text(returns="v2"))
        assert f"changed {served.name('pipe')}" in line
        assert await pipe == {"n": 1, "version": "v1"}  # it waited on its slow step meanwhile
        assert await call_agent(nc, served.name("pipe"), {"n": 2}, 5) == {"n": 2, "version": "v2"}
    finally:
        await nc.close()


async def test_removing_an_agent_lets_its_request_in_flight_finish(served: Served) -> None:
    nc = await open_client(served.url)
    try:
        request = asyncio.create_task(call_agent(nc, served.name("doomed"), {"seconds": 0.6}, 5))
        await call_agent(nc, served.name("steady"), {}, 5)
        line = await served.reloaded(served.write_in_place, served.text(doomed=False))
        assert f"removed {served.name('doomed')}" in line
        assert await request == {"slept": 0.6}
    finally:
        await nc.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_up_cleanly_while_the_watcher_runs(served: Served, sig: int) -> None:
    assert served.up.stop(sig, timeout=10) == 0
    assert served.up.lines[-1] == "stopped"


def test_a_missing_file_during_a_save_keeps_serving(served: Served) -> None:
    start = len(served.up.lines)
    text = served.path.read_text()
    served.path.unlink()
    served.up.wait_for("is missing; still serving generation 1", 20, start)
    served.path.write_text(text.replace("tag: v1", "tag: back"))
    assert "changed" in served.up.wait_for("reloaded:", 20, start)


# -- the loader cache that makes reloads of big files cheap -----------------------------

def test_a_cached_load_equals_a_fresh_one_after_every_edit(tmp_path: Path, unique: str) -> None:
    (tmp_path / "schemas").mkdir()
    schema_file = tmp_path / "schemas" / "steady.json"
    schema_file.write_text(json.dumps(STEADY_OUTPUT))
    _, module = write_mesh(tmp_path, "version: 1\n", HANDLERS)
    path = tmp_path / "mesh.yaml"
    cache = LoadCache()

    def both() -> dict[str, str]:
        fresh, cached = load_mesh(path), load_mesh(path, cache=cache)
        assert cached.spec == fresh.spec
        assert cached.watched_files == fresh.watched_files
        prints = {n: e.fingerprint for n, e in cached.endpoints.items()}
        assert prints == {n: e.fingerprint for n, e in fresh.endpoints.items()}
        return prints

    path.write_text(mesh_text(unique).replace("{mod}", module))
    first = both()
    path.write_text(mesh_text(unique, tag="v2").replace("{mod}", module))
    second = both()
    assert {n for n in first if first[n] != second.get(n)} == {f"{unique}.changing"}
    path.write_text(mesh_text(unique, tag="1").replace("{mod}", module))
    as_int = both()[f"{unique}.changing"]
    path.write_text(mesh_text(unique, tag="1.0").replace("{mod}", module))  # 1 == 1.0, yet
    assert both()[f"{unique}.changing"] != as_int  # the handler is now given 1.0
    path.write_text(mesh_text(unique, tag="v2").replace("{mod}", module))
    assert both() == second
    schema_file.write_text(json.dumps({**STEADY_OUTPUT, "title": "x"}))
    third = both()
    assert {n for n in second if second[n] != third.get(n)} == {f"{unique}.steady"}
    path.write_text(mesh_text(unique, handler="nope").replace("{mod}", module))
    with pytest.raises(MeshFileError) as fresh:
        load_mesh(path)
    with pytest.raises(MeshFileError) as cached:
        load_mesh(path, cache=cache)
    assert [str(i) for i in cached.value.issues] == [str(i) for i in fresh.value.issues]
    assert len(fresh.value.issues) == 1


@pytest.mark.parametrize("text", [
    "version: 1\nagents:\n  a: {handler: 'm:f'}\n  a: {handler: 'm:g'}\n",  # a key twice
    "version: 1\nagents:\n  base: &b {handler: 'm:f'}\n  other: *b\n",  # an alias
    "version: 1\nagents:\n  a:\n    description: |\n      two\n      lines\n# end\n",
    "# comment\nversion: 1\n\nagents:  # the agents\n\n  a:\n      handler: 'm:f'\n"
    "  # between\n  b:\n    handler: 'm:g'\nname: x\n",
    "version: 1\nagents:\n  a:\n    handler: 'm:f'\n  -broken\n",
])
def test_parsing_by_pieces_matches_parsing_whole(tmp_path: Path, text: str) -> None:
    from runtime.load.sourcecache import SourceCache
    from runtime.load.yamlsource import load_source

    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    whole = load_source(path, display="mesh.yaml")
    cache = SourceCache()
    for _ in range(2):  # parsed, then from the cache
        pieces = cache.load(path, display="mesh.yaml")
        assert (pieces.data, pieces.values, pieces.keys, pieces.issues) == (
            whole.data, whole.values, whole.keys, whole.issues)
