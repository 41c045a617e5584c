"""The gate in front of every page, asset and API call: the token, the Host, the origin.

- With a token (any host but loopback has one), a request shows it as `?token=`, as
  `Authorization: Bearer`, or as the cookie the first `?token=` visit sets; else 401.
- Without one (loopback), the Host header must name a loopback address, so a web page
  elsewhere cannot reach the mesh through a DNS name rebound to 127.0.0.1.
- A POST (a call, a cancel, a signal) must carry `X-Mesh-UI: 1`, which a cross-site form
  cannot send without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.ui.settings import is_loopback

COOKIE = "mesh-ui-token"
CSRF_HEADER = b"x-mesh-ui"


class Gate:
    """Pure ASGI middleware: lets a request through, or answers 401/403 itself."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.token is None and not is_loopback(_hostname(headers.get(b"host", b""))):
            await _refuse(scope, send, 403, "forbidden", "this page answers to 127.0.0.1 only")
            return
        if self.token is not None:
            shown = _shown_token(scope, headers)
            if shown is None or not hmac.compare_digest(shown.encode(), self.token.encode()):
                await _refuse(scope, send, 401, "unauthorized",
                              "this page needs its token: open the URL `mesh-runtime ui` "
                              "printed (…/?token=…), or send Authorization: Bearer TOKEN")
                return
        if scope["method"] not in ("GET", "HEAD") and headers.get(CSRF_HEADER) != b"1":
            await _refuse(scope, send, 403, "forbidden",
                          "a POST needs the header X-Mesh-UI: 1 (the page sends it)")
            return
        if self.token is not None and _query(scope).get("token"):
            await self.app(scope, receive, _setting_cookie(send, self.token))
            return
        await self.app(scope, receive, send)


def _hostname(host: bytes) -> str:
    text = host.decode("latin-1").strip()
    if text.startswith("["):  # [::1]:8765
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


def _shown_token(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    token = _query(scope).get("token")
    if token:
        return token[0]
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None


def _setting_cookie(send: Send, token: str) -> Send:
    """`send`, adding the token's cookie to the response start (HttpOnly, SameSite)."""

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            value = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"set-cookie", value.encode("latin-1"))]}
        await send(message)

    return sending


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"ok": False, "error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
