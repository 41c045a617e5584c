"""The page's files, shipped inside the package: served from it (a missing folder fails
at start), each URL carrying a hash of the file's content, so a browser may keep a file
for good and still never runs an old one after an upgrade."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PACKAGE = "runtime.ui"
FOLDER = "static"
_ASSET = re.compile(r"\{\{asset:([A-Za-z0-9_.-]+)\}\}")
# The page runs its own files only: no inline script, no other origin, no frames.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
          "frame-ancestors 'none'")


def _folder() -> resources.abc.Traversable:
    return resources.files(PACKAGE).joinpath(FOLDER)


def content_hashes() -> dict[str, str]:
    """File name -> the first 12 hex of its SHA-256."""
    return {item.name: hashlib.sha256(item.read_bytes()).hexdigest()[:12]
            for item in _folder().iterdir() if item.is_file()}


def index_page() -> str:
    """index.html with every `{{asset:NAME}}` replaced by NAME's URL (with its hash)."""
    hashes = content_hashes()
    text = _folder().joinpath("index.html").read_text(encoding="utf-8")

    def url(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in hashes:
            raise FileNotFoundError(f"index.html names {name}, which is not in the package")
        return f"/static/{name}?v={hashes[name]}"

    return _ASSET.sub(url, text)


class HashedStatic(StaticFiles):
    """StaticFiles from the package; a URL with `?v=` (a content hash) is cached for good."""

    def __init__(self) -> None:
        super().__init__(packages=[(PACKAGE, FOLDER)])

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if b"v=" in scope.get("query_string", b"") and response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        response.headers["x-content-type-options"] = "nosniff"
        return response


def page_response(page: str) -> HTMLResponse:
    return HTMLResponse(page, headers={"content-security-policy": POLICY,
                                       "cache-control": "no-store",
                                       "x-content-type-options": "nosniff",
                                       "referrer-policy": "no-referrer"})
