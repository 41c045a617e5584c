"""`mesh-runtime ui`'s runs pages in a real browser: the list and its filters, a run's
timeline live while it runs, and the cancel, resume and signal buttons."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.nats.embedded import NatsServer
from tests import ui_helpers
from tests.helpers import UpProcess, cli, write_mesh
from tests.ui_helpers import UiProcess, shot

browser = ui_helpers.browser
page = ui_helpers.page

HANDLERS = """
    import asyncio

    def echo(payload):
        return payload

    def boom(payload):
        raise ValueError("step went wrong")

    async def slow(payload):
        await asyncio.sleep(float(payload.get("seconds", 1)))
        return {"slept": payload.get("seconds", 1)}
"""

MESH = """
    version: 1
    name: ui-runs
    agents:
      uir.echo: {handler: "{mod}:echo"}
      uir.boom: {handler: "{mod}:boom"}
      uir.slow: {handler: "{mod}:slow", timeout: 120s}
    pipelines:
      uir.quick:
        description: Two quick steps.
        input: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: first, call: uir.echo, with: {text: "${{ input.text }}"}}
          - {id: second, call: uir.echo, with: {again: "${{ steps.first.text }}"}}
      uir.broken:
        description: Its second step fails.
        steps:
          - {id: fine, call: uir.echo}
          - {id: bad, call: uir.boom}
      uir.long:
        description: A quick step, then one that takes as long as it is told.
        timeout: 120s
        input: {type: object, properties: {seconds: {type: number}}}
        steps:
          - {id: first, call: uir.echo, with: {n: 1}}
          - id: nap
            call: uir.slow
            timeout: 120s
            with: {seconds: "${{ input.seconds }}"}
      uir.approve:
        description: Waits for a person to approve, then goes on.
        durable: true
        steps:
          - {id: first, call: uir.echo, with: {n: 1}}
          - {id: approval, wait: {signal: approve, timeout: 10m}}
          - {id: after, call: uir.echo, with: {by: "${{ steps.approval.by }}"}}
      uir.durable_broken:
        description: A durable pipeline whose second step fails.
        durable: true
        steps:
          - {id: fine, call: uir.echo}
          - {id: bad, call: uir.boom}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as nats_server:
        yield nats_server


@pytest.fixture(scope="module")
def ui(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("mesh"), MESH, HANDLERS)
    with UpProcess(path, server.url, "--no-reload"), UiProcess(server.url) as process:
        yield process


def _call(server: NatsServer, name: str, payload: Any, *extra: str) -> str:
    result = cli("call", name, json.dumps(payload), "--nats", server.url, *extra)
    return result.stdout + result.stderr


def test_the_runs_list_filters_by_pipeline_and_status(
        ui: UiProcess, server: NatsServer, page: Any) -> None:
    _call(server, "uir.quick", {"text": "a"})
    _call(server, "uir.quick", {"text": "b"})
    _call(server, "uir.broken", {})
    page.goto(ui.base + "/#/runs")
    page.wait_for_selector("#runs-table tr[data-run]")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tr[data-run]').length >= 3")
    page.fill("#runs-pipeline", "uir.quick")
    page.press("#runs-pipeline", "Enter")
    page.wait_for_function("() => location.hash === '#/runs?pipeline=uir.quick'")
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#runs-table tr[data-run]')];"
        " return rows.length >= 2 && rows.every(r => r.dataset.status === 'ok'); }")
    page.goto(ui.base + "/#/runs?status=failed")
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#runs-table tr[data-run]')];"
        " return rows.length >= 1 && rows.every(r => r.dataset.status === 'failed'); }")
    broken = page.locator("#runs-table tr[data-run]", has_text="uir.broken").first
    cells = broken.locator("td").all_inner_texts()
    assert cells[1] == "uir.broken" and "step_failed" in cells[-1]
    shot(page, "runs")
    # a pipeline's page lists its recent runs
    page.goto(ui.base + "/#/agent/uir.quick")
    page.wait_for_selector("#recent-runs tr[data-run]")
    assert page.locator("#recent-runs tr[data-run]").count() >= 2
    assert page.locator("#recent-runs th").all_text_contents()[1] == "Status"  # no pipeline column


