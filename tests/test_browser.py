"""The frontend extension in headless Chromium against a real ComfyUI 0.3.75 server and its real frontend.

Each of the pack's three nodes is added to the graph; the test changes steps, scheduler/preset, denoise,
model type and the plan the way the UI does, and reads back the data the node's preview drew (exposed
as ``node.ssPreview``), which must equal what the preview route computes for the same input.
"""

from __future__ import annotations

import json

import pytest

import workflow_convert
from browser_support import ARTIFACTS, ConsoleLog, launch_browser
from comfy_env import REPO

pytestmark = pytest.mark.browser

EXTENSION = "SamplerScheduler.preview"
SCRIPT = "sampler_scheduler.js"
NODE_TYPES = ("SamplerSchedulerKSampler", "SamplerSchedulerSolverMix", "SamplerSchedulerAYSSigmas")
WAIT_MS = 15_000

JS_HELPERS = """
window.ssTest = {
  add(type, x, y) {
    const node = LiteGraph.createNode(type);
    node.pos = [x, y];
    app.graph.add(node);
    return node.id;
  },
  node(id) { return app.graph.getNodeById(id); },
  data(id) {
    const p = this.node(id).ssPreview;
    return {sigmas: p.sigmas, methods: p.methods, segments: p.segments, nfe: p.nfe, error: p.error,
            line: p.line, token: p.token, updates: p.updates, request: p.request, colours: p.colours};
  },
  setWidget(id, name, value) {  // what the canvas widget does when the user edits a value
    const w = this.node(id).widgets.find((w) => w.name === name);
    w.value = value;
    w.callback?.(value);
  },
  typePlan(id, text) {  // what typing into the plan textarea does
    const el = this.node(id).widgets.find((w) => w.name === "plan").element;
    el.value = text;
    el.dispatchEvent(new Event("input", {bubbles: true}));
  },
  root(id) { return this.node(id).widgets.find((w) => w.name === "ss_preview").element; },
};
"""


@pytest.fixture(scope="session")
def browser():
    # Session scope, listed before comfy_server: skips (fails under CI) before a server starts when there
    # is no Chromium (pytest sets up wider-scoped fixtures first).
    pw, browser = launch_browser()
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture(scope="module")
def ui(browser, comfy_server):
    """(page, console log) of the ComfyUI frontend, graph cleared, our test helpers installed."""
    comfy_server.post_json("/settings/Comfy.TutorialCompleted", True)  # no template browser on first start
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    base = comfy_server.url
    context.route(lambda url: not url.startswith(base), lambda route: route.abort())  # no network
    page = context.new_page()
    log = ConsoleLog(page)
    page.goto(base)
    page.wait_for_function(
        f"() => window.app?.graph && window.LiteGraph && app.extensions?.some((e) => e.name === '{EXTENSION}')"
        " && LiteGraph.registered_node_types['SamplerSchedulerKSampler']", timeout=90_000)
    page.evaluate("() => { app.graph.clear(); app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; }")
    page.evaluate(JS_HELPERS)
    yield page, log
    context.close()


def wait_update(page, node_id: int, after: int) -> dict:
    """The node's preview data once it has been updated past ``after`` updates."""
    page.wait_for_function(f"() => ssTest.node({node_id}).ssPreview.updates > {after}", timeout=WAIT_MS)
    page.wait_for_timeout(50)
    return page.evaluate(f"() => ssTest.data({node_id})")


def updates(page, node_id: int) -> int:
    return page.evaluate(f"() => ssTest.node({node_id}).ssPreview.updates")


def add_node(page, node_type: str, x: int = 40, y: int = 60) -> tuple[int, dict]:
    node_id = page.evaluate(f"() => ssTest.add('{node_type}', {x}, {y})")
    return node_id, wait_update(page, node_id, 0)


def drawn_pixels(page, node_id: int, colour: str) -> int:
    """Pixels of the node's plot canvas painted exactly in ``colour`` (#rrggbb)."""
    return page.evaluate("""([id, colour]) => {
      const canvas = ssTest.root(id).querySelector('canvas');
      const img = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
      let n = 0;
      for (let i = 0; i < img.length; i += 4) if (img[i] === r && img[i + 1] === g && img[i + 2] === b) n++;
      return n;
    }""", [node_id, colour])


