"""`triggers:` checked at load: subjects, streams, buckets, cron lines and `with:`
expressions, each problem at its file:line:col; the result is one TriggerDef per trigger."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.core.events import event_type_problem, events_subject
from runtime.core.protocol import agent_subject
from runtime.core.subjects import matches, subject_problem
from runtime.core.triggerspec import Trigger
from runtime.pipeline.expressions import Template, compile_template

Found = tuple[tuple[Any, ...], str]  # (path in the document, message)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # a stream, bucket or consumer name
_KEY_TOKEN = re.compile(r"^[-/_=a-zA-Z0-9]+$")
_FIELDS = ("data", "subject", "headers", "key")
MIN_EVERY = 1.0


@dataclass(frozen=True)
class TriggerDef:
    """One checked trigger of a served name, ready to run."""

    target: str
    spec: Trigger
    with_: Template | None  # None: the message's JSON body is the input
    timeout: float  # the target's: how long one request may take
    concurrency: int  # the target's: at most this many requests in flight per process
    key: str  # the trigger's identity across reloads (its kind, its settings, the target's)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def tag(self) -> str:
        """8 hex characters that tell this trigger from the target's others (stable)."""
        settings = self.spec.model_dump(by_alias=True, exclude={"with_"})
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def describe(self) -> str:
        """A few words: `stream ORDERS orders.>`, `schedule */5 * * * *`."""
        return self.spec.describe()


def check_triggers(targets: Mapping[str, tuple[tuple[Any, ...], list[Trigger], float, int]],
                   known: set[str]) -> tuple[list[TriggerDef], list[Found], list[Found]]:
    """TriggerDefs, errors and warnings for every target's triggers. `targets` maps each
    served name to (its path in the document, its triggers, its timeout, its concurrency);
    `known` is every name of the file and of external:."""
    found, errors, warnings = [], [], []
    for target, (where, triggers, timeout, concurrency) in targets.items():
        seen: dict[str, int] = {}
        for index, spec in enumerate(triggers):
            at = (*where, "triggers", index)
            problems = list(_problems(target, spec, at))
            if spec.event is not None and spec.event.from_ not in known:
                warnings.append(((*at, "event", "from"), f"'{spec.event.from_}' is no agent or "
                                 "pipeline of this file or of external:; the trigger fires only "
                                 f"if something publishes on {events_subject(spec.event.from_)}"))
            if spec.event is not None and spec.event.from_ == target:
                warnings.append(((*at, "event", "from"), f"'{target}' takes its own events: "
                                 "each one it emits of this type starts it again"))
            with_, with_problems = _with(spec, at)
            problems += with_problems
            identity = _identity(spec)
            if identity in seen:
                problems.append((at, f"the same {spec.kind} as trigger {seen[identity]} of "
                                 f"'{target}' (each message would start it twice)"))
            seen.setdefault(identity, index)
            errors += problems
            if not problems:
                key = json.dumps([target, spec.model_dump(by_alias=True), timeout, concurrency],
                                 sort_keys=True, default=str)
                found.append(TriggerDef(target, spec, with_, timeout, concurrency, key))
    return found, errors, warnings


def _identity(spec: Trigger) -> str:
    """What two triggers of one target may not share (one consumer, one queue group)."""
    if spec.stream is not None:
        return f"stream {spec.stream.stream}"
    if spec.kv is not None:
        return f"kv {spec.kv.bucket}"
    return spec.describe()


def _problems(target: str, spec: Trigger, at: tuple[Any, ...]) -> Iterator[Found]:
    if spec.subject is not None:
        problem = subject_problem(spec.subject)
        if problem:
            yield (*at, "subject"), problem
        elif matches(spec.subject, agent_subject(target)):
            yield (*at, "subject"), (f"subject '{spec.subject}' takes the requests to "
                                     f"'{target}' itself: each request would start another")
    elif spec.stream is not None:
        stream = spec.stream
        if not _NAME.match(stream.stream):
            yield (*at, "stream", "stream"), (f"invalid stream name {json.dumps(stream.stream)}: "
                                              "letters, digits, _ and -")
        problem = subject_problem(stream.subject)
        if problem:
            yield (*at, "stream", "subject"), problem
        if stream.max_backoff < stream.backoff:
            yield (*at, "stream", "max_backoff"), "max_backoff is shorter than backoff"
    elif spec.kv is not None:
        if not _NAME.match(spec.kv.bucket):
            yield (*at, "kv", "bucket"), (f"invalid bucket name {json.dumps(spec.kv.bucket)}: "
                                          "letters, digits, _ and -")
        if not _key_pattern(spec.kv.key):
            yield (*at, "kv", "key"), (f"invalid key pattern {json.dumps(spec.kv.key)}: tokens "
                                       "of letters, digits and - / _ = separated by '.', or "
                                       "'*' and '>' ('>' last)")
    elif spec.schedule is not None:
        yield from _schedule_problems(spec, at)
    else:
        assert spec.event is not None
        if problem := event_type_problem(spec.event.type or "x"):
            yield (*at, "event", "type"), problem


def _schedule_problems(spec: Trigger, at: tuple[Any, ...]) -> Iterator[Found]:
    assert spec.schedule is not None
    cron, every = spec.schedule.cron, spec.schedule.every
    if every is not None and every < MIN_EVERY:
        yield (*at, "schedule", "every"), f"every is {every:g}s; at least {MIN_EVERY:g}s"
    if cron is not None:
        from croniter import croniter  # only for files that have a cron schedule

        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            yield (*at, "schedule", "cron"), (f"invalid cron line {json.dumps(cron)}: five "
                                              "fields (minute hour day month weekday), like "
                                              '"*/5 * * * *"')


def _key_pattern(key: str) -> bool:
    tokens = key.split(".")
    return all(_KEY_TOKEN.match(t) or t == "*" or (t == ">" and i == len(tokens) - 1)
               for i, t in enumerate(tokens))


def _with(spec: Trigger, at: tuple[Any, ...]) -> tuple[Template | None, list[Found]]:
    if "with_" not in spec.model_fields_set:
        return None, []
    template, problems = compile_template(spec.with_, (*at, "with"))
    found: list[Found] = [(path, message) for path, message in problems]
    for path, expr in template.expressions:
        for name, field in expr.roots():
            if name != "message":
                found.append((path, f"expression {expr.text!r} reads '{name}'; a trigger's "
                              "with: reads message.data, message.subject, message.headers "
                              "(and message.key for kv)"))
            elif field is not None and field not in _FIELDS:
                found.append((path, f"expression {expr.text!r} reads message.{field}; a message "
                              "has data, subject, headers (and key for kv)"))
    return template, found
