"""Pipelines served by real `mesh-runtime up` processes, called over a real nats-server.

One `up` process serves every agent and pipeline of this module (names start with `pnt.`),
and a second one serves `pnt.ext.shout`, which the first declares under `external:`. The
handlers keep counters in module globals keyed by a token from the payload, and the
`pnt.report` agent reads them back, so a test can see exactly how often an agent ran.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.core import protocol as p
from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.client import catalog, open_client
from runtime.nats.embedded import NatsServer
from tests.helpers import ROOT, UpProcess, cli, write_mesh

EXAMPLE = ROOT / "examples" / "pipelines" / "mesh.yaml"

HANDLERS = """
    import asyncio
    import os
    import time

    from runtime.core.protocol import MeshError

    COUNTS = {}       # token -> how many times a counting handler ran
    RUNNING = {}      # token -> requests in flight now
    MOST_RUNNING = {}  # token -> the most ever in flight at once


    def _count(token):
        COUNTS[token] = COUNTS.get(token, 0) + 1
        return COUNTS[token]


    def echo(payload):
        return payload


    async def timed(payload):
        start = time.monotonic()
        await asyncio.sleep(payload["sleep"])
        return {"name": payload["name"], "start": start, "end": time.monotonic()}


    async def counted(payload):
        token = payload["token"]
        RUNNING[token] = RUNNING.get(token, 0) + 1
        MOST_RUNNING[token] = max(MOST_RUNNING.get(token, 0), RUNNING[token])
        try:
            # later items finish sooner, so input order is not completion order
            await asyncio.sleep(0.03 * (payload["total"] - payload["index"]))
        finally:
            RUNNING[token] -= 1
        return {"value": payload["value"] * 10, "index": payload["index"],
                "most_running": MOST_RUNNING[token]}


    def flaky(payload):
        attempt = _count(payload["token"])
        if attempt < payload["succeed_on"]:
            raise RuntimeError(f"attempt {attempt} failed")
        return {"attempts": attempt}


    def refuse(payload):
        _count(payload["token"])
        raise MeshError("invalid_input", "this payload will never do")


    def tick(payload):
        return {"ticks": _count(payload["token"])}


    def report(payload):
        return {"count": COUNTS.get(payload["token"], 0)}


    async def sleepy(payload):
        await asyncio.sleep(payload["sleep"])
        return {"slept": payload["sleep"]}


    def fail(payload):
        raise ValueError(payload["why"])


    def rid(payload, ctx):
        return {"rid": ctx.request_id, "at": payload.get("at")}


    def pid(payload):
        return {"pid": os.getpid()}