def assert_drawn_equals_route(comfy_server, data: dict) -> None:
    status, body = comfy_server.post_json("/sampler_scheduler/preview", data["request"])
    assert status == 200, body
    assert data["sigmas"] == body["sigmas"] and data["methods"] == body["methods"]
    assert data["nfe"] == body["nfe"] and data["segments"] == body["segments"]


def test_page_loads_our_extension_with_no_console_errors_from_it(ui, comfy_server):
    page, log = ui
    listed = comfy_server.get("/extensions")
    assert any(path.endswith("/" + SCRIPT) for path in listed), listed
    assert page.evaluate(f"() => app.extensions.filter((e) => e.name === '{EXTENSION}').length") == 1
    ours = log.errors_mentioning(SCRIPT, "sampler_scheduler", "SamplerScheduler", "ss_preview")
    assert ours == [], ours
    assert not [e for e in log.page_errors if SCRIPT in e], log.page_errors


def test_ksampler_preview_follows_steps_plan_scheduler_and_denoise(ui, comfy_server):
    page, log = ui
    node_id, data = add_node(page, "SamplerSchedulerKSampler")
    assert data["error"] is None
    steps = page.evaluate(f"() => ssTest.node({node_id}).widgets.find((w) => w.name === 'steps').value")
    assert len(data["sigmas"]) == steps + 1 and len(data["methods"]) == steps
    assert {"dpmpp_2m_sde", "dpmpp_2m"} <= set(data["methods"])  # the default SDE-then-ODE plan
    assert_drawn_equals_route(comfy_server, data)
    for method in ("dpmpp_2m_sde", "dpmpp_2m"):
        assert drawn_pixels(page, node_id, data["colours"][method]) > 30, method

    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.setWidget({node_id}, 'steps', 12)")
    data = wait_update(page, node_id, n)
    assert len(data["sigmas"]) == 13 and len(data["methods"]) == 12

    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.typePlan({node_id}, '3 heun\\n* euler')")
    data = wait_update(page, node_id, n)
    assert data["methods"] == ["heun"] * 3 + ["euler"] * 9
    assert data["segments"] == [[0, 3, "heun"], [3, 12, "euler"]]
    assert data["nfe"] == 3 * 2 + 9
    assert drawn_pixels(page, node_id, data["colours"]["heun"]) > 10

    n = updates(page, node_id)
    page.evaluate(f"""() => {{ ssTest.setWidget({node_id}, 'scheduler', 'ays');
                               ssTest.setWidget({node_id}, 'denoise', 0.5); }}""")
    data = wait_update(page, node_id, n)
    assert data["request"]["scheduler"] == "ays" and data["request"]["denoise"] == 0.5
    assert len(data["sigmas"]) == 13
    assert_drawn_equals_route(comfy_server, data)
    assert page.evaluate(f"() => ssTest.root({node_id}).querySelector('.ss-preview-summary').textContent") \
        .startswith("12 steps · NFE 15")


def test_solver_mix_preview_follows_plan_steps_and_model_type(ui, comfy_server):
    page, log = ui
    node_id, data = add_node(page, "SamplerSchedulerSolverMix", 480, 60)
    assert data["error"] is None and len(data["methods"]) == 20
    has_widget = page.evaluate(f"() => ssTest.node({node_id}).widgets.some((w) => w.name === 'preview_steps')")
    n = updates(page, node_id)
    if has_widget:
        page.evaluate(f"() => ssTest.setWidget({node_id}, 'preview_steps', 8)")
    else:
        page.evaluate(f"""() => {{ const i = ssTest.root({node_id}).querySelector('.ss-preview-steps');
                                   i.value = '8'; i.dispatchEvent(new Event('change')); }}""")
    data = wait_update(page, node_id, n)
    assert len(data["methods"]) == 8

    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.typePlan({node_id}, '50% dpmpp_sde eta=0.5\\n* dpmpp_2m')")
    data = wait_update(page, node_id, n)
    assert data["methods"] == ["dpmpp_sde"] * 4 + ["dpmpp_2m"] * 4
    assert_drawn_equals_route(comfy_server, data)

    n = updates(page, node_id)
    page.evaluate(f"""() => {{ const s = ssTest.root({node_id}).querySelector('select');
                               s.value = 'flow'; s.dispatchEvent(new Event('change')); }}""")
    data = wait_update(page, node_id, n)
    assert data["request"]["model_type"] == "flow"
    assert data["sigmas"][0] == pytest.approx(1.0, abs=1e-3)  # a flow schedule starts at sigma 1
    assert page.evaluate(f"() => ssTest.node({node_id}).properties.ss_preview_model") == "flow"


