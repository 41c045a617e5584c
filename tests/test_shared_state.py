"""Shared state in the `mesh-context` KV bucket: handlers, pipeline steps, the CLI and
OpenAgentMesh clients all see the same keys, and concurrent updates lose nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from nats.aio.client import Client
from openagentmesh import AgentMesh

from runtime.core import protocol as p
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, write_mesh

P = f"s{uuid.uuid4().hex[:6]}"

HANDLERS = '''
    import asyncio

    async def count(payload, ctx):
        return {"visits": await ctx.state.update(payload["key"], lambda v: (v or 0) + 1)}

    async def slow_append(payload, ctx):
        async def append(value):
            await asyncio.sleep(0.001)  # an async fn is awaited, retried on conflict
            return (value or []) + [payload["item"]]
        return {"items": await ctx.state.update(payload["key"], append)}

    async def roundtrip(payload, ctx):
        key = payload["key"]
        await ctx.state.put(key, {"n": 1, "tags": ["a"]})
        first = await ctx.state.get(key)
        await ctx.state.delete(key)
        return {"first": first, "after": await ctx.state.get(key)}

    async def read(payload, ctx):
        return {"value": await ctx.state.get(payload["key"])}
'''

MESH = f'''
    version: 1
    name: state
    agents:
      {P}.count: {{handler: "{{mod}}:count"}}
      {P}.append: {{handler: "{{mod}}:slow_append"}}
      {P}.roundtrip: {{handler: "{{mod}}:roundtrip"}}
      {P}.read: {{handler: "{{mod}}:read"}}
    pipelines:
      {P}.remember:
        steps:
          - id: before
            get_state: "${{{{ input.key }}}}"
          - id: saved
            set_state:
              key: "${{{{ input.key }}}}"
              value: {{last: "${{{{ input.text }}}}", before: "${{{{ steps.before }}}}"}}
          - id: fixed
            set_state: {{key: {P}.fixed, value: 42}}
          - id: after
            get_state: {P}.fixed
        returns: {{before: "${{{{ steps.before }}}}", saved: "${{{{ steps.saved }}}}",
                   after: "${{{{ steps.after }}}}"}}
'''


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("state"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process



def key() -> str:
    return f"{P}.k{uuid.uuid4().hex[:6]}"


async def test_fifty_concurrent_updates_lose_nothing(nc: Client, nats_url: str) -> None:
    counter = key()
    replies = await asyncio.gather(*(
        call_agent(nc, f"{P}.count", {"key": counter}, 20) for _ in range(50)))
    assert sorted(r["visits"] for r in replies) == list(range(1, 51))
    done = cli("state", "get", counter, "--nats", nats_url)
    assert (done.returncode, json.loads(done.stdout)) == (0, 50)


async def test_an_async_update_function_is_retried_until_it_lands(nc: Client) -> None:
    items = key()
    await asyncio.gather(*(call_agent(nc, f"{P}.append", {"key": items, "item": i}, 20)
                           for i in range(20)))
    final = await call_agent(nc, f"{P}.read", {"key": items}, 5)
    assert sorted(final["value"]) == list(range(20))


async def test_put_get_delete(nc: Client) -> None:
    reply = await call_agent(nc, f"{P}.roundtrip", {"key": key()}, 5)
    assert reply == {"first": {"n": 1, "tags": ["a"]}, "after": None}


async def test_a_bad_key_is_invalid_input(nc: Client) -> None:
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, f"{P}.read", {"key": "no spaces"}, 5)
    assert (caught.value.code, caught.value.message) == (
        "invalid_input", "invalid state key 'no spaces': use letters, digits and "
        "- / _ = . (not starting or ending with '.')")


async def test_pipeline_reads_and_writes_state(nc: Client) -> None:
    remembered = key()
    first = await call_agent(nc, f"{P}.remember", {"key": remembered, "text": "one"}, 5)
    assert first == {"before": None, "saved": {"last": "one", "before": None}, "after": 42}
    second = await call_agent(nc, f"{P}.remember", {"key": remembered, "text": "two"}, 5)
    assert second["saved"] == {"last": "two", "before": {"last": "one", "before": None}}


async def test_pipeline_key_from_an_expression_is_checked_at_run_time(nc: Client) -> None:
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, f"{P}.remember", {"key": "bad key!", "text": "x"}, 5)
    assert caught.value.code == "step_failed"
    assert caught.value.details == {
        "step": "before", "code": "invalid_input",
        "message": "invalid state key 'bad key!': use letters, digits and - / _ = . "
                   "(not starting or ending with '.')"}


def test_cli_state_commands(up: UpProcess, nats_url: str) -> None:
    name = key()
    assert cli("state", "put", name, '{"a": [1, 2]}', "--nats", nats_url).returncode == 0
    got = cli("state", "get", name, "--nats", nats_url)
    assert json.loads(got.stdout) == {"a": [1, 2]}
    assert name in cli("state", "ls", "--nats", nats_url).stdout.splitlines()
    assert name in json.loads(cli("state", "ls", "--json", "--nats", nats_url).stdout)
    assert cli("state", "rm", name, "--nats", nats_url).returncode == 0
    missing = cli("state", "get", name, "--nats", nats_url)
    assert (missing.returncode, missing.stderr) == (
        1, f"error: no key '{name}' in the shared state\n")


def test_cli_state_refuses_bad_input(nats_url: str) -> None:
    bad = cli("state", "get", "a b", "--nats", nats_url)
    assert (bad.returncode, bad.stderr) == (2, "error: invalid state key 'a b': use letters, "
                                                "digits and - / _ = . (not starting or ending "
                                                "with '.')\n")
    not_json = cli("state", "put", "k", "{oops", "--nats", nats_url)
    assert not_json.returncode == 2
    assert not_json.stderr.startswith("error: the value is not JSON")
    assert cli("state", "put", "k", "--nats", nats_url).returncode == 2


async def test_openagentmesh_reads_and_writes_the_same_keys(nc: Client, nats_url: str) -> None:
    shared = key()
    cli("state", "put", shared, '{"from": "mesh-runtime"}', "--nats", nats_url)
    async with AgentMesh(nats_url) as oam:
        assert json.loads(await oam.kv.get(shared)) == {"from": "mesh-runtime"}
        await oam.kv.put(shared, json.dumps({"from": "openagentmesh"}))
        await oam.kv.put(shared + "-text", "plain words")
    assert await call_agent(nc, f"{P}.read", {"key": shared}, 5) == {
        "value": {"from": "openagentmesh"}}
    # Text another client stored that is not JSON reads back as that text.
    assert await call_agent(nc, f"{P}.read", {"key": shared + "-text"}, 5) == {
        "value": "plain words"}


async def test_state_ls_escapes_keys_another_client_wrote(nc: Client, nats_url: str) -> None:
    hostile = f"{P}.\x1b[31mred"
    await nc.jetstream().publish(f"$KV.mesh-context.{hostile}", b"1")
    done = await asyncio.to_thread(cli, "state", "ls", "--nats", nats_url)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert f"{P}.\\x1b[31mred" in done.stdout.splitlines()
