"""Find and call the summarizer with the OpenAgentMesh 0.2 SDK, unchanged.

    python examples/summarizer/consumer.py [NATS_URL]

The URL comes from the first argument, else NATS_URL, else nats://127.0.0.1:4222
(where `mesh-runtime up` starts its embedded server).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from openagentmesh import AgentMesh, MeshError

AGENT = "summarizer.summarize"
TEXT = ("NATS moves messages between services. mesh-runtime serves agents on it from a YAML "
        "file. Each agent has a handler and a schema for its input and its output. Clients "
        "find them in the catalog.")


async def main(url: str) -> int:
    async with AgentMesh(url) as mesh:
        entries = sorted(await mesh.catalog(), key=lambda e: e.name)
        print("catalog:")
        for entry in entries:
            kind = "stream" if entry.streaming else "call"
            print(f"  {entry.name} {entry.version} ({kind}): {entry.description}")
        if AGENT not in {e.name for e in entries}:
            print(f"{AGENT} is not in the catalog; is `mesh-runtime up -f "
                  "examples/summarizer/mesh.yaml` running?", file=sys.stderr)
            return 1
        result = await mesh.call(AGENT, {"text": TEXT, "max_length": 120}, timeout=10)
        print(f"{AGENT} replied:")
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    try:
        sys.exit(asyncio.run(main(url)))
    except MeshError as exc:
        print(f"error: {exc.code}: {exc}", file=sys.stderr)
        sys.exit(1)