def test_ays_sigmas_preview_follows_preset_steps_and_denoise(ui, comfy_server):
    page, log = ui
    node_id, data = add_node(page, "SamplerSchedulerAYSSigmas", 920, 60)
    assert data["error"] is None and len(data["sigmas"]) == 11 and set(data["methods"]) == {"euler"}
    first = data["sigmas"]
    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.setWidget({node_id}, 'steps', 25)")
    data = wait_update(page, node_id, n)
    assert len(data["sigmas"]) == 26

    n = updates(page, node_id)
    page.evaluate(f"""() => {{ ssTest.setWidget({node_id}, 'preset', 'SDXL');
                               ssTest.setWidget({node_id}, 'steps', 10); }}""")
    data = wait_update(page, node_id, n)
    assert len(data["sigmas"]) == 11 and data["sigmas"] != first  # the SDXL table, not SD1's
    assert_drawn_equals_route(comfy_server, data)

    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.setWidget({node_id}, 'denoise', 0.5)")
    data = wait_update(page, node_id, n)
    assert len(data["sigmas"]) == 6 and data["sigmas"][0] < first[0] * 0.5  # ComfyUI's AYS: round(10 * 0.5) steps
    assert_drawn_equals_route(comfy_server, data)


def test_ksampler_with_ays_sigmas_connected_previews_the_ays_nodes_schedule(ui, comfy_server):
    page, log = ui
    ks_id, before = add_node(page, "SamplerSchedulerKSampler", 40, 1800)
    ays_id, _ = add_node(page, "SamplerSchedulerAYSSigmas", 500, 1800)
    page.evaluate(f"() => {{ ssTest.setWidget({ays_id}, 'steps', 15); ssTest.setWidget({ays_id}, 'preset', 'SD1'); }}")
    n = updates(page, ks_id)
    page.evaluate(f"() => ssTest.node({ays_id}).connect(0, ssTest.node({ks_id}), 'sigmas')")
    data = wait_update(page, ks_id, n)
    assert data["request"]["preset"] == "SD1" and "scheduler" not in data["request"]
    assert len(data["methods"]) == 15 and {"dpmpp_2m_sde", "dpmpp_2m"} == set(data["methods"])
    assert data["sigmas"] == page.evaluate(f"() => ssTest.data({ays_id}).sigmas")  # what the AYS node outputs
    assert_drawn_equals_route(comfy_server, data)
    note = page.evaluate(f"() => ssTest.root({ks_id}).lastElementChild.textContent")
    assert "Align Your Steps" in note

    n = updates(page, ks_id)
    page.evaluate(f"() => ssTest.node({ks_id}).disconnectInput(ssTest.node({ks_id}).findInputSlot('sigmas'))")
    data = wait_update(page, ks_id, n)
    assert data["sigmas"] == before["sigmas"] and data["request"]["scheduler"] == "karras"


