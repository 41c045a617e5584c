"""`mesh-runtime ui` on a mesh of 1,000 agents: every row is drawn, the page stays usable.
The time it takes is measured by benchmarks/ui.py; here only a generous bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.nats.embedded import NatsServer
from tests import ui_helpers
from tests.helpers import UpProcess
from tests.ui_helpers import UiProcess, big_mesh, shot

browser = ui_helpers.browser
page = ui_helpers.page
COUNT = 1000


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProcess]:
    path = big_mesh(tmp_path_factory.mktemp("big"), COUNT)
    with NatsServer() as server, UpProcess(path, server.url, "--no-reload") as up:
        up.wait_for(f"ready: {COUNT} agents", timeout=120)
        with UiProcess(server.url) as process:
            yield process


@pytest.mark.timeout(300)
def test_a_thousand_agents_are_all_drawn_and_the_filter_answers(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/")
    page.wait_for_function(f"() => document.querySelectorAll('#mesh-rows tr').length === {COUNT}",
                           timeout=60_000)
    painted = page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(window.meshFirstPaint)))")
    assert painted is not None and painted < 10_000  # generous: benchmarks/ui.py has the figure
    assert page.inner_text("#mesh-summary").startswith(f"{COUNT} agents, 0 pipelines, 0 offline")
    page.fill("#mesh-filter", "agent0999")
    assert page.locator("#mesh-rows tr").count() == 1
    page.fill("#mesh-filter", "")
    assert page.locator("#mesh-rows tr").count() == COUNT
    page.goto(ui.base + "/#/agent/big.agent0500")
    page.wait_for_selector("#call-form")
    page.fill("#field-n", "5")
    page.click("#call")
    page.wait_for_selector(".answer-head.ok")
    page.goto(ui.base + "/")
    page.wait_for_function(f"() => document.querySelectorAll('#mesh-rows tr').length === {COUNT}")
    shot(page, "mesh-1000", full_page=False)