"""

MESH = """
    version: 1
    name: pnt-mesh
    defaults:
      timeout: 5s
    agents:
      pnt.echo: {handler: "{mod}:echo"}
      pnt.timed: {handler: "{mod}:timed"}
      pnt.counted: {handler: "{mod}:counted"}
      pnt.flaky: {handler: "{mod}:flaky"}
      pnt.refuse: {handler: "{mod}:refuse"}
      pnt.tick: {handler: "{mod}:tick"}
      pnt.report: {handler: "{mod}:report"}
      pnt.fail: {handler: "{mod}:fail"}
      pnt.rid: {handler: "{mod}:rid"}
      pnt.pid: {handler: "{mod}:pid"}
      pnt.sleepy:
        handler: "{mod}:sleepy"
        timeout: 2s
      pnt.strict:
        handler: "{mod}:tick"
        input:
          type: object
          properties: {token: {type: string}, n: {type: integer}}
          required: [token, n]
    external:
      pnt.ext.shout:
        description: Upper-cases text; served by another process.
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        output: {type: object, properties: {text: {type: string}}, required: [text]}
    pipelines:
      pnt.templates:
        description: Renders every kind of template into one call.
        steps:
          - id: echoed
            call: pnt.echo
            with:
              number: ${{ input.n }}
              object: ${{ input.obj }}
              list: "${{ input.items }}"
              text: "n=${{ input.n }}, obj=${{ input.obj }}, name=${{ input.name }}"
              missing_in_text: "[${{ input.nothing }}]"
              missing: ${{ input.nothing }}
              computed: ${{ length(input.items) }}
              constant: {k: [1, 2]}
              nested: {twice: "${{ input.n }}"}
              mesh: ${{ mesh.name }}

      pnt.parallel:
        steps:
          - id: both
            parallel:
              a: {call: pnt.timed, with: {name: a, sleep: 0.3}}
              b: {call: pnt.timed, with: {name: b, sleep: 0.3}}
              chain:
                - {id: first, call: pnt.echo, with: {v: 1}}
                - {id: second, call: pnt.echo, with: {v: "${{ steps.first.v }}", w: 2}}
        returns:
          a: ${{ steps.both.a }}
          b: ${{ steps.both.b }}
          chain: ${{ steps.both.chain }}

      pnt.when:
        input:
          type: object
          properties: {go: {type: boolean}, token: {type: string}}
          required: [go, token]
        steps:
          - id: maybe
            when: input.go
            call: pnt.tick
            with: {token: "${{ input.token }}"}
          - id: count
            call: pnt.report
            with: {token: "${{ input.token }}"}
        returns:
          maybe: ${{ steps.maybe }}
          count: ${{ steps.count.count }}

      pnt.fan:
        steps:
          - id: each
            for_each: input.items
            max_concurrency: 2
            call: pnt.counted
            with:
              token: ${{ input.token }}
              value: ${{ item }}
              index: ${{ index }}
              total: ${{ length(input.items) }}

      pnt.retry:
        steps:
          - id: flaky
            call: pnt.flaky
            with: {token: "${{ input.token }}", succeed_on: "${{ input.succeed_on }}"}
            retry: {attempts: 3, backoff: 50ms, max_backoff: 1s}

      pnt.refused:
        steps:
          - id: refused
            call: pnt.refuse
            with: {token: "${{ input.token }}"}
            retry: {attempts: 4, backoff: 10ms}

      pnt.schema_refused:
        steps:
          - id: strict
            call: pnt.strict
            with: {token: "${{ input.token }}", n: "${{ input.n }}"}  # a constant is checked at load
            retry: {attempts: 4, backoff: 10ms}

      pnt.step_timeout:
        steps:
          - id: slow
            call: pnt.sleepy
            with: {sleep: 1}
            timeout: 200ms

      pnt.pipe_timeout:
        timeout: 300ms
        steps:
          - id: slow
            call: pnt.sleepy
            with: {sleep: 1}

      pnt.fallback:
        steps:
          - id: broken
            call: pnt.fail
            with: {why: nope}
            on_error: {value: {fallback: true}}
          - id: after
            call: pnt.echo
            with: {previous: "${{ steps.broken }}"}

      pnt.fails:
        steps:
          - id: fine
            call: pnt.echo
          - id: boom
            call: pnt.fail
            with: {why: kaput}
          - id: never
            call: pnt.tick
            with: {token: "${{ input.token }}"}

      pnt.inner:
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        output: {type: object, properties: {shouted: {type: string}}, required: [shouted]}
        steps:
          - id: shout
            call: pnt.ext.shout
            with: {text: "${{ input.text }}"}
          - id: here
            call: pnt.pid
        returns:
          shouted: ${{ steps.shout.text }}
          shout_pid: ${{ steps.shout.pid }}
          here_pid: ${{ steps.here.pid }}

      pnt.outer:
        steps:
          - id: inner
            call: pnt.inner
            with: {text: "${{ input.text }}"}
          - id: wrap
            call: pnt.echo
            with: {result: "${{ steps.inner }}", extra: "${{ input.text }}!"}

      pnt.trace_inner:
        steps:
          - id: deep
            call: pnt.rid
            with: {at: nested}

      pnt.trace:
        steps:
          - id: one
            call: pnt.rid
            with: {at: first}
          - id: fan
            parallel:
              left: {call: pnt.rid, with: {at: branch}}
              right: {call: pnt.trace_inner}
          - id: loop
            for_each: input.items
            call: pnt.rid
            with: {at: "item ${{ index }}"}
        returns:
          - ${{ steps.one }}
          - ${{ steps.fan.left }}
          - ${{ steps.fan.right }}
          - ${{ steps.loop[0] }}
          - ${{ steps.loop[1] }}