def test_invalid_plan_shows_the_backend_error_inline_as_text(ui, comfy_server):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerKSampler", 40, 640)
    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.typePlan({node_id}, '4 dpmpp_2m\\n* eulr')")
    data = wait_update(page, node_id, n)
    assert "unknown method 'eulr'" in data["error"] and data["line"] == 2 and data["token"] == "eulr"
    shown = page.evaluate(f"""() => {{ const r = ssTest.root({node_id});
        const e = r.querySelector('.ss-preview-error'), c = r.querySelector('canvas');
        return {{text: e.textContent, errorShown: getComputedStyle(e).display !== 'none',
                 plotShown: getComputedStyle(c).display !== 'none'}}; }}""")
    status, body = comfy_server.post_json("/sampler_scheduler/preview", data["request"])
    assert status == 400 and shown["text"] == body["error"] == data["error"]
    assert shown["errorShown"] and not shown["plotShown"]

    # Markup in a plan is shown as text, never parsed as HTML.
    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.typePlan({node_id}, '* <img src=x onerror=window.ssPwned=1>')")
    data = wait_update(page, node_id, n)
    assert "<img" in data["error"]
    page.wait_for_timeout(200)
    assert page.evaluate(f"() => ssTest.root({node_id}).querySelector('img') === null && !window.ssPwned")

    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.typePlan({node_id}, '* euler')")
    data = wait_update(page, node_id, n)
    assert data["error"] is None and set(data["methods"]) == {"euler"}
    assert page.evaluate(f"() => getComputedStyle(ssTest.root({node_id}).querySelector('canvas')).display") == "block"


def test_export_and_import_plan(ui, comfy_server):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerSolverMix", 480, 640)
    labels = page.evaluate(f"() => app.collectNodeMenuItems(ssTest.node({node_id})).map((i) => i?.content)")
    assert "Export plan (JSON)" in labels and "Import plan (JSON or text)" in labels

    exported = page.evaluate(f"() => ssTest.node({node_id}).ssExportPlan()")
    plan = json.loads(exported["json"])
    assert plan["format"] == "sampler_scheduler.plan"
    assert [s["method"] for s in plan["segments"]] == ["dpmpp_2m_sde", "dpmpp_2m"]

    # Import JSON through the dialog: the plan widget gets the canonical text and the preview follows.
    new_plan = {"format": "sampler_scheduler.plan", "version": 1,
                "segments": [{"count": 5, "method": "heun", "options": {}}, {"count": "*", "method": "euler"}]}
    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.node({node_id}).ssOpenImportDialog()")
    page.fill(".ss-plan-dialog-text", json.dumps(new_plan))
    page.click(".ss-plan-dialog-ok")
    page.wait_for_selector(".ss-plan-dialog", state="detached", timeout=WAIT_MS)
    value = page.evaluate(f"() => ssTest.node({node_id}).widgets.find((w) => w.name === 'plan').value")
    assert value == "5 heun\n* euler"
    data = wait_update(page, node_id, n)
    assert data["methods"][:5] == ["heun"] * 5 and data["methods"][5:] == ["euler"] * 15

    # A bad import is refused with the backend's message and leaves the plan unchanged.
    page.evaluate(f"() => ssTest.node({node_id}).ssOpenImportDialog()")
    page.fill(".ss-plan-dialog-text", "* <b>nope</b>")
    page.click(".ss-plan-dialog-ok")
    page.wait_for_function("() => document.querySelector('.ss-plan-dialog-status')?.textContent", timeout=WAIT_MS)
    status_text = page.text_content(".ss-plan-dialog-status")
    assert "unknown method" in status_text or "method name" in status_text
    assert page.evaluate("() => document.querySelector('.ss-plan-dialog b') === null")
    page.keyboard.press("Escape")
    page.wait_for_selector(".ss-plan-dialog", state="detached", timeout=WAIT_MS)
    assert page.evaluate(f"() => ssTest.node({node_id}).widgets.find((w) => w.name === 'plan').value") == value

    # Plain text import keeps the text as written.
    assert page.evaluate(f"() => ssTest.node({node_id}).ssImportPlan('* dpmpp_2m  # all ODE')") is None
    assert page.evaluate(f"() => ssTest.node({node_id}).widgets.find((w) => w.name === 'plan').value") \
        == "* dpmpp_2m  # all ODE"


