"""Starting the embedded nats-server, and the error `up` stops with when it cannot start.

Light on purpose (no NATS client, no loader): the supervisor imports it, and the
supervisor should start fast and import nothing a handler could change.
"""

from __future__ import annotations

import socket
from pathlib import Path

from runtime.nats.embedded import NatsServer, NatsServerError


class StartupError(RuntimeError):
    """`up` cannot start; the message says what to do."""


class NatsUnreachable(StartupError):
    """No NATS server answered, or it refused our login: the one failure after which the
    supervisor decides that NATS is gone (a worker's own exit never decides it)."""


def embedded_server(port: int, store_dir: str | None, folder: Path) -> NatsServer:
    """Start the embedded nats-server the file asks for (JetStream on, 127.0.0.1)."""
    if port and port_taken(port):
        raise StartupError(
            f"port {port} on 127.0.0.1 is taken (is another mesh-runtime up or "
            f"nats-server running?). To join that server: "
            f"mesh-runtime up --nats nats://127.0.0.1:{port}")
    store = str(folder / store_dir) if store_dir else None
    try:
        return NatsServer(port=port, store_dir=store).start()
    except NatsServerError as exc:
        raise StartupError(str(exc)) from None


def port_taken(port: int) -> bool:
    """Whether a TCP port on 127.0.0.1 is in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
