"""How many replicas a bucket gets: min(3, cluster size), so losing one node keeps it."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

MAX_REPLICAS = 3


def replica_choices(nc: Client) -> list[int]:
    """Replica counts to try, best first.

    The server's INFO says whether it is part of a cluster; the peer list it gossips
    (`connect_urls`) can still be partial right after connecting, so a clustered server
    gets 3 tried first, then fewer: JetStream refuses more replicas than it has servers.
    """
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return [1]
    known = len(set(info.get("connect_urls") or ())) or 1
    return list(range(MAX_REPLICAS, 0, -1)) if known < MAX_REPLICAS else [MAX_REPLICAS, 2, 1]


async def create_replicated(create: Any, choices: list[int]) -> Any:
    """`await create(replicas)` with each choice in turn until JetStream accepts one."""
    for i, replicas in enumerate(choices):
        try:
            return await create(replicas)
        except Exception:
            if i == len(choices) - 1:
                raise
    raise AssertionError("no replica choice")  # unreachable: choices is never empty