def test_import_dialog_offers_the_searched_plans_saved_on_the_server(ui, comfy_server):
    """A plan file as the Search node writes it (and an unusable one) in the server's user directory: the import
    dialog lists the good one, names the bad one, and picking it imports its plan text into the node."""
    page, _log = ui
    folder = comfy_server.base / "user" / "sampler_scheduler" / "plans"
    folder.mkdir(parents=True, exist_ok=True)
    plan_text = "1 afs pred=noise\n2 usf order=2\n* uni_pc"
    files = [folder / "browser-picked.json", folder / "browser-broken.json"]
    files[0].write_text(json.dumps({"format": "sampler-scheduler-plan", "version": 1, "name": "browser picked",
                                    "plan": plan_text, "nfe": 5, "sigmas": [14.6, 2.0, 0.5, 0.1, 0.03, 0.0]}))
    files[1].write_text("{not json")
    try:
        node_id, _ = add_node(page, "SamplerSchedulerSolverMix", 480, 300)
        n = updates(page, node_id)
        page.evaluate(f"() => {{ window.ssDialog = ssTest.node({node_id}).ssOpenImportDialog(); }}")
        page.evaluate("() => window.ssDialog.savedPlans")
        labels = page.evaluate("() => [...document.querySelectorAll('.ss-plan-dialog-saved option')]"
                               ".map((o) => o.textContent)")
        assert "browser picked (NFE 5)" in labels
        assert "browser-broken.json" in page.text_content(".ss-plan-dialog-status")
        page.select_option(".ss-plan-dialog-saved", label="browser picked (NFE 5)")
        assert page.input_value(".ss-plan-dialog-text") == plan_text
        page.click(".ss-plan-dialog-ok")
        page.wait_for_selector(".ss-plan-dialog", state="detached", timeout=WAIT_MS)
        value = page.evaluate(f"() => ssTest.node({node_id}).widgets.find((w) => w.name === 'plan').value")
        assert value == plan_text
        data = wait_update(page, node_id, n)
        assert data["methods"][:3] == ["afs", "usf", "usf"] and data["methods"][-1] == "uni_pc"
    finally:
        for f in files:
            f.unlink()


def test_saved_workflow_keeps_inputs_and_the_prompt_has_no_preview_input(ui):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerKSampler", 40, 1200)
    result = page.evaluate(f"""async () => {{
        const node = ssTest.node({node_id});
        node.properties.ss_preview_model = 'sdxl';
        const saved = node.serialize();
        const prompt = await app.graphToPrompt();
        const inputs = prompt.output[String({node_id})]?.inputs ?? {{}};
        const copy = LiteGraph.createNode('SamplerSchedulerKSampler');
        copy.configure(saved);
        return {{values: saved.widgets_values, inputs: Object.keys(inputs), model: saved.properties.ss_preview_model,
                 copiedSteps: copy.widgets.find((w) => w.name === 'steps').value,
                 copiedPlan: copy.widgets.find((w) => w.name === 'plan').value,
                 origPlan: node.widgets.find((w) => w.name === 'plan').value,
                 copiedModel: copy.properties.ss_preview_model}};
    }}""")
    assert "ss_preview" not in result["inputs"] and {"steps", "plan", "scheduler", "denoise"} <= set(result["inputs"])
    assert len(result["values"]) == 7  # seed, control_after_generate, steps, cfg, plan, scheduler, denoise
    assert result["copiedPlan"] == result["origPlan"] and result["copiedModel"] == "sdxl"


