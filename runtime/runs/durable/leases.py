"""Who owns a durable run: its lease in KV `mesh-run-leases` (key = run id).

The value is JSON, `{"instance", "pipeline", "state": "running"|"parked", "wake",
"signal"}`: the instance that owns the run; while it is parked, when it wakes (`wake`, unix
seconds, or null) and the signal it waits for. Every change is a compare-and-set on the
revision the changer last saw (`create`, `update(last=...)`), so of two instances that
claim one run, exactly one wins; the other stops (`LeaseLost`). An owner is alive while
its instance record in `mesh-instances` is (section 8's rule): the heartbeat renews every
lease of its instance at once, and no lease needs a write of its own to stay held.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any

from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.nats.cluster import create_replicated, replica_choices

RUNNING = "running"
PARKED = "parked"
ENDED = "ended"  # kept (until runs.keep) so that the run's id starts no second run
_MAX_LEASE = 4096  # bytes: a bigger value is not one we wrote


class LeaseLost(BaseException):
    """This instance no longer owns the run: another claimed it. The run's task ends quietly;
    a BaseException, so a handler's `except Exception` cannot swallow it."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as read (or last written) at `revision`."""

    run: str
    instance: str
    pipeline: str
    state: str = RUNNING
    wake: float | None = None  # parked: unix seconds it wakes at (a sleep, a wait's timeout)
    signal: str | None = None  # parked on a wait: the signal's name
    revision: int = 0

    def encode(self) -> bytes:
        return json.dumps({"instance": self.instance, "pipeline": self.pipeline,
                           "state": self.state, "wake": self.wake,
                           "signal": self.signal}).encode()


def decode(run: str, value: bytes | None, revision: int) -> Lease | None:
    """The lease in a KV value, or None for one we cannot read (another client's garbage:
    nothing vouches for its owner, so it counts as held by nobody alive)."""
    if not value or len(value) > _MAX_LEASE:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    instance, pipeline, state = data.get("instance"), data.get("pipeline"), data.get("state")
    wake, signal = data.get("wake"), data.get("signal")
    if not (isinstance(instance, str) and isinstance(pipeline, str)
            and state in (RUNNING, PARKED, ENDED)):
        return None
    if wake is not None and not (isinstance(wake, int | float) and math.isfinite(wake)):
        return None
    if signal is not None and not isinstance(signal, str):
        return None
    return Lease(run, instance, pipeline, state, None if wake is None else float(wake),
                 signal, revision)


class Leases:
    """The lease bucket, with compare-and-set on every change."""

    def __init__(self, kv: KeyValue):
        self.kv = kv

    @classmethod
    async def open(cls, nc: Any, keep: float = 7 * 86400.0) -> Leases:
        js = nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(p.LEASES_BUCKET)
        except Exception:  # leases last as long as runs are kept (a longer run is rewritten)
            kv = await create_replicated(
                lambda n: js.create_key_value(bucket=p.LEASES_BUCKET, history=1, ttl=keep,
                                              replicas=n),
                replica_choices(nc))
        return cls(kv)

    async def create(self, run: str, instance: str, pipeline: str) -> Lease | None:
        """A new run's lease; None when the run id already has one (a run that exists)."""
        lease = Lease(run, instance, pipeline)
        try:
            revision = await self.kv.create(run, lease.encode())
        except (KeyWrongLastSequenceError, BadRequestError):
            return None
        return replace(lease, revision=revision)

    async def get(self, run: str) -> Lease | None:
        try:
            entry = await self.kv.get(run)
        except KeyNotFoundError:  # KeyDeletedError is one too
            return None
        return decode(run, entry.value, entry.revision or 0) or Lease(
            run, "", "", RUNNING, None, None, entry.revision or 0)  # garbage: held by nobody

    async def swap(self, old: Lease, new: Lease) -> Lease:
        """`new` in place of `old`, only if the lease is still at `old.revision`; raises
        LeaseLost otherwise (another instance changed it since)."""
        try:
            revision = await self.kv.update(old.run, new.encode(), last=old.revision)
        except (KeyWrongLastSequenceError, BadRequestError, KeyNotFoundError):
            raise LeaseLost(old.run) from None
        return replace(new, revision=revision)

    async def claim(self, seen: Lease, instance: str) -> Lease | None:
        """Take over the run from a dead owner (or wake it from parking): the new lease, or
        None when another instance was quicker."""
        try:
            return await self.swap(seen, replace(seen, instance=instance, state=RUNNING,
                                                 wake=None, signal=None))
        except LeaseLost:
            return None

    async def park(self, lease: Lease, wake: float | None, signal: str | None) -> Lease:
        return await self.swap(lease, replace(lease, state=PARKED, wake=wake, signal=signal))

    async def end(self, lease: Lease) -> None:
        """The run ended: its lease says so (only if still ours), and stays until runs.keep,
        so that a second start with the run's id gets this run's outcome."""
        with contextlib.suppress(BaseException):  # taken over meanwhile: theirs to end
            await self.swap(lease, replace(lease, state=ENDED, wake=None, signal=None))

    async def reopen(self, seen: Lease, instance: str) -> Lease | None:
        """`runs resume`: an ended run's lease, running again under `instance` (or None)."""
        return await self.claim(seen, instance)

    async def release(self, lease: Lease) -> None:
        """The lease goes (only if still ours): a run that cannot be recorded at all."""
        # Taken over meanwhile, or the bucket is gone: then it is not ours to remove.
        with contextlib.suppress(Exception):
            await self.kv.delete(lease.run, last=lease.revision)
