"""A handler's shape, found once at load time, and the one coroutine that invokes it."""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from runtime.core.context import Context

# Sync handlers run here, never on the event loop. Threads start only when needed; each
# agent uses at most its `concurrency` of them (a thread that overruns its deadline keeps
# its agent's slot until it returns), so a stuck handler starves only its own agent.
THREAD_LIMIT = 1024
THREAD_POOL = ThreadPoolExecutor(max_workers=THREAD_LIMIT, thread_name_prefix="mesh-handler")

Invoke = Callable[[Any, Context | None], Awaitable[Any]]
Stream = Callable[[Any, Context | None], AsyncIterator[Any]]


class ThreadOverrun(Exception):
    """A sync handler's call was cancelled while its thread runs on; `thread` says when it
    ends (a thread cannot be stopped from outside)."""

    def __init__(self, thread: Future[Any]):
        super().__init__("the handler's thread is still running")
        self.thread = thread


_busy = [0]  # sync handler calls running in a thread now (a stuck one included)
_busy_lock = threading.Lock()


def threads_busy() -> int:
    """How many sync handler calls are running in a thread now (a stuck one included)."""
    return _busy[0]


def _in_thread(call: Callable[[Any, Context | None], Any], arg: Any, ctx: Context | None) -> Any:
    with _busy_lock:
        _busy[0] += 1
    try:
        return call(arg, ctx)
    finally:
        with _busy_lock:
            _busy[0] -= 1


class HandlerShapeError(ValueError):
    """The handler cannot be called the way mesh-runtime calls handlers."""


class InputModelError(ValueError):
    """The payload passed the JSON Schema but not the handler's pydantic model."""

    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("input does not match the handler's model")
        self.errors = errors


@dataclass(frozen=True)
class Handler:
    """How to call one handler; `invoke` for request/reply, `stream` for a generator."""

    spec: str
    streaming: bool
    wants_context: bool  # the handler takes (payload, ctx): build a Context per request
    invoke: Invoke | None
    stream: Stream | None
    input_schema: dict[str, Any] | None  # derived from a pydantic annotation, if any
    output_schema: dict[str, Any] | None
    returns: Any = None  # the return annotation (a stream's chunk type), for load-time checks
    takes: Any = None  # the payload parameter's pydantic model, if any


def inspect_handler(func: Any, spec: str) -> Handler:
    """Work out how to call `func`; raises HandlerShapeError with a user-facing message."""
    if not callable(func):
        raise HandlerShapeError(f"'{spec}' is not callable (it is a {type(func).__name__})")
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 2 or any(
        p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in params
    ):
        raise HandlerShapeError(
            f"'{spec}' takes {len(required)} required parameters; "
            "a handler takes (payload) or (payload, ctx)"
        )
    arity = min(len(positional), 2) if not any(p.kind == p.VAR_POSITIONAL for p in params) else 2
    hints = _hints(func)
    in_model = _model(hints.get(positional[0].name)) if positional else None
    out_type = hints.get("return")
    streaming = inspect.isasyncgenfunction(func)
    returns = _chunk_type(out_type) if streaming else out_type
    out_model = _model(returns)
    adapt_in = _input_adapter(in_model)
    call = _caller(func, arity)
    if streaming:
        return Handler(spec, True, arity == 2, None, _streamer(call, adapt_in),
                       _schema(in_model), _schema(out_model), returns, in_model)
    if inspect.isgeneratorfunction(func):
        raise HandlerShapeError(
            f"'{spec}' is a sync generator; streaming handlers are `async def` with `yield`")
    # A callable object counts as async when its __call__ is a coroutine function.
    call_method = vars(type(func)).get("__call__")
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call_method)
    return Handler(spec, False, arity == 2, _invoker(call, adapt_in, is_async), None,
                   _schema(in_model), _schema(out_model), returns, in_model)


def _caller(func: Any, arity: int) -> Callable[[Any, Context | None], Any]:
    if arity == 0:
        return lambda payload, ctx: func()
    if arity == 1:
        return lambda payload, ctx: func(payload)
    return func


def _invoker(call: Callable[[Any, Context | None], Any], adapt_in: Callable[[Any], Any] | None,
             is_async: bool) -> Invoke:
    if is_async:
        async def invoke_async(payload: Any, ctx: Context | None) -> Any:
            result = await call(adapt_in(payload) if adapt_in else payload, ctx)
            return dump(result)
        return invoke_async

    async def invoke_sync(payload: Any, ctx: Context | None) -> Any:
        arg = adapt_in(payload) if adapt_in else payload
        thread = THREAD_POOL.submit(_in_thread, call, arg, ctx)
        try:
            return dump(await asyncio.wrap_future(thread))
        except asyncio.CancelledError:
            if thread.cancel() or thread.done():  # it never started, or has just ended
                raise
            raise ThreadOverrun(thread) from None
    return invoke_sync


def _streamer(call: Callable[[Any, Context | None], Any],
              adapt_in: Callable[[Any], Any] | None) -> Stream:
    async def stream(payload: Any, ctx: Context | None) -> AsyncIterator[Any]:
        async for chunk in call(adapt_in(payload) if adapt_in else payload, ctx):
            yield dump(chunk)
    return stream


def dump(value: Any) -> Any:
    """A returned pydantic model becomes plain JSON data; anything else passes through."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _input_adapter(model: type[BaseModel] | None) -> Callable[[Any], Any] | None:
    if model is None:
        return None

    def adapt(payload: Any) -> Any:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise InputModelError([
                {"path": "".join(f"/{p}" for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]) from None
    return adapt


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: treat as unannotated
        return {}


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _chunk_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else None


def _schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return TypeAdapter(model).json_schema() if model is not None else None