"""

EXTERNAL_HANDLERS = """
    import os


    def shout(payload):
        return {"text": payload["text"].upper(), "pid": os.getpid()}
"""

EXTERNAL_MESH = """
    version: 1
    name: pnt-elsewhere
    agents:
      pnt.ext.shout:
        handler: "{mod}:shout"
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        output: {type: object, properties: {text: {type: string}}, required: [text]}
"""


class Served:
    """The two running `up` processes and the NATS URL they share."""

    def __init__(self, url: str, main: UpProcess, elsewhere: UpProcess):
        self.url = url
        self.main = main
        self.elsewhere = elsewhere


@pytest.fixture(scope="module")
def mesh(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    main_dir = tmp_path_factory.mktemp("pnt-main")
    other_dir = tmp_path_factory.mktemp("pnt-elsewhere")
    main_path, _ = write_mesh(main_dir, MESH, HANDLERS)
    other_path, _ = write_mesh(other_dir, EXTERNAL_MESH, EXTERNAL_HANDLERS)
    with contextlib.ExitStack() as stack:  # stops both, whichever fails to start
        main = UpProcess(main_path, nats_server.url, "--no-reload")
        stack.callback(main.stop)
        elsewhere = UpProcess(other_path, nats_server.url, "--no-reload")
        stack.callback(elsewhere.stop)
        main.wait_for("ready:")  # both started at once; now wait for each
        elsewhere.wait_for("ready:")
        yield Served(nats_server.url, main, elsewhere)


async def call(url: str, name: str, payload: Any, timeout: float = 5) -> Any:
    nc = await open_client(url)
    try:
        return await call_agent(nc, name, payload, timeout)
    finally:
        await nc.close()


async def call_error(url: str, name: str, payload: Any) -> MeshError:
    with pytest.raises(MeshError) as caught:
        await call(url, name, payload)
    return caught.value


def token() -> str:
    return uuid.uuid4().hex[:8]


# -- call and with: templates ---------------------------------------------------------------


async def test_with_templates_keep_json_types_or_make_strings(mesh: Served) -> None:
    payload = {"n": 3, "obj": {"a": 1}, "items": [1, 2], "name": "ann"}
    result = await call(mesh.url, "pnt.templates", payload)
    assert result == {
        "number": 3,
        "object": {"a": 1},
        "list": [1, 2],
        "text": 'n=3, obj={"a":1}, name=ann',
        "missing_in_text": "[]",
        "missing": None,
        "computed": 2,
        "constant": {"k": [1, 2]},
        "nested": {"twice": 3},
        "mesh": "pnt-mesh",
    }


def test_the_cli_calls_a_pipeline(mesh: Served) -> None:
    done = cli("call", "pnt.templates", '{"n": 1, "obj": null, "items": [], "name": "x"}',
               "--nats", mesh.url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["number"], result["text"], result["computed"]) == (1, "n=1, obj=, name=x", 0)


# -- parallel ---------------------------------------------------------------------------------


async def test_parallel_branches_overlap_in_time(mesh: Served) -> None:
    started = time.monotonic()
    result = await call(mesh.url, "pnt.parallel", {})
    elapsed = time.monotonic() - started
    a, b = result["a"], result["b"]
    assert (a["name"], b["name"]) == ("a", "b")
    # Each branch sleeps 0.3s: they overlap only if each began before the other ended.
    assert a["start"] < b["end"] and b["start"] < a["end"]
    assert elapsed < 0.59  # one after the other would take at least 0.6s
    # A branch that is a list runs in sequence, and its later steps see its earlier ones.
    assert result["chain"] == {"v": 1, "w": 2}


# -- when ---------------------------------------------------------------------------------------


async def test_when_false_skips_the_step_with_null(mesh: Served) -> None:
    key = token()
    assert await call(mesh.url, "pnt.when", {"go": False, "token": key}) == {
        "maybe": None, "count": 0}
    assert await call(mesh.url, "pnt.when", {"go": True, "token": key}) == {
        "maybe": {"ticks": 1}, "count": 1}


# -- for_each ---------------------------------------------------------------------------------


async def test_for_each_keeps_input_order_within_max_concurrency(mesh: Served) -> None:
    items = [5, 4, 3, 2, 1, 0]
    result = await call(mesh.url, "pnt.fan", {"items": items, "token": token()})
    assert [r["value"] for r in result] == [50, 40, 30, 20, 10, 0]
    assert [r["index"] for r in result] == [0, 1, 2, 3, 4, 5]
    assert max(r["most_running"] for r in result) == 2  # max_concurrency: 2, and it was reached


async def test_for_each_over_an_empty_list_is_an_empty_list(mesh: Served) -> None:
    assert await call(mesh.url, "pnt.fan", {"items": [], "token": token()}) == []


async def test_for_each_over_a_non_list_fails_the_step(mesh: Served) -> None:
    error = await call_error(mesh.url, "pnt.fan", {"items": "abc", "token": token()})
    assert (error.code, error.details) == ("step_failed", {
        "step": "each", "code": "step_failed",
        "message": "for_each expression 'input.items' gave a string, not a list"})


# -- retry --------------------------------------------------------------------------------------


async def test_retry_tries_until_success(mesh: Served) -> None:
    started = time.monotonic()
    result = await call(mesh.url, "pnt.retry", {"token": token(), "succeed_on": 3})
    assert result == {"attempts": 3}
    assert time.monotonic() - started >= 0.15  # waited 50ms, then 100ms (doubling)


async def test_retry_counts_every_attempt_exactly(mesh: Served) -> None:
    key = token()
    error = await call_error(mesh.url, "pnt.retry", {"token": key, "succeed_on": 99})
    assert (error.code, error.details) == ("step_failed", {
        "step": "flaky", "code": "handler_error",
        "message": "RuntimeError: attempt 3 failed"})
    assert await call(mesh.url, "pnt.report", {"token": key}) == {"count": 3}


async def test_invalid_input_from_a_handler_is_never_retried(mesh: Served) -> None:
    key = token()
    error = await call_error(mesh.url, "pnt.refused", {"token": key})
    assert (error.code, error.details["code"]) == ("step_failed", "invalid_input")
    assert await call(mesh.url, "pnt.report", {"token": key}) == {"count": 1}


async def test_input_the_schema_rejects_is_sent_once(mesh: Served) -> None:
    # The schema refuses before the handler runs, so count the requests on the wire.
    nc = await open_client(mesh.url)
    seen: list[str] = []

    async def on_request(msg: Any) -> None:
        seen.append((msg.headers or {}).get(p.HDR_REQUEST_ID, ""))

    try:
        await nc.subscribe(p.agent_subject("pnt.strict"), cb=on_request)
        await nc.flush()
        request_id = f"strict-{token()}"
        with pytest.raises(MeshError) as caught:
            await call_agent(nc, "pnt.schema_refused", {"token": token(), "n": "not a number"}, 5,
                             request_id)
        await nc.flush()
    finally:
        await nc.close()
    assert caught.value.details == {
        "step": "strict", "code": "invalid_input",
        "message": "input does not match the schema: /n: \"not a number\" is not of type \"integer\""}
    assert seen.count(request_id) == 1


# -- timeouts and on_error ------------------------------------------------------------------


async def test_a_step_timeout_stops_waiting_for_the_slow_call(mesh: Served) -> None:
    started = time.monotonic()
    error = await call_error(mesh.url, "pnt.step_timeout", {})
    elapsed = time.monotonic() - started
    assert (error.code, error.details) == ("step_failed", {
        "step": "slow", "code": "timeout", "message": "pnt.sleepy did not answer within 200ms"})
    assert elapsed < 0.8  # the handler sleeps 1s


async def test_the_pipeline_timeout_bounds_the_whole_run(mesh: Served) -> None:
    started = time.monotonic()
    error = await call_error(mesh.url, "pnt.pipe_timeout", {})
    elapsed = time.monotonic() - started
    assert (error.code, error.agent) == ("timeout", "pnt.pipe_timeout")
    assert elapsed < 0.8  # the handler sleeps 1s; the pipeline allows 300ms


async def test_on_error_value_replaces_a_failed_step(mesh: Served) -> None:
    result = await call(mesh.url, "pnt.fallback", {})
    assert result == {"previous": {"fallback": True}}


async def test_a_failing_step_is_step_failed_and_stops_the_run(mesh: Served) -> None:
    key = token()
    error = await call_error(mesh.url, "pnt.fails", {"token": key})
    assert error.to_dict() | {"request_id": ""} == {
        "code": "step_failed",
        "message": "step 'boom' failed: ValueError: kaput",
        "agent": "pnt.fails",
        "request_id": "",
        "details": {"step": "boom", "code": "handler_error", "message": "ValueError: kaput"},
    }
    assert await call(mesh.url, "pnt.report", {"token": key}) == {"count": 0}  # `never` did not run


# -- pipelines of pipelines, other processes, input ---------------------------------------------


async def test_a_pipeline_calls_a_pipeline_that_calls_another_process(mesh: Served) -> None:
    result = await call(mesh.url, "pnt.outer", {"text": "hi"})
    inner = result["result"]
    assert (inner["shouted"], result["extra"]) == ("HI", "hi!")
    assert inner["shout_pid"] == mesh.elsewhere.worker_pid  # the processes serving
    assert inner["here_pid"] == mesh.main.worker_pid != mesh.elsewhere.worker_pid


async def test_invalid_pipeline_input_is_invalid_input(mesh: Served) -> None:
    error = await call_error(mesh.url, "pnt.inner", {"text": 7})
    assert (error.code, error.details) == ("invalid_input", {
        "errors": [{"path": "/text", "message": '7 is not of type "string"'}]})
    error = await call_error(mesh.url, "pnt.inner", {})
    assert error.details["errors"][0]["path"] == "/text"


async def test_one_request_id_reaches_every_step(mesh: Served) -> None:
    request_id = f"trace-{token()}"
    nc = await open_client(mesh.url)
    try:
        reply = await nc.request(p.agent_subject("pnt.trace"), b'{"items": ["x", "y"]}',
                                 timeout=5, headers={p.HDR_REQUEST_ID: request_id})
    finally:
        await nc.close()
    assert reply.headers is not None
    assert (reply.headers[p.HDR_STATUS], reply.headers[p.HDR_REQUEST_ID]) == ("ok", request_id)
    steps = json.loads(reply.data)
    assert [s["at"] for s in steps] == ["first", "branch", "nested", "item 0", "item 1"]
    assert [s["rid"] for s in steps] == [request_id] * 5


# -- OpenAgentMesh ----------------------------------------------------------------------------


async def test_an_openagentmesh_client_finds_and_calls_a_pipeline(mesh: Served) -> None:
    from openagentmesh import AgentMesh

    async with AgentMesh(mesh.url) as client:
        entries = {e.name: e for e in await client.catalog()}
        result = await client.call("pnt.outer", {"text": "oam"})
    entry = entries["pnt.outer"]
    assert ("pipeline" in entry.tags, entry.invocable, entry.streaming) == (True, True, False)
    assert "pipeline" not in entries["pnt.echo"].tags
    assert result["result"]["shouted"] == "OAM"


async def test_the_catalog_tags_every_pipeline(mesh: Served) -> None:
    nc = await open_client(mesh.url)
    try:
        entries = await catalog(nc) or []
    finally:
        await nc.close()
    tagged = {e["name"] for e in entries if "pipeline" in e["tags"] and e["name"].startswith("pnt.")}
    assert {"pnt.templates", "pnt.fan", "pnt.outer", "pnt.trace"} <= tagged
    assert "pnt.echo" not in tagged


# -- validate and graph -------------------------------------------------------------------------

BROKEN = """
    version: 1
    agents:
      b.echo: {handler: "{mod}:echo"}
    pipelines:
      b.one:
        steps:
          - id: first
            call: b.ecko
          - id: first
            call: b.echo
            with: {x: "${{ steps.later.x }}"}
          - id: later
            call: b.echo
            when: "input.a =="
          - id: loop
            call: b.echo
            for_each:
            with: {at: "${{ index }}"}
      b.ping:
        steps:
          - {id: go, call: b.pong}
      b.pong:
        steps:
          - {id: back, call: b.ping}
