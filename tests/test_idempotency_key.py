"""`X-Mesh-Idempotency-Key: <run>/<step path>` on every call a run makes, read by handlers
as `ctx.idempotency_key`: the same on every retry; `[i]` for a for_each item."""

from __future__ import annotations

import json
from pathlib import Path

import nats

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh

HANDLERS = """
    import os
    from pathlib import Path

    def flaky(payload, ctx):
        log = Path(os.environ["KEYS_LOG"])
        with log.open("a") as f:
            f.write(f"{ctx.idempotency_key}\\n")
        if len(log.read_text().splitlines()) == 1:
            raise RuntimeError("first try fails")
        return {"key": ctx.idempotency_key}

    def plain(payload, ctx):
        return {"key": ctx.idempotency_key}
"""

MESH = """
    version: 1
    agents:
      k.flaky: {handler: "{mod}:flaky"}
      k.plain: {handler: "{mod}:plain"}
    pipelines:
      k.flow:
        steps:
          - {id: first, call: k.flaky, retry: {attempts: 2, backoff: 10ms}}
          - {id: each, for_each: "[`1`, `2`]", call: k.plain}
"""


async def test_every_attempt_and_item_carries_its_key(nats_server: NatsServer,
                                                      tmp_path: Path) -> None:
    log = tmp_path / "keys.log"
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload", env={"KEYS_LOG": str(log)}):
        nc = await nats.connect(nats_server.url)
        try:
            reply = await nc.request("mesh.agent.k.flow", b"{}", timeout=10,
                                     headers={"X-Mesh-Request-Id": "idem-run"})
            direct = await nc.request("mesh.agent.k.plain", b"{}", timeout=10)
        finally:
            await nc.close()
    assert json.loads(reply.data) == [{"key": "idem-run/each[0]"}, {"key": "idem-run/each[1]"}]
    assert log.read_text().splitlines() == ["idem-run/first", "idem-run/first"]
    assert json.loads(direct.data) == {"key": None}  # not a run's step: no key