def test_screenshot_of_a_node_with_its_plot(ui):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerKSampler", 1400, 60)
    n = updates(page, node_id)
    plan = "30% dpmpp_2m_sde eta=1  # SDE early\\n40% dpmpp_2m\\n* heun  # sharp finish"
    page.evaluate(f"() => {{ ssTest.setWidget({node_id}, 'steps', 24); ssTest.typePlan({node_id}, '{plan}'); }}")
    data = wait_update(page, node_id, n)
    assert data["error"] is None and len(data["segments"]) == 3
    box = page.evaluate(f"""() => {{
        const node = ssTest.node({node_id});
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [400 - node.pos[0], 260 - node.pos[1]];  // clear of the side bar and menus
        app.graph.setDirtyCanvas(true, true);
        app.canvas.draw(true, true);
        const title = LiteGraph.NODE_TITLE_HEIGHT;
        const [x, y] = app.canvasPosToClientPos([node.pos[0], node.pos[1] - title]);
        return {{x: x - 10, y: y - 10, width: node.size[0] + 20, height: node.size[1] + title + 20}};
    }}""")
    page.wait_for_timeout(400)  # DOM widgets follow the canvas on the next frame
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "sampler_scheduler_ksampler_preview.png"
    page.screenshot(path=str(path), clip=box)
    assert path.stat().st_size > 10_000
    for method in ("dpmpp_2m_sde", "dpmpp_2m", "heun"):
        assert drawn_pixels(page, node_id, data["colours"][method]) > 10, method


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "example_workflows").glob("*.json")))
def test_example_workflow_loads_in_the_frontend_without_missing_nodes(ui, comfy_server, name):
    """Each shipped example loads in ComfyUI's frontend: every node type is registered and the graph converts
    to a prompt with every node (widgets in the right slots)."""
    page, log = ui
    wf = json.loads((REPO / "example_workflows" / name).read_text())
    result = page.evaluate("""async (wf) => {
        await app.loadGraphData(structuredClone(wf), true, false, null);
        const types = wf.nodes.map((n) => n.type);
        const missing = types.filter((t) => !LiteGraph.registered_node_types[t]);
        const loaded = app.graph._nodes.map((n) => n.type);
        const prompt = await app.graphToPrompt();
        const out = Object.values(prompt.output).map((n) => n.class_type);
        const plan = app.graph._nodes.filter((n) => n.type.startsWith('SamplerScheduler'))
            .map((n) => n.widgets?.find((w) => w.name === 'plan')?.value).filter((v) => v !== undefined);
        const inputs = Object.fromEntries(Object.entries(prompt.output).map(([id, n]) => [id, n.inputs]));
        app.graph.clear();
        return {missing, loaded, out, plan, inputs};
    }""", wf)
    assert result["missing"] == [], f"{name}: node types unknown to the frontend: {result['missing']}"
    assert sorted(result["loaded"]) == sorted(n["type"] for n in wf["nodes"])
    assert sorted(result["out"]) == sorted(n["type"] for n in wf["nodes"])
    expected_plans = [v for n in wf["nodes"] if n["type"].startswith("SamplerScheduler")
                      for v in n["widgets_values"] if isinstance(v, str) and "\n" in v]
    assert sorted(result["plan"]) == sorted(expected_plans)
    # the frontend gives every widget input the value the tests' converter (tests/workflow_convert.py, used to
    # run the examples on the server) reads from the file: nothing shifted (e.g. by a seed's control widget)
    ours = workflow_convert.to_prompt(wf, comfy_server.get("/object_info"))
    for node_id, node in ours.items():
        widgets = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
        theirs = {k: v for k, v in result["inputs"][node_id].items() if k in widgets}
        assert theirs == widgets, f"{name}: node {node_id} ({node['class_type']})"


def test_import_dialog_survives_a_selection_dragged_out_and_escape_closes_the_topmost_only(ui, comfy_server):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerSolverMix", 480, 640)
    page.evaluate(f"() => ssTest.node({node_id}).ssOpenImportDialog()")
    page.fill(".ss-plan-dialog-text", "* heun")
    box = page.locator(".ss-plan-dialog-text").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()  # a text selection started in the textarea ...
    page.mouse.move(5, 5)
    page.mouse.up()  # ... and released over the backdrop: not a click on the backdrop
    assert page.evaluate("() => document.querySelectorAll('.ss-plan-dialog').length") == 1
    assert page.input_value(".ss-plan-dialog-text") == "* heun"
    page.evaluate(f"() => ssTest.node({node_id}).ssOpenImportDialog()")  # a second dialog on top
    page.keyboard.press("Escape")
    assert page.evaluate("() => document.querySelectorAll('.ss-plan-dialog').length") == 1
    page.keyboard.press("Escape")
    page.wait_for_selector(".ss-plan-dialog", state="detached", timeout=WAIT_MS)
    page.mouse.click(5, 5)  # a real click on the backdrop still closes (checked on a new dialog)
    page.evaluate(f"() => ssTest.node({node_id}).ssOpenImportDialog()")
    page.mouse.click(5, 5)
    page.wait_for_selector(".ss-plan-dialog", state="detached", timeout=WAIT_MS)
    assert not log.errors_mentioning(SCRIPT) and not [e for e in log.page_errors if SCRIPT in e]


