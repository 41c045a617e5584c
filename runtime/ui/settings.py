"""What `mesh-runtime ui` was asked for: where to listen, which NATS, which token."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import quote

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    nats_url: str = "nats://127.0.0.1:4222"
    token: str | None = None  # None: no token asked (loopback only)
    poll: float = 2.0  # seconds between two looks at the mesh's stats
    call_timeout: float = 30.0  # the form's calls, unless the page asks for less

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"/?token={quote(self.token, safe='')}" if self.token else "/"
        return f"http://{host}:{self.port}{query}"


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1 or localhost: only this machine can reach the page."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settle_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token the page asks for, and whether it was made up here (to be printed): any
    host but 127.0.0.1 (or ::1, localhost) needs one, as Jupyter does, 127.0.0.2 and
    0.0.0.0 included; a given token is always asked."""
    if token:
        return token, False
    if host in LOOPBACK_NAMES:
        return None, False
    return secrets.token_urlsafe(24), True
