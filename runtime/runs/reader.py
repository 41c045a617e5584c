"""Reading the run journal back: one run's events, the runs of a recent window, and a run's
events as they happen. The CLI and the web page read runs only through here.

Anything on `mesh.run.>` may have been published by any client: a message that is not an
event of the run its subject names comes back as an `Unreadable` record, never an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from runtime.core.text import is_request_id
from runtime.runs import events as ev

LIST_WINDOW = 5_000  # events read first by `list_runs`; grows 4x while too few runs are found
MAX_LISTED_EVENTS = 500_000  # the most events one listing reads
READ_TIMEOUT = 5.0  # seconds without a message while reading what the journal holds


class JournalUnavailable(RuntimeError):
    """The journal cannot be read (no JetStream, or no MESH_RUNS stream)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One message of the journal: its event, or None when it is not a readable one."""

    seq: int
    subject: str
    event: dict[str, Any] | None
    size: int


async def stream_bounds(nc: Client) -> tuple[int, int]:
    """The first and last sequence numbers of MESH_RUNS; raises JournalUnavailable."""
    try:
        info = await nc.jetstream(timeout=5).stream_info(ev.STREAM)
    except Exception as exc:
        raise JournalUnavailable(
            f"the run journal (JetStream stream {ev.STREAM}) is not available: "
            f"{str(exc) or type(exc).__name__}. Runs are recorded by `mesh-runtime up` on a "
            "NATS server with JetStream") from None
    return info.state.first_seq, info.state.last_seq


async def read_run(nc: Client, run_id: str) -> list[Record]:
    """Every message the journal holds for `run_id`, oldest first (empty: unknown run)."""
    check_run_id(run_id)
    await stream_bounds(nc)
    return [r async for r in _records(nc, f"{ev.SUBJECT_PREFIX}{run_id}.>", None, follow=False)]


async def follow_run(nc: Client, run_id: str,
                     first_within: float = 10.0) -> AsyncIterator[Record]:
    """The run's messages from the first on, then each as it comes, until the run ends
    (its own run_finished, run_failed or run_cancelled). Raises LookupError when the journal
    has nothing of the run within `first_within` seconds (an async run's first event may
    come a moment after its id)."""
    check_run_id(run_id)
    await stream_bounds(nc)
    first: str | None = None
    async for record in _records(nc, f"{ev.SUBJECT_PREFIX}{run_id}.>", None, follow=True,
                                 first_within=first_within):
        yield record
        event = record.event
        if event is None:
            continue
        if first is None and event["event"] == ev.RUN_STARTED:
            first = event.get("pipeline")
        if (event["event"] in ev.RUN_ENDS and (first is None or event.get("pipeline") == first)
                and not await _resumed_after(nc, run_id, record.seq)):
            return


async def _resumed_after(nc: Client, run_id: str, seq: int) -> bool:
    """Whether `runs resume` started the run again after the end at `seq` (durable runs)."""
    try:
        last = await nc.jetstream(timeout=5).get_last_msg(
            ev.STREAM, ev.subject(run_id, ev.RUN_RESUMED))
    except Exception:  # none (or no answer): the end stands
        return False
    return bool(last.seq and last.seq > seq)


async def recent_records(nc: Client, enough: int) -> list[Record]:
    """The events of the newest runs: a window at the end of the journal, widened until it
    holds the run_started of `enough` runs or reaches the journal's start."""
    first, last = await stream_bounds(nc)
    if last == 0 or last < first:
        return []
    window = LIST_WINDOW
    while True:
        start = max(first, last - window + 1)
        records = [r async for r in _records(nc, ev.SUBJECTS, start, follow=False, last=last)]
        starts = sum(1 for r in records if r.event and r.event["event"] == ev.RUN_STARTED)
        if starts >= enough or start == first or window >= MAX_LISTED_EVENTS:
            return records
        window *= 4


def check_run_id(run_id: str) -> None:
    """Raise ValueError when `run_id` cannot be a run id (a request id: 1 to 128 characters
    of A-Z, a-z, 0-9, _ and -)."""
    if not is_request_id(run_id):
        shown = run_id if len(run_id) <= 40 else run_id[:37] + "..."
        raise ValueError(f"invalid run id {shown!r}: a run id is 1 to 128 characters of "
                         "A-Z, a-z, 0-9, _ and - (the request id of the run)")


def run_of(subject: str) -> str:
    """The run id a journal subject names (`mesh.run.<run id>.<event>`)."""
    return subject[len(ev.SUBJECT_PREFIX):].split(".", 1)[0]


def as_record(seq: int, subject: str, data: bytes) -> Record:
    """A message as a Record: unreadable unless it is an event of the run and kind its subject
    names."""
    event = ev.decode(data)
    if event is not None:
        _, _, kind = subject[len(ev.SUBJECT_PREFIX):].partition(".")
        if event["run"] != run_of(subject) or event["event"] != kind:
            event = None
    return Record(seq, subject, event, len(data))


async def _records(nc: Client, subject: str, start: int | None, *, follow: bool,
                   last: int | None = None,
                   first_within: float = READ_TIMEOUT) -> AsyncIterator[Record]:
    js = nc.jetstream(timeout=5)
    if start is None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=start)
    sub = await js.subscribe(subject, ordered_consumer=True, config=config,
                             pending_msgs_limit=100_000, pending_bytes_limit=256 * 1024 * 1024)
    try:
        if not follow:
            info = await sub.consumer_info()
            if not info.num_pending and not (info.delivered and info.delivered.consumer_seq):
                return
        seen = False
        while True:
            wait = READ_TIMEOUT if not follow else (3600.0 if seen else first_within)
            try:
                msg = await sub.next_msg(timeout=wait)
            except TimeoutError:  # nats-py's is one too
                if not follow:
                    return
                if not seen:
                    raise LookupError(subject) from None
                continue
            seen = True
            meta = msg.metadata
            seq = meta.sequence.stream
            yield as_record(seq, msg.subject, msg.data)
            if not follow and (meta.num_pending == 0 or (last is not None and seq >= last)):
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