def test_unknown_stored_model_type_falls_back_and_linked_widgets_are_named(ui, comfy_server):
    page, log = ui
    node_id, _ = add_node(page, "SamplerSchedulerKSampler", 40, 640)
    n = updates(page, node_id)
    page.evaluate(f"() => {{ ssTest.node({node_id}).properties.ss_preview_model = 'sd99';"
                  f" ssTest.setWidget({node_id}, 'steps', 9); }}")
    data = wait_update(page, node_id, n)
    assert data["error"] is None and data["request"]["model_type"] == "sd1" and len(data["methods"]) == 9
    # steps converted to an input and linked to a primitive: the note says the preview shows the widget value
    linked = page.evaluate(f"""() => {{
        const ks = ssTest.node({node_id});
        const prim = LiteGraph.createNode('PrimitiveNode'); prim.pos = [600, 40]; app.graph.add(prim);
        let slot = ks.inputs.findIndex((i) => i.name === 'steps');
        if (slot < 0 && ks.convertWidgetToInput) {{ ks.convertWidgetToInput(ks.widgets.find((w) => w.name === 'steps'));
                                                     slot = ks.inputs.findIndex((i) => i.name === 'steps'); }}
        if (slot < 0) return null;
        prim.connect(0, ks, slot);
        return ks.inputs[slot].link !== null && ks.inputs[slot].link !== undefined; }}""")
    assert linked is True, "the KSampler's steps widget could not be turned into a linked input"
    n = updates(page, node_id)
    page.evaluate(f"() => ssTest.setWidget({node_id}, 'denoise', 0.9)")
    wait_update(page, node_id, n)
    note = page.evaluate(f"() => ssTest.root({node_id}).lastElementChild.textContent")
    assert "steps connected" in note, note
    assert not log.errors_mentioning(SCRIPT) and not [e for e in log.page_errors if SCRIPT in e]


def test_new_search_and_optimiser_nodes_keep_their_seed_and_loaded_workflows_keep_the_saved_control(ui, comfy_server):
    """ComfyUI's frontend starts every 'seed' control at 'randomize' (a new search after every queue): new Search
    and AYS Optimiser nodes start at 'fixed', the KSampler keeps the frontend's default, and a loaded workflow
    keeps the value it saved."""
    page, log = ui
    controls = page.evaluate("""() => Object.fromEntries(['SamplerSchedulerSearch', 'SamplerSchedulerAYSOptimize',
            'SamplerSchedulerKSampler'].map((t) => {
        const node = LiteGraph.createNode(t); app.graph.add(node);
        const seed = node.widgets.find((w) => w.name === 'seed');
        return [t, seed.linkedWidgets?.[0]?.value ?? null]; }))""")
    assert controls == {"SamplerSchedulerSearch": "fixed", "SamplerSchedulerAYSOptimize": "fixed",
                        "SamplerSchedulerKSampler": "randomize"}
    wf = json.loads((REPO / "example_workflows" / "builtin_search_plan.json").read_text())
    node = next(n for n in wf["nodes"] if n["type"] == "SamplerSchedulerSearch")
    slot = next(i for i, v in enumerate(node["widgets_values"]) if v in ("fixed", "randomize", "increment"))
    node["widgets_values"][slot] = "increment"
    value = page.evaluate("""async (wf) => {
        await app.loadGraphData(structuredClone(wf), true, false, null);
        const n = app.graph._nodes.find((n) => n.type === 'SamplerSchedulerSearch');
        const v = n.widgets.find((w) => w.name === 'seed').linkedWidgets[0].value;
        app.graph.clear();
        return v; }""", wf)
    assert value == "increment"
    assert not log.errors_mentioning(SCRIPT) and not [e for e in log.page_errors if SCRIPT in e]