"""


def test_validate_reports_pipeline_mistakes_at_their_lines(tmp_path: Path) -> None:
    write_mesh(tmp_path, BROKEN, "def echo(payload):\n    return payload\n")
    done = cli("validate", "-f", "mesh.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "mesh.yaml:8:15: pipelines.b.one.steps[0].call: unknown agent or pipeline 'b.ecko'; "
        "did you mean 'b.echo'?",
        "mesh.yaml:9:13: pipelines.b.one.steps[1].id: duplicate step id 'first' "
        "(first at steps[0])",
        "mesh.yaml:11:19: pipelines.b.one.steps[1].with.x: expression 'steps.later.x' reads "
        "steps.later, which has not run yet here (only earlier steps can be read)",
        "mesh.yaml:14:15: pipelines.b.one.steps[2].when: invalid expression 'input.a ==': "
        "incomplete expression at column 11",
        "mesh.yaml:17:18: pipelines.b.one.steps[3].for_each: for_each needs an expression, "
        "like input.sections",
        "mesh.yaml:21:24: pipelines.b.ping.steps[0].call: pipelines call each other in a cycle: "
        "b.ping -> b.pong -> b.ping",
    ]


def test_graph_draws_the_example_pipeline() -> None:
    done = cli("graph", "-f", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["flowchart TD", '  subgraph p0 ["shop.checkout"]', '    p0_1(["input"])']
    for expected in (
        '    p0_2["order<br/>→ shop.validate"]',
        '    p0_3{{"quote<br/>parallel"}}',
        '    p0_3 -->|"price"| p0_4',
        '    p0_3 -->|"stock"| p0_5',
        '    p0_6{"when: input.express"}',
        '    p0_6 -.->|"no"| p0_8',
        '    p0_9[["reservations<br/>→ shop.reserve<br/>for each steps.order.items (max 2)<br/>'
        'retry 3×, timeout 2s"]]',
        '    p0_8 -->|"yes"| p0_9',
        "  end",
    ):
        assert expected in lines


async def test_the_example_checks_out_an_order(fresh_nats: NatsServer) -> None:
    order = {"customer": "ada", "items": [{"sku": "apple", "qty": 6}, {"sku": "cheese", "qty": 1}],
             "express": True}
    with UpProcess(EXAMPLE, fresh_nats.url, "--no-reload"):
        receipt = await call(fresh_nats.url, "shop.checkout", order)
        short = await call(fresh_nats.url, "shop.checkout",
                           {"customer": "bob", "items": [{"sku": "tea", "qty": 1}]})
    assert receipt["order_id"].startswith("ord-")
    assert (receipt["total"], receipt["in_stock"], receipt["shipping"]) == (
        7.0, True, {"carrier": "express", "eta_days": 1})
    # Every reservation failed once and went through on the retry.
    assert [(r["sku"], r["attempts"]) for r in receipt["reservations"]] == [
        ("apple", 2), ("cheese", 2)]
    assert (short["in_stock"], short["shipping"]["carrier"], short["reservations"]) == (
        False, "standard", [])
