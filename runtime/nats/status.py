"""What `mesh-runtime status` knows: every served name's health, from the bus itself.

Sources: the catalog (what is listed), `mesh-instances` (who is alive) and the NATS
micro STATS answers of every `up` process (the counters). A name is `offline` when no
live instance answers for it, `busy` with requests in flight, `error` when more than
half of its last 20 answers were its own failures, else `idle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.liveness import Record, all_records, is_alive, open_instances
from runtime.nats.registry import mapping

QUIET = 0.25  # with no instance list to wait for, gather answers until this long silent
LIMIT = 2.0  # the longest `status` waits for STATS answers
STATUS_READ_LIMIT = 10_000  # instance records read (junk past it is reaped by every `up`)


@dataclass
class NameStatus:
    name: str
    status: str = "offline"
    instances: int = 0
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    avg_ms: float = 0.0
    p99_ms: float = 0.0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def live_instances(nc: Client) -> dict[str, Record] | None:
    """The records of the instances alive now, or None without a `mesh-instances` bucket."""
    kv = await open_instances(nc.jetstream(timeout=3))
    if kv is None:
        return None
    now = time.time()
    records = await all_records(kv, STATUS_READ_LIMIT)
    return {i: r for i, r in records.items() if is_alive(r, now)}


async def gather_stats(nc: Client, expected: Iterable[str] | None) -> list[dict[str, Any]]:
    """The $SRV.STATS answers of mesh-runtime instances; stops once every expected id
    answered, or after a quiet spell when nobody is expected, or at LIMIT."""
    answers: list[dict[str, Any]] = []
    expected = None if expected is None else set(expected)
    waiting = set(expected or ())
    arrived = asyncio.Event()

    async def on(msg: Any) -> None:
        try:
            data = json.loads(msg.data)
        except (ValueError, RecursionError):  # any process may answer anything
            return
        if isinstance(data, dict) and isinstance(data.get("endpoints"), list) and (
                mapping(data.get("metadata")).get("runtime") == "mesh-runtime"):
            answers.append(data)
            waiting.discard(str(data.get("id")))
        arrived.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on)
    try:
        await nc.publish("$SRV.STATS", b"", reply=inbox)
        deadline = time.monotonic() + LIMIT
        while (left := deadline - time.monotonic()) > 0:
            if expected is not None and not waiting:
                break
            arrived.clear()
            wait = min(left, QUIET) if expected is None or not expected else left
            try:
                await asyncio.wait_for(arrived.wait(), wait)
            except TimeoutError:
                if expected is None or not expected:
                    break  # quiet for a while: everyone who answers has answered
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return answers


def summarize(names: list[str], answers: list[dict[str, Any]],
              records: dict[str, Record] | None = None) -> list[NameStatus]:
    """One NameStatus per name: the catalog's names and every name an instance serves.

    A huge mesh's STATS answer leaves out idle endpoints (it must fit in one message);
    the instance's record lists every name it serves, so those count as idle instances.
    """
    rows: dict[str, NameStatus] = {n: NameStatus(n) for n in names}
    totals: dict[str, list[int]] = {}  # name -> [processing ns, last answers, last failures]
    for answer in answers:
        if mapping(answer.get("metadata")).get("endpoints_left_out"):
            record = mapping((records or {}).get(str(answer.get("id"))))
            answered = {str(e.get("subject", "")) for e in answer["endpoints"]
                        if isinstance(e, dict)}
            agents = record.get("agents")
            for name in agents if isinstance(agents, list) else ():
                if p.agent_subject(str(name)) not in answered:
                    rows.setdefault(str(name), NameStatus(str(name))).instances += 1
        for endpoint in answer["endpoints"]:
            if not isinstance(endpoint, dict):
                continue
            subject = str(endpoint.get("subject", ""))
            if not subject.startswith(p.AGENT_SUBJECT_PREFIX):
                continue
            name = subject[len(p.AGENT_SUBJECT_PREFIX):]
            row = rows.setdefault(name, NameStatus(name))
            data = mapping(endpoint.get("data"))
            row.instances += 1
            row.in_flight += _int(data.get("in_flight"))
            row.requests += _int(endpoint.get("num_requests"))
            row.errors += _int(endpoint.get("num_errors"))
            row.p99_ms = max(row.p99_ms, _float(data.get("p99_ms")))
            row.last_error = str(endpoint.get("last_error") or "") or row.last_error
            total = totals.setdefault(name, [0, 0, 0])
            total[0] += _int(endpoint.get("processing_time"))
            total[1] += _int(data.get("last_answers"))
            total[2] += _int(data.get("last_failures"))
    for name, row in rows.items():
        spent, seen, failed = totals.get(name, [0, 0, 0])
        row.avg_ms = round(spent / row.requests / 1e6, 3) if row.requests else 0.0
        if row.instances == 0:
            row.status = "offline"
        elif row.in_flight:
            row.status = "busy"
        elif seen and failed * 2 > seen:
            row.status = "error"
        else:
            row.status = "idle"
    return sorted(rows.values(), key=lambda r: r.name)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
