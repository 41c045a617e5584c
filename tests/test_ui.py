"""`mesh-runtime ui` in a real browser: the mesh live, an agent's page and its call form,
a pipeline's graph, recent errors, and what hostile input and a missing token get."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from runtime.nats.embedded import NatsServer
from tests import ui_helpers
from tests.helpers import UpProcess, cli, write_mesh
from tests.ui_helpers import UiProcess, get, run_async, shot

browser = ui_helpers.browser  # the fixtures: Chromium once a module, a page a test
page = ui_helpers.page

HANDLERS = """
    def echo(payload):
        return payload

    def boom(payload):
        raise ValueError("no luck today")
"""

HOSTILE = ("<script>window.__pwned = 'description'</script>"
           "<img src=x onerror=\"window.__pwned='img'\">")

MESH = f"""
    version: 1
    name: ui-test
    agents:
      ui.echo:
        description: Echoes what it is given.
        handler: "{{mod}}:echo"
        capabilities: [echoing]
        input:
          type: object
          properties:
            text: {{type: string, description: what to echo}}
            times: {{type: integer, default: 1}}
            loud: {{type: boolean}}
            mode: {{type: string, enum: [plain, fancy]}}
            extra: {{type: object}}
          required: [text]
      ui.boom:
        description: Always fails.
        handler: "{{mod}}:boom"
      ui.hostile:
        description: {json.dumps(HOSTILE)}
        handler: "{{mod}}:echo"
        input:
          type: object
          properties:
            "<img src=x onerror=window.__pwned='field'>":
              type: string
              description: "<script>window.__pwned='help'</script>"
    pipelines:
      ui.flow:
        description: Echo, then two branches side by side, then a step that may be skipped.
        input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        triggers:
          - subject: ui.flow.go
        steps:
          - id: first
            call: ui.echo
            with: {{text: "${{{{ input.text }}}}"}}
          - id: both
            parallel:
              left: {{call: ui.echo, with: {{text: "${{{{ steps.first.text }}}}"}}}}
              right: {{call: ui.echo, with: {{text: "${{{{ steps.first.text }}}}"}}}}
          - id: maybe
            call: ui.echo
            when: "input.text == 'x'"
            with: {{text: "y"}}
"""

EXTRA_MESH = """
    version: 1
    name: ui-extra
    agents:
      ui.latecomer:
        description: Joins while the page is open.
        handler: "{mod}:echo"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as nats_server:
        yield nats_server


@pytest.fixture(scope="module")
def up(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("mesh"), MESH, HANDLERS)
    with UpProcess(path, server.url, "--no-reload") as process:
        yield process


@pytest.fixture(scope="module")
def ui(server: NatsServer, up: UpProcess) -> Iterator[UiProcess]:
    with UiProcess(server.url) as process:
        yield process


def test_the_mesh_page_lists_every_name_with_its_health_and_follows_processes(
        ui: UiProcess, page: Any, server: NatsServer, tmp_path: Path) -> None:
    page.goto(ui.base + "/")
    rows = page.locator("#mesh-rows tr")
    page.wait_for_selector('tr[data-name="ui.flow"]')
    names = rows.evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert [n for n in names if n != "ui.forged"] == ["ui.boom", "ui.echo", "ui.flow", "ui.hostile"]
    flow = page.locator('tr[data-name="ui.flow"] td').all_inner_texts()
    assert flow[1:4] == ["pipeline", "idle", "1"]
    assert page.locator('tr[data-name="ui.echo"] td').all_inner_texts()[1] == "agent"
    assert page.inner_text("#live") == "live"

    # a process joins: its agent shows up without a reload; it leaves: its row goes
    path, _ = write_mesh(tmp_path, EXTRA_MESH, HANDLERS)
    with UpProcess(path, server.url, "--no-reload"):
        page.wait_for_selector('tr[data-name="ui.latecomer"]')
        assert page.locator('tr[data-name="ui.latecomer"] td').all_inner_texts()[2] == "idle"
        shot(page, "mesh")
    page.wait_for_selector('tr[data-name="ui.latecomer"]', state="detached")

    # requests and errors counted as `status` counts them, live
    before = int(page.locator('tr[data-name="ui.boom"] td').all_inner_texts()[6])
    run_async(_call_a_few(server.url))
    page.wait_for_function(
        "n => { const c = document.querySelector('tr[data-name=\"ui.boom\"]').children;"
        " return c[6].textContent === String(n) && c[2].textContent === 'error'; }",
        arg=before + 2)
    page.fill("#mesh-filter", "boom")
    assert page.locator("#mesh-rows tr").count() == 1


