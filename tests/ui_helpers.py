"""Browser tests of `mesh-runtime ui`: the real server as a subprocess on a free port, and
Debian's Chromium driven by Playwright (nothing is downloaded)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, free_port

ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"  # screenshots (git-ignored)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`; .ci/run installs it when missing)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = ("no Chromium on PATH: apt-get install -y chromium (the browser tests drive "
               "the system's Chromium, they never download one)")
    if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure
        pytest.fail(message)
    pytest.skip(message)


class UiProcess:
    """`mesh-runtime ui` as a user starts it; `url` once it answers; always stopped."""

    def __init__(self, nats_url: str, *extra: str, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.host = host
        args = [sys.executable, "-m", "runtime", "ui", "--nats", nats_url, "--host", host,
                "--port", str(self.port), *extra]
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def printed_url(self) -> str:
        for line in self.lines:
            found = re.search(r"on (http://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("no URL printed; log:\n" + self.log)

    def wait_ready(self, timeout: float = 30) -> UiProcess:
        """Until the printed line is there and the page answers (any status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"ui exited ({self.process.returncode}); log:\n{self.log}")
            if any("serving the mesh" in line for line in self.lines):
                try:
                    urllib.request.urlopen(self.base + "/static/style.css", timeout=2).close()
                    return self
                except urllib.error.HTTPError:
                    return self  # it answers (401 without the token)
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError("ui did not answer; log:\n" + self.log)

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> UiProcess:
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is not None:
            print(f"--- ui log ---\n{self.log}")  # pytest shows it with the failure


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """(status, body, headers) of a GET, 4xx and 5xx included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its screenshot is kept under tests/artifacts/ui/ whatever the outcome,
    and the browser's own errors (a script that failed) fail the test."""
    # bypass_csp: the page's own policy forbids eval, which older Playwrights use for
    # wait_for_function; and without it, the hostile-text tests prove the page never turns
    # text into HTML at all, not merely that the policy would stop a script (the policy
    # itself is checked on its header)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
        finally:
            context.close()
    assert problems == []


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    """A screenshot now, kept under tests/artifacts/ui/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to its end on a thread of its own (Playwright's sync API keeps an
    event loop in the test's thread, so asyncio.run cannot be called there)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


def big_mesh(folder: Path, count: int) -> Path:
    """A mesh.yaml of `count` echo agents (big.agent0000, ...), each with an input schema."""
    lines = ["version: 1", "name: big", "agents:"]
    for i in range(count):
        lines += [f"  big.agent{i:04d}:", "    handler: handlers:echo",
                  "    description: An agent of a big generated mesh, to fill the catalog.",
                  "    input: {type: object, properties: {n: {type: integer}}}"]
    (folder / "handlers.py").write_text("async def echo(payload):\n    return payload\n")
    path = folder / "mesh.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