def test_a_finished_run_shows_each_step_with_its_output_or_error(
        ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/uir.broken")
    page.click("#call")
    page.wait_for_selector(".answer-head.bad")
    page.click("text=this run's timeline")
    page.wait_for_selector("#timeline tr[data-step]")
    assert page.inner_text("#run-status") == "failed"
    steps = page.locator("#timeline tr[data-step]")
    assert steps.evaluate_all("rows => rows.map(r => [r.dataset.step, r.dataset.status])") == [
        ["fine", "ok"], ["bad", "failed"]]
    bad = page.locator('#timeline tr[data-step="bad"] td').all_inner_texts()
    assert re.fullmatch(r"\d+(\.\d)? ms", bad[4]), bad
    assert "handler_error" in bad[5] and "step went wrong" in bad[5]
    assert page.is_disabled("#cancel") and page.is_enabled("#resume")
    shot(page, "run-failed")


def test_a_running_run_updates_live_and_the_cancel_button_ends_it(
        ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/uir.long")
    page.wait_for_selector("#call-form")
    page.fill("#field-seconds", "60")
    page.check("#async")
    page.click("#call")
    page.wait_for_selector("#timeline")  # the form went to the new run's page
    assert re.match(r"#/run/[A-Za-z0-9_-]+$", page.evaluate("() => location.hash"))
    page.wait_for_selector('#timeline tr[data-step="nap"][data-status="running"]')
    assert page.get_attribute('#timeline tr[data-step="first"]', "data-status") == "ok"
    assert page.inner_text("#run-status") == "running"
    shot(page, "run-live")
    page.click("#cancel")
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'cancelled'")
    assert "cancelled run" in page.inner_text("#run-notice")
    assert page.is_disabled("#cancel")


def test_a_run_that_ends_while_watched_turns_ok_without_a_reload(
        ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/uir.long")
    page.wait_for_selector("#call-form")
    page.fill("#field-seconds", "1.5")
    page.check("#async")
    page.click("#call")
    page.wait_for_selector('#timeline tr[data-step="nap"]')
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'ok'")
    assert json.loads(page.inner_text("#run-output")) == {"slept": 1.5}
    assert page.get_attribute('#timeline tr[data-step="nap"]', "data-status") == "ok"


def test_the_signal_button_approves_a_waiting_run_live(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/uir.approve")
    page.wait_for_selector("#call-form")
    page.check("#async")
    page.click("#call")
    page.wait_for_selector('#timeline tr[data-step="approval"][data-status="waiting"]')
    assert page.inner_text("#run-status") == "waiting"
    assert "waits for the signal approve" in page.inner_text('#timeline tr[data-step="approval"]')
    shot(page, "run-waiting")
    page.fill("#signal-name", "approve")
    page.fill("#signal-data", "{not json")
    page.click("#signal")
    page.wait_for_selector("#run-notice .problem")
    assert "invalid_json" in page.inner_text("#run-notice")
    page.fill("#signal-name", "go")
    page.fill("#signal-data", '{"by": "ann"}')
    page.click("#signal")
    page.wait_for_function("() => document.querySelector('#run-notice').textContent"
                           ".includes(\"waits for no signal 'go'\")")
    page.fill("#signal-name", "approve")
    page.click("#signal")
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'ok'")
    assert "signal 'approve' sent to run" in page.inner_text("#run-notice")
    assert json.loads(page.text_content('#timeline tr[data-step="approval"] pre') or "") == {"by": "ann"}


def test_the_resume_button_runs_a_failed_durable_run_again(
        ui: UiProcess, server: NatsServer, page: Any) -> None:
    _call(server, "uir.broken", {})
    page.goto(ui.base + "/#/runs?pipeline=uir.broken")
    page.click("#runs-table tr[data-run] a")
    page.wait_for_selector("#timeline")
    page.click("#resume")
    page.wait_for_selector("#run-notice .problem")  # not durable: nothing can resume it
    assert "not a durable run" in page.inner_text("#run-notice")

    page.goto(ui.base + "/#/agent/uir.durable_broken")
    page.wait_for_selector("#call-form")
    page.click("#call")
    page.wait_for_selector(".answer-head.bad")
    page.click("text=this run's timeline")
    page.wait_for_function("() => document.querySelector('#run-status')?.textContent === 'failed'")
    assert page.get_attribute('#timeline tr[data-step="fine"]', "data-status") == "ok"
    page.click("#resume")
    page.wait_for_function("() => document.querySelector('#run-notice').textContent"
                           ".includes('resumed run')")
    # it ran again from its first unfinished step, and failed there again
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'failed'"
                           " && document.querySelector('#live').textContent === ''")
    assert page.get_attribute('#timeline tr[data-step="bad"]', "data-status") == "failed"


def test_an_unknown_or_malformed_run_id_gets_a_clear_error(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/run/no-such-run")
    page.wait_for_selector(".problem")
    assert "not_found" in page.inner_text(".problem")
    page.goto(ui.base + "/#/run/" + "bad%20id")
    page.wait_for_selector(".problem")
    assert "invalid_run" in page.inner_text(".problem")


def test_hostile_journal_events_show_as_text_and_never_run(
        ui: UiProcess, server: NatsServer, page: Any) -> None:
    run_id = "hostilerun01"
    script = "<img src=x onerror=\"window.__pwned='journal'\">"
    events = [
        {"event": "run_started", "pipeline": script, "input": {"x": "<script>window.__pwned=1</script>"}},
        {"event": "step_started", "pipeline": script, "step": script, "attempt": 1},
        {"event": "step_failed", "pipeline": script, "step": script, "attempt": 1,
         "error": {"code": script, "message": "<script>window.__pwned=2</script>"}},
    ]

    async def publish() -> None:
        import nats

        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for i, event in enumerate(events):
                body = {"run": run_id, "at": 1.0 + i, "step": None, "attempt": None,
                        "trace_id": None, **event}
                await js.publish(f"mesh.run.{run_id}.{event['event']}", json.dumps(body).encode())
            await js.publish(f"mesh.run.{run_id}.step_finished", b"\xff not json")
        finally:
            await nc.close()

    ui_helpers.run_async(publish())
    page.goto(ui.base + f"/#/run/{run_id}")
    page.wait_for_selector("#timeline tr[data-step]")
    assert page.evaluate("() => window.__pwned") is None
    assert page.inner_text("#timeline tr[data-step] td") == script
    assert "<script>window.__pwned=2</script>" in page.inner_text("#timeline")
    assert page.locator("main img, main script").count() == 0
