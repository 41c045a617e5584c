"""Replies published with a header block built once: byte for byte what nats-py would send.

runtime/nats/headerblock.py takes the steps of nats-py's publish() after its header
encoding, through nats-py internals; these tests pin each internal it relies on, so a
nats-py upgrade that changes one fails here, not on a user's mesh.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.requestids import new_request_id
from runtime.core.text import is_request_id
from runtime.nats.headerblock import HeaderBlock, publish
from tests.raw_nats import RawNats

FIXED = {p.HDR_STATUS: "ok", p.HDR_SOURCE: "w.echo", p.HDR_INSTANCE_ID: "0123456789ab"}


async def test_a_message_is_the_same_bytes_as_nats_py_publish_sends(nats_url: str,
                                                                    unique: str) -> None:
    watcher = RawNats(nats_url)
    watcher.sub(f"hb.{unique}")
    watcher.flush()
    nc = await nats.connect(nats_url)
    block = HeaderBlock(FIXED)
    try:
        await nc.publish(f"hb.{unique}", b'{"a": 1}', headers=block.headers_for("id-1"))
        await publish(nc, f"hb.{unique}", b'{"a": 1}', block, "id-1")
        await nc.flush()
        by_nats_py = await asyncio.to_thread(watcher.next_msg)
        by_block = await asyncio.to_thread(watcher.next_msg)
    finally:
        await nc.close()
        watcher.close()
    assert by_block == by_nats_py
    assert by_block.headers == (b"NATS/1.0\r\nX-Mesh-Status: ok\r\nX-Mesh-Source: w.echo\r\n"
                                b"X-Mesh-Instance-Id: 0123456789ab\r\nX-Mesh-Request-Id: id-1"
                                b"\r\n\r\n")


async def test_publish_counts_the_message_in_the_client_stats(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        before = dict(nc.stats)
        await publish(nc, "hb.stats", b"12345", HeaderBlock(FIXED), "id-2")
    finally:
        await nc.close()
    assert (nc.stats["out_msgs"] - before["out_msgs"],
            nc.stats["out_bytes"] - before["out_bytes"]) == (1, 5)


def test_the_nats_py_internals_it_relies_on_are_there() -> None:
    # The steps of Client.publish() after the header encoding; see the module docstring.
    for name in ("_send_command", "_flush_pending", "_send_publish"):
        assert asyncio.iscoroutinefunction(getattr(Client, name)), name
    client = Client()
    assert (client._status, client._flush_queue, client.stats["out_msgs"]) == (
        Client.DISCONNECTED, None, 0)
    assert hasattr(client, "_max_payload")


async def test_a_closed_connection_raises_what_nats_py_raises(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await publish(nc, "hb.closed", b"{}", HeaderBlock(FIXED), "id-3")


async def test_a_body_over_max_payload_raises_what_nats_py_raises(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(nats.errors.MaxPayloadError):
            await publish(nc, "hb.big", b"x" * (nc.max_payload + 1), HeaderBlock(FIXED), "id-4")
    finally:
        await nc.close()


def test_a_header_name_nats_py_refuses_is_refused_when_the_block_is_made() -> None:
    with pytest.raises(ValueError) as caught:
        HeaderBlock({"X-Bad Name": "v"})
    assert str(caught.value) == "not a header name: 'X-Bad Name'"


def test_fixed_values_are_written_as_nats_py_writes_them() -> None:
    block = HeaderBlock({"X-A": " padded \r\nline ", "X-B": "é"})
    assert block.bytes_for("r") == ("NATS/1.0\r\nX-A: padded   line\r\nX-B: é\r\n"
                                    "X-Mesh-Request-Id: r\r\n\r\n").encode()


def test_request_ids_made_here_are_request_ids_and_never_repeat() -> None:
    made = [new_request_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(is_request_id(i) for i in made)
    assert {len(i) for i in made} == {32}  # as long as the uuid4().hex it replaces


async def test_queue_plain_sends_what_publish_sends_and_refuses_when_closed(
        nats_url: str, unique: str) -> None:
    """Run events are queued with `queue_plain` (no await): the same bytes as publish(),
    a reply subject kept, and nothing queued (False) on a closed connection."""
    from runtime.nats.headerblock import queue_plain

    watcher = RawNats(nats_url)
    watcher.sub(f"qp.{unique}")
    watcher.flush()
    nc = await nats.connect(nats_url)
    try:
        await nc.publish(f"qp.{unique}", b'{"e": 1}', reply="r.x")
        assert queue_plain(nc, f"qp.{unique}", b'{"e": 1}', "r.x") is True
        assert queue_plain(nc, f"qp.{unique}", b'{"e": 2}') is True
        await nc.flush()
        by_nats_py = await asyncio.to_thread(watcher.next_msg)
        queued = await asyncio.to_thread(watcher.next_msg)
        plain = await asyncio.to_thread(watcher.next_msg)
    finally:
        await nc.close()
        watcher.close()
    assert queued == by_nats_py
    assert plain.body == b'{"e": 2}' and plain.reply == "" and queued.reply == "r.x"
    assert queue_plain(nc, f"qp.{unique}", b"{}") is False
