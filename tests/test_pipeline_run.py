"""CompiledPipeline.run with a plain in-process `call` (the engine itself has no NATS in it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from runtime.core.protocol import MeshError
from runtime.pipeline import steps as pipeline_exec
from runtime.pipeline.engine import CompiledPipeline, compile_pipeline
from runtime.pipeline.spec import PipelineSpec

Handler = Callable[[Any], Awaitable[Any]]


class Agents:
    """A `call` function over in-process handlers that records every call."""

    def __init__(self, **handlers: Handler):
        self.handlers = handlers
        self.calls: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.running = 0
        self.most_running = 0

    async def call(self, agent: str, payload: Any, timeout: float, request_id: str) -> Any:
        loop = asyncio.get_running_loop()
        record = {"agent": agent, "payload": payload, "timeout": timeout, "request_id": request_id}
        record["start"] = loop.time()
        self.calls.append(record)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            return await self.handlers[agent](payload)
        except asyncio.CancelledError:
            self.cancelled.append(agent)
            raise
        finally:
            self.running -= 1
            record["end"] = loop.time()

    def agents(self) -> list[str]:
        return [c["agent"] for c in self.calls]


def pipeline(steps: list[dict[str, Any]], **more: Any) -> CompiledPipeline:
    names = {"echo", "fail", "slow", "upper", "flaky", "bad_input", "boom", "p"}
    compiled, problems = compile_pipeline(
        "p", PipelineSpec.model_validate({"steps": steps, **more}), names
    )
    assert problems == []
    assert compiled is not None
    return compiled


async def run(
    compiled: CompiledPipeline, agents: Agents, payload: Any = None, **options: Any
) -> Any:
    settings = {"request_id": "req-1", "mesh_name": "demo", "default_timeout": 5.0} | options
    return await compiled.run(payload, call=agents.call, **settings)


async def echo(payload: Any) -> Any:
    return payload


async def fail(payload: Any) -> Any:
    raise MeshError("handler_error", "it broke")


async def bad_input(payload: Any) -> Any:
    raise MeshError("invalid_input", "text is required")


def sleeper(seconds: float, result: Any = "done") -> Handler:
    async def handler(payload: Any) -> Any:
        await asyncio.sleep(seconds)
        return result

    return handler


async def test_steps_chain_and_returns_builds_the_result():
    agents = Agents(echo=echo, upper=lambda p: echo({"text": p["text"].upper()}))
    compiled = pipeline(
        [
            {"id": "first", "call": "echo", "with": {"text": "${{ input.text }}", "n": 2}},
            {"id": "second", "call": "upper", "with": {"text": "${{ steps.first.text }}!"}},
        ],
        returns={
            "out": "${{ steps.second.text }}",
            "n": "${{ steps.first.n }}",
            "who": "${{ mesh }}",
        },
    )
    result = await run(compiled, agents, {"text": "hi"})
    assert result == {"out": "HI!", "n": 2, "who": {"name": "demo", "request_id": "req-1"}}
    assert agents.calls[0]["payload"] == {"text": "hi", "n": 2}
    assert {c["request_id"] for c in agents.calls} == {"req-1"}


async def test_without_returns_the_last_result_and_without_with_the_input():
    agents = Agents(echo=echo)
    compiled = pipeline(
        [{"id": "a", "call": "echo"}, {"id": "b", "call": "echo", "with": {"x": 1}}]
    )
    assert await run(compiled, agents, {"in": 1}) == {"x": 1}
    assert agents.calls[0]["payload"] == {"in": 1}


async def test_when_false_skips_the_step_with_null():
    agents = Agents(echo=echo)
    compiled = pipeline(
        [
            {"id": "maybe", "when": "input.lang != 'en'", "call": "echo", "with": {"t": 1}},
            {"id": "after", "call": "echo", "with": {"seen": "${{ steps.maybe }}"}},
        ]
    )
    assert await run(compiled, agents, {"lang": "en"}) == {"seen": None}
    assert agents.agents() == ["echo"]
    assert await run(compiled, agents, {"lang": "fr"}) == {"seen": {"t": 1}}


async def test_parallel_branches_overlap_and_are_keyed_by_name():
    agents = Agents(slow=sleeper(0.2, "s"), echo=echo)
    compiled = pipeline(
        [
            {
                "id": "fan",
                "parallel": {
                    "one": {"call": "slow"},
                    "two": [{"id": "x", "call": "echo", "with": {"v": 1}}, {"call": "slow"}],
                    "three": [
                        {"id": "y", "call": "echo", "with": {"v": 2}},
                        {"call": "echo", "with": {"y": "${{ steps.y.v }}"}},
                    ],
                },
            }
        ]
    )
    assert await run(compiled, agents) == {"one": "s", "two": "s", "three": {"y": 2}}
    first, second = (c for c in agents.calls if c["agent"] == "slow")
    assert second["start"] < first["end"] and first["start"] < second["end"]


async def test_for_each_keeps_input_order_and_respects_max_concurrency():
    async def shout(payload: Any) -> Any:
        await asyncio.sleep(0.005 * (5 - payload["i"]))  # later items finish first
        return f"{payload['index']}:{payload['item'].upper()}"

    agents = Agents(upper=shout)
    compiled = pipeline(
        [
            {
                "id": "each",
                "for_each": "input.words",
                "max_concurrency": 2,
                "call": "upper",
                "with": {"item": "${{ item }}", "index": "${{ index }}", "i": "${{ index }}"},
            }
        ]
    )
    words = ["a", "b", "c", "d", "e"]
    assert await run(compiled, agents, {"words": words}) == ["0:A", "1:B", "2:C", "3:D", "4:E"]
    assert agents.most_running == 2


async def test_for_each_without_limit_runs_all_items_at_once():
    agents = Agents(slow=sleeper(0.05))
    compiled = pipeline([{"id": "each", "for_each": "input", "call": "slow"}])
    assert await run(compiled, agents, [1, 2, 3, 4]) == ["done"] * 4
    assert agents.most_running == 4
    assert [c["payload"] for c in agents.calls] == [1, 2, 3, 4]  # no `with`: the item
    assert await run(compiled, agents, []) == []


async def test_for_each_over_something_else_than_a_list_fails_the_step():
    compiled = pipeline([{"id": "each", "for_each": "input.xs", "call": "echo"}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, Agents(echo=echo), {"xs": None})
    assert caught.value.code == "step_failed"
    assert caught.value.message == (
        "step 'each' failed: for_each expression 'input.xs' gave null, not a list"
    )
    assert caught.value.details == {
        "step": "each",
        "code": "step_failed",
        "message": "for_each expression 'input.xs' gave null, not a list",
    }


async def test_retry_counts_every_try_and_then_fails_with_details():
    agents = Agents(fail=fail)
    compiled = pipeline([{"id": "s", "call": "fail", "retry": {"attempts": 3, "backoff": "1ms"}}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents)
    assert len(agents.calls) == 3
    error = caught.value
    assert (error.code, error.message, error.request_id, error.agent) == (
        "step_failed",
        "step 's' failed: it broke",
        "req-1",
        "p",
    )
    assert error.details == {"step": "s", "code": "handler_error", "message": "it broke"}


async def test_retry_stops_at_the_first_success():
    outcomes = [MeshError("timeout", "slow"), MeshError("overloaded", "busy"), {"ok": True}]

    async def flaky(payload: Any) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    agents = Agents(flaky=flaky)
    compiled = pipeline([{"id": "s", "call": "flaky", "retry": {"attempts": 5, "backoff": "1ms"}}])
    assert await run(compiled, agents) == {"ok": True}
    assert len(agents.calls) == 3


async def test_invalid_input_is_never_retried():
    agents = Agents(bad_input=bad_input)
    compiled = pipeline(
        [{"id": "s", "call": "bad_input", "retry": {"attempts": 5, "backoff": "1ms"}}]
    )
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents)
    assert len(agents.calls) == 1
    assert caught.value.details["code"] == "invalid_input"


async def test_backoff_starts_at_backoff_and_doubles_up_to_max(monkeypatch):
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(pipeline_exec.asyncio, "sleep", recording_sleep)
    retry = {"attempts": 5, "backoff": "20ms", "max_backoff": "50ms"}
    compiled = pipeline([{"id": "s", "call": "fail", "retry": retry}])
    with pytest.raises(MeshError):
        await run(compiled, Agents(fail=fail))
    assert waits == [0.02, 0.04, 0.05, 0.05]


async def test_on_error_turns_a_failure_into_its_value():
    agents = Agents(fail=fail, echo=echo)
    compiled = pipeline(
        [
            {
                "id": "s",
                "call": "fail",
                "retry": {"attempts": 2, "backoff": "1ms"},
                "on_error": {"value": {"x": 0}},
            },
            {"id": "t", "call": "echo", "with": {"got": "${{ steps.s }}"}},
        ]
    )
    assert await run(compiled, agents) == {"got": {"x": 0}}
    assert agents.agents() == ["fail", "fail", "echo"]


async def test_on_error_in_for_each_replaces_only_the_failed_items():
    async def picky(payload: Any) -> Any:
        if payload % 2:
            raise MeshError("handler_error", "odd")
        return payload * 10

    compiled = pipeline(
        [{"id": "each", "for_each": "input", "call": "echo", "on_error": {"value": None}}]
    )
    assert await run(compiled, Agents(echo=picky), [1, 2, 3, 4]) == [None, 20, None, 40]


async def test_a_step_timeout_cancels_the_slow_call():
    agents = Agents(slow=sleeper(10))
    compiled = pipeline([{"id": "s", "call": "slow", "timeout": "50ms"}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents)
    assert agents.cancelled == ["slow"]
    assert agents.calls[0]["timeout"] == 0.05
    assert caught.value.details == {
        "step": "s",
        "code": "timeout",
        "message": "slow did not answer within 50ms",
    }


async def test_the_default_timeout_applies_without_a_step_timeout():
    agents = Agents(slow=sleeper(10))
    compiled = pipeline([{"id": "s", "call": "slow"}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents, default_timeout=0.05)
    # The default bounds the whole run too, so the step gets what is left of it.
    assert 0.04 < agents.calls[0]["timeout"] <= 0.05
    assert caught.value.code == "timeout"


async def test_a_pipeline_without_a_timeout_is_bounded_by_the_default():
    agents = Agents(slow=sleeper(10))
    # Each step falls back after 30 ms: three of them would take 90 ms without the bound.
    compiled = pipeline([
        {"id": "a", "call": "slow", "timeout": "30ms", "on_error": {"value": None}},
        {"id": "b", "call": "slow", "timeout": "30ms", "on_error": {"value": None}},
        {"id": "c", "call": "slow", "timeout": "30ms", "on_error": {"value": None}},
    ])
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents, default_timeout=0.05)
    assert (caught.value.code, caught.value.message) == (
        "timeout", "pipeline 'p' did not finish within 50ms")
    assert len(agents.calls) == 2


async def test_the_pipeline_timeout_bounds_the_whole_run():
    agents = Agents(slow=sleeper(10), echo=echo)
    compiled = pipeline([{"id": "a", "call": "echo"}, {"id": "s", "call": "slow"}], timeout="100ms")
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents, default_timeout=30)
    assert (caught.value.code, caught.value.message) == (
        "timeout",
        "pipeline 'p' did not finish within 100ms",
    )
    assert agents.cancelled == ["slow"]
    assert 0 < agents.calls[1]["timeout"] <= 0.1  # callees get what is left, not 30s


async def test_a_failing_branch_cancels_its_siblings():
    agents = Agents(slow=sleeper(10), fail=fail)
    compiled = pipeline(
        [{"id": "fan", "parallel": {"a": {"call": "slow"}, "b": [{"call": "fail"}]}}]
    )
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents)
    assert agents.cancelled == ["slow"]
    assert caught.value.message == "step 'fan' failed: it broke"
    assert caught.value.details == {
        "step": "fan",
        "code": "handler_error",
        "message": "it broke",
        "branch": "b",
    }


async def test_a_failing_item_cancels_the_others_and_names_its_index():
    async def third_fails(payload: Any) -> Any:
        if payload == 3:
            raise MeshError("handler_error", "no 3")
        await asyncio.sleep(10)

    agents = Agents(echo=third_fails)
    compiled = pipeline([{"id": "each", "for_each": "input", "call": "echo"}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, agents, [1, 2, 3])
    assert sorted(agents.cancelled) == ["echo", "echo"]
    assert caught.value.details == {
        "step": "each",
        "code": "handler_error",
        "message": "no 3",
        "index": 2,
    }


async def test_expression_errors_at_run_time_fail_the_step():
    compiled = pipeline([{"id": "s", "call": "echo", "with": {"n": "${{ abs(input) }}"}}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, Agents(echo=echo), "text")
    cause = (
        "expression 'abs(input)' failed: In function abs(), invalid type for value: text, "
        "expected one of: ['number'], received: \"string\""
    )
    assert caught.value.message == f"step 's' failed: {cause}"
    assert caught.value.details == {"step": "s", "code": "step_failed", "message": cause}


async def test_a_broken_returns_is_a_handler_error():
    compiled = pipeline([{"id": "s", "call": "echo"}], returns="${{ abs(steps.s) }}")
    with pytest.raises(MeshError) as caught:
        await run(compiled, Agents(echo=echo), "x")
    assert caught.value.code == "handler_error"
    assert caught.value.message.startswith("returns: expression 'abs(steps.s)' failed: ")


async def test_an_exception_that_is_not_a_mesh_error_still_fails_cleanly():
    async def boom(payload: Any) -> Any:
        raise RuntimeError("wires crossed")

    compiled = pipeline([{"id": "s", "call": "boom"}])
    with pytest.raises(MeshError) as caught:
        await run(compiled, Agents(boom=boom))
    assert caught.value.details == {
        "step": "s",
        "code": "handler_error",
        "message": "RuntimeError: wires crossed",
    }


async def test_one_compiled_pipeline_runs_many_times_at_once():
    async def later(payload: Any) -> Any:
        await asyncio.sleep(0.01 * (payload["n"] % 3))
        return payload

    compiled = pipeline(
        [
            {"id": "a", "call": "echo", "with": {"n": "${{ input }}"}},
            {"id": "b", "parallel": {"x": {"call": "echo", "with": {"n": "${{ steps.a.n }}"}}}},
        ],
        returns="${{ steps.b.x.n }}",
    )
    agents = Agents(echo=later)
    results = await asyncio.gather(
        *(run(compiled, agents, n, request_id=f"r{n}") for n in range(20))
    )
    assert results == list(range(20))


async def test_observers_see_every_step_in_order() -> None:
    """The engine's observer hook: what the run journal and others are told, in order."""
    from runtime.pipeline.observer import Observers

    class Seen:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        async def run_started(self, payload: Any) -> None:
            self.calls.append(("run_started", payload))

        async def step_started(self, path: str, attempt: int) -> None:
            self.calls.append(("started", path, attempt))

        async def step_finished(self, path: str, attempt: int, output: Any) -> None:
            self.calls.append(("finished", path, attempt, output))

        async def step_failed(self, path: str, attempt: int, error: MeshError) -> None:
            self.calls.append(("failed", path, attempt, error.code))

        async def step_skipped(self, path: str) -> None:
            self.calls.append(("skipped", path))

        async def run_finished(self, output: Any) -> None:
            self.calls.append(("run_finished", output))

        async def run_failed(self, error: MeshError) -> None:
            self.calls.append(("run_failed", error.code))

        async def run_cancelled(self) -> None:
            self.calls.append(("run_cancelled",))

    tries = {"n": 0}

    async def call(name: str, payload: Any, timeout: float, request_id: str,
                   capability: bool = False) -> Any:
        if name == "flaky":
            tries["n"] += 1
            if tries["n"] == 1:
                raise MeshError("handler_error", "first try fails")
        return {"from": name}

    spec = PipelineSpec.model_validate({"steps": [
        {"id": "a", "call": "flaky", "retry": {"attempts": 2, "backoff": 0.001}},
        {"id": "skip", "when": "`false`", "call": "x"},
        {"id": "b", "for_each": "[`1`]", "call": "x"},
    ]})
    compiled, problems = compile_pipeline("p", spec, {"flaky", "x"})
    assert compiled is not None and problems == []
    first, second = Seen(), Seen()
    await compiled.run({"in": 1}, call=call, request_id="r", mesh_name="m",
                       default_timeout=5, observer=Observers(first, second))
    assert first.calls == second.calls == [
        ("run_started", {"in": 1}),
        ("started", "a", 1), ("failed", "a", 1, "handler_error"),
        ("started", "a", 2), ("finished", "a", 2, {"from": "flaky"}),
        ("skipped", "skip"),
        ("started", "b", 1), ("started", "b[0]", 1), ("finished", "b[0]", 1, {"from": "x"}),
        ("finished", "b", 1, [{"from": "x"}]),
        ("run_finished", [{"from": "x"}]),
    ]