async def _call_a_few(url: str) -> None:
    from runtime.core.protocol import MeshError
    from runtime.nats.caller import call_agent

    nc = await nats.connect(url)
    try:
        for _ in range(2):
            with pytest.raises(MeshError):
                await call_agent(nc, "ui.boom", {}, 5)
    finally:
        await nc.close()


def test_an_agent_page_shows_what_it_is_and_its_form_calls_it(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/ui.echo")
    page.wait_for_selector("#call-form")
    assert page.inner_text("#agent-name") == "ui.echo"
    assert page.inner_text("#description") == "Echoes what it is given."
    facts = page.inner_text("dl.facts")
    assert "echoing" in facts and "mesh.agent.ui.echo" in facts
    assert json.loads(page.inner_text("#input-schema"))["required"] == ["text"]
    # one field per property, of the schema's type
    assert page.get_attribute("#field-times", "type") == "number"
    assert page.get_attribute("#field-loud", "type") == "checkbox"
    assert page.locator("#field-mode option").count() == 3
    page.fill("#field-text", "hello")
    page.fill("#field-times", "3")
    page.check("#field-loud")
    page.select_option("#field-mode", "1")
    page.fill("#field-extra", '{"k": [1, 2]}')
    assert json.loads(page.input_value("#payload")) == {
        "text": "hello", "times": 3, "loud": True, "mode": "fancy", "extra": {"k": [1, 2]}}
    page.click("#call")
    page.wait_for_selector(".answer-head.ok")
    assert json.loads(page.inner_text("#answer-json"))["extra"] == {"k": [1, 2]}
    shot(page, "agent")


def test_a_failing_call_shows_the_structured_error(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/ui.boom")
    page.click("#call")
    page.wait_for_selector(".answer-head.bad")
    assert page.inner_text(".answer-head.bad").startswith("error · handler_error")
    error = json.loads(page.inner_text("#answer-json"))
    assert error["code"] == "handler_error" and "no luck today" in error["message"]
    assert error["agent"] == "ui.boom" and error["request_id"]


def test_invalid_json_in_the_form_gets_a_clear_error_and_no_call(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/ui.echo")
    page.wait_for_selector("#call-form")
    page.fill("#payload", '{"text": "unclosed')
    page.click("#call")
    page.wait_for_selector(".answer-head.bad")
    assert page.inner_text(".answer-head.bad") == "error · invalid_json"
    assert re.search(r"invalid_json: the input is not JSON: .*line 1 column \d+",
                     page.inner_text(".problem"))
    # a JSON field that is not JSON says which field, and the payload keeps its last good form
    page.fill("#field-extra", "{oops")
    assert "the field 'extra' is not JSON" in page.inner_text("#answer")
    assert page.input_value("#payload") == '{"text": "unclosed'


def test_a_pipeline_page_draws_its_steps_and_branches(ui: UiProcess, page: Any) -> None:
    page.goto(ui.base + "/#/agent/ui.flow")
    page.wait_for_selector("#graph .graph")
    steps = page.locator("#graph [data-step]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.step)")
    assert steps == ["first", "both", "both.left", "both.right", "maybe"]
    assert page.inner_text('[data-step="maybe"] .when') == "when input.text == 'x' (else skipped)"
    assert page.inner_text('[data-step="both.left"] .action') == "→ ui.echo"
    assert page.locator("#graph .branch .label").all_inner_texts() == ["left", "right"]
    assert page.locator("#graph .trigger").all_inner_texts() == ["⚡ subject ui.flow.go"]
    assert "subject ui.flow.go" in page.inner_text("dl.facts")
    shot(page, "pipeline")


def test_a_hostile_description_and_schema_show_as_text_and_never_run(
        ui: UiProcess, page: Any) -> None:
    for where in ("/#/", "/#/agent/ui.hostile"):
        page.goto(ui.base + where)
        page.wait_for_selector('tr[data-name="ui.hostile"]' if where == "/#/" else "#call-form")
        assert page.evaluate("() => window.__pwned") is None
    assert page.inner_text("#description") == HOSTILE
    label = page.inner_text(".field label")
    assert label.startswith("<img src=x onerror=window.__pwned='field'>")
    assert page.inner_text(".field .help") == "<script>window.__pwned='help'</script>"
    assert page.locator("main script, main img").count() == 0
    _, _, headers = get(ui.base + "/")
    assert "script-src 'self'" in headers["content-security-policy"]


def test_recent_errors_show_with_their_trace_ids(
        ui: UiProcess, page: Any, server: NatsServer) -> None:
    page.goto(ui.base + "/#/errors")
    page.wait_for_selector("#error-table")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    run_async(_publish_error(server.url, trace))
    row = page.locator('#error-rows tr[data-code="handler_error"]', has_text=trace)
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert page.inner_text("#live") == "live"
    assert cells[1:5] == ["ui.boom", "handler_error", "ValueError: no luck", trace]
    # and a garbage message on mesh.errors.> is shown as text, not a crash
    page.locator('#error-rows tr[data-code="?"]').wait_for()
    shot(page, "errors")


async def _publish_error(url: str, trace: str) -> None:
    nc = await nats.connect(url)
    try:
        body = {"code": "handler_error", "message": "ValueError: no luck", "agent": "ui.boom",
                "request_id": "r1", "details": {}}
        await nc.publish("mesh.errors.ui.boom", json.dumps(body).encode(),
                         headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        await nc.publish("mesh.errors.ui.boom", b"\xff<script>not json")
        await nc.flush()
    finally:
        await nc.close()


def test_another_host_needs_the_token_printed_at_start(
        server: NatsServer, up: UpProcess, browser: Any) -> None:
    # 127.0.0.2 is this machine too, but not 127.0.0.1: the page asks for a token
    with UiProcess(server.url, host="127.0.0.2") as ui:
        url = ui.printed_url
        token = re.search(r"token=([A-Za-z0-9_-]+)", url)
        assert token, ui.log
        for path in ("/", "/api/mesh", "/api/agents/ui.echo", "/static/style.css", "/api/errors"):
            status, body, _ = get(ui.base + path)
            assert status == 401, path
            assert json.loads(body)["error"]["code"] == "unauthorized"
        assert get(ui.base + "/api/mesh", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(ui.base + "/api/mesh", {"Authorization": f"Bearer {token.group(1)}"})[0] == 200
        # the printed URL logs the browser in: its cookie carries every later request
        context = browser.new_context()
        try:
            tab = context.new_page()
            tab.goto(url)
            tab.wait_for_selector('tr[data-name="ui.echo"]')
            assert tab.inner_text("#live") == "live"
        finally:
            context.close()


def test_a_call_needs_the_pages_header_and_a_foreign_host_is_refused(ui: UiProcess) -> None:
    import urllib.request

    request = urllib.request.Request(ui.base + "/api/agents/ui.echo/call", data=b"{}",
                                     method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("a POST without X-Mesh-UI was let through")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
    # a DNS name rebound to 127.0.0.1 is not this page's host
    assert get(ui.base + "/api/mesh", {"Host": "evil.example:80"})[0] == 403


def test_assets_ship_in_the_package_with_hashed_urls_and_no_other_origin(ui: UiProcess) -> None:
    status, body, _ = get(ui.base + "/")
    assert status == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', body.decode())
    assets = [u for u in urls if u.startswith("/static/")]
    assert assets and all(re.search(r"\?v=[0-9a-f]{12}$", u) for u in assets)
    for url in assets:
        status, content, headers = get(ui.base + url)
        assert status == 200 and "immutable" in headers["cache-control"]
        assert not re.search(rb"https?://", content), url  # no CDN, nothing fetched elsewhere
    static = Path(__file__).resolve().parent.parent / "runtime" / "ui" / "static"
    pyproject = (static.parents[2] / "pyproject.toml").read_text()
    assert '"runtime.ui" = ["static/*"]' in pyproject  # the wheel ships every asset:
    assert all(p.parent == static for p in static.rglob("*"))  # none in a subfolder


def test_ui_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    shadow = tmp_path / "starlette"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = cli("ui", env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parent.parent}"})
    assert result.returncode == 2
    assert "pip install 'mesh-runtime[ui]'" in result.stderr


def test_ui_stops_at_once_on_sigterm_with_a_page_open(
        server: NatsServer, up: UpProcess, page: Any) -> None:
    with UiProcess(server.url) as ui:
        page.goto(ui.base + "/")
        page.wait_for_selector('tr[data-name="ui.echo"]')
        assert page.inner_text("#live") == "live"
        assert ui.stop(timeout=10) == 0, ui.log


def test_a_taken_port_or_no_nats_is_one_clear_line(ui: UiProcess) -> None:
    taken = cli("ui", "--port", str(ui.port), "--nats", "nats://127.0.0.1:1", timeout=30)
    assert taken.returncode == 1
    assert taken.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{ui.port}: Address "
                                    "already in use (another --port or --host?)")
    unreachable = cli("ui", "--port", "0", "--nats", "nats://127.0.0.1:1", timeout=30)
    assert unreachable.returncode == 2
    assert "cannot reach NATS at nats://127.0.0.1:1" in unreachable.stderr


def test_a_forged_registry_card_is_drawn_within_bounds_and_as_text(
        ui: UiProcess, server: NatsServer, page: Any, request: pytest.FixtureRequest) -> None:
    step: Any = {"id": "deep", "call": "x"}
    for level in range(60):  # parallel inside parallel, 60 deep
        step = {"id": f"p{level}", "parallel": {"a": step, "b": [1, "x", None]}}
    card = {
        "name": "ui.forged", "description": "<img src=x onerror=\"window.__pwned='card'\">",
        "skills": "not a list", "capabilities": [1, 2],
        "x-agentmesh": {
            "pipeline": {"steps": [step, *({"id": f"s{i}", "call": "y"} for i in range(1000))],
                         "returns": {"a": "<script>window.__pwned='returns'</script>"}},
            "triggers": [{"subject": "<b>x</b>"}, "junk", 7],
        },
    }

    async def forge() -> None:
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().key_value("mesh-registry")
            await kv.put("ui.forged", json.dumps(card).encode())
        finally:
            await nc.close()

    async def unforge() -> None:
        nc = await nats.connect(server.url)
        try:
            await (await nc.jetstream().key_value("mesh-registry")).delete("ui.forged")
        finally:
            await nc.close()

    run_async(forge())
    request.addfinalizer(lambda: run_async(unforge()))
    page.goto(ui.base + "/#/agent/ui.forged")
    page.wait_for_selector("#graph .graph")
    assert page.evaluate("() => window.__pwned") is None
    assert page.inner_text("#description") == card["description"]
    assert page.locator("#graph .node").count() <= 400 + 30  # steps, branches, pills: bounded
    assert "(cut: a big pipeline)" in page.inner_text("#graph")
    assert page.locator("main img, main script, main b").count() == 0


def test_a_given_token_is_asked_on_127_0_0_1_too(server: NatsServer, up: UpProcess) -> None:
    with UiProcess(server.url, "--token", "s3cret-token") as ui:
        assert ui.printed_url == f"{ui.base}/?token=s3cret-token"
        assert get(ui.base + "/api/mesh")[0] == 401
        assert get(ui.base + "/api/mesh", {"Cookie": "mesh-ui-token=wrong"})[0] == 401
        assert get(ui.base + "/api/mesh", {"Cookie": "mesh-ui-token=s3cret-token"})[0] == 200
        status, _, headers = get(ui.base + "/?token=s3cret-token")
        assert status == 200
        assert "mesh-ui-token=s3cret-token" in headers["set-cookie"]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]


def test_ui_outlives_its_nats_server_and_still_stops_cleanly() -> None:
    with NatsServer() as own, UiProcess(own.url) as ui:
        own.stop()
        assert get(ui.base + "/api/errors")[0] == 200  # the page still answers
        assert ui.stop(timeout=15) == 0, ui.log
        assert "Traceback" not in ui.log
