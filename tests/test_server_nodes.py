"""Our nodes on a real ComfyUI 0.3.75 server: example workflows, NFE report, errors that keep the server up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import workflow_convert
from comfy_env import REPO
from comfy_server import execution_error

EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
OUR_NODES = {"SamplerSchedulerKSampler", "SamplerSchedulerSolverMix", "SamplerSchedulerAYSSigmas",
             "SamplerSchedulerToyModel", "SamplerSchedulerToyDecode"}


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


def test_server_lists_all_our_nodes(object_info):
    assert OUR_NODES <= set(object_info)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_workflow_node_types_are_known_to_the_server(object_info, path):
    wf = json.loads(path.read_text())
    types = {n["type"] for n in wf["nodes"]}
    assert not types - set(object_info), f"unknown node types in {path.name}: {types - set(object_info)}"
    prompt = workflow_convert.to_prompt(wf, object_info)  # reads widgets as the frontend does (test_browser)
    for node_id, node in prompt.items():
        inputs = object_info[node["class_type"]]["input"]
        required = inputs.get("required", {})
        missing = set(required) - set(node["inputs"])
        assert not missing, f"{path.name} node {node_id} ({node['class_type']}) lacks inputs {missing}"
        specs = {**inputs.get("optional", {}), **required}
        for name, value in node["inputs"].items():  # each widget value fits its input: no shifted values
            if isinstance(value, list):
                continue
            kind, opts = specs[name][0], (specs[name][1] if len(specs[name]) > 1 else {}) or {}
            where = f"{path.name} node {node_id} ({node['class_type']}) input {name}={value!r}"
            if kind in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and not isinstance(value, bool), where
                assert opts.get("min", -math.inf) <= value <= opts.get("max", math.inf), where
            elif kind == "STRING":
                assert isinstance(value, str), where
            elif kind == "BOOLEAN":
                assert isinstance(value, bool), where
            elif node["class_type"].startswith("SamplerScheduler"):  # our combos (checkpoints may be absent)
                options = opts.get("options", []) if kind == "COMBO" else kind
                assert value in options, where


def test_runnable_example_workflow_runs_and_saves_both_images(comfy_server, object_info):
    wf = json.loads((REPO / "example_workflows" / "builtin_models_side_by_side.json").read_text())
    entry = comfy_server.run(workflow_convert.to_prompt(wf, object_info))
    assert execution_error(entry) is None, execution_error(entry)
    saved = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert len(saved) == 8  # batch of 4 from each sampler
    arrays = [np.asarray(Image.open(comfy_server.output_path(i)).convert("L"), dtype=np.float32) for i in saved]
    for a in arrays:
        assert a.shape == (128, 128) and a.std() > 10  # digits on a dark background, not blank
    # the KSampler node reports the NFE of the run in its UI output
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any("NFE" in t for t in texts), entry["outputs"]


def run_example(comfy_server, object_info, name: str) -> tuple[dict, list[str]]:
    """Run a shipped example workflow on the server (it must succeed); its history entry and UI texts."""
    wf = json.loads((REPO / "example_workflows" / name).read_text())
    entry = comfy_server.run(workflow_convert.to_prompt(wf, object_info))
    assert execution_error(entry) is None, execution_error(entry)
    return entry, [t for out in entry["outputs"].values() for t in out.get("text", [])]


def test_search_example_workflow_searches_a_plan_and_samples_with_it(comfy_server, object_info):
    saved_plan = comfy_server.base / "user" / "sampler_scheduler" / "plans" / "example-digits-nfe6.json"
    try:
        entry, texts = run_example(comfy_server, object_info, "builtin_search_plan.json")
        search = next(t for t in texts if "RMSE to the reference" in t)
        assert "NFE 6" in search and "200 evaluations" in search and "searched-example-digits-nfe6" in search
        steps = int(search.split("NFE 6, ")[1].split(" steps")[0])
        sampled = next(t for t in texts if "RMSE to the reference" not in t and "NFE" in t)
        # the KSampler ran the searched plan on the searched sigmas (their step count), with 6 counted model calls
        assert sampled == f"{steps} steps, NFE 6 (SIGMAS input)"
        saved = [img for out in entry["outputs"].values() for img in out.get("images", [])]
        assert len(saved) == 4
        for img in saved:
            a = np.asarray(Image.open(comfy_server.output_path(img)).convert("L"), dtype=np.float32)
            assert a.shape == (128, 128) and a.std() > 10
    finally:
        saved_plan.unlink(missing_ok=True)


def test_ays_optimiser_example_workflow_optimises_saves_and_samples_on_the_schedule(comfy_server, object_info):
    saved_preset = comfy_server.base / "user" / "sampler_scheduler" / "ays_schedules" / "example-gmm-eps.json"
    try:
        entry, texts = run_example(comfy_server, object_info, "builtin_ays_optimize.json")
        assert any("saved preset 'example-gmm-eps'" in t for t in texts), texts
        assert "10 steps, NFE 10 (SIGMAS input)" in texts  # the KSampler sampled on the optimised schedule
        assert json.loads(saved_preset.read_text())["name"] == "example-gmm-eps"
        spec = comfy_server.get("/object_info/SamplerSchedulerAYSSigmas")["SamplerSchedulerAYSSigmas"]["input"][
            "required"]["preset"]
        assert "example-gmm-eps" in (spec[1]["options"] if spec[0] == "COMBO" else spec[0])  # listed from then on
        saved = [img for out in entry["outputs"].values() for img in out.get("images", [])]
        assert len(saved) == 4
    finally:
        saved_preset.unlink(missing_ok=True)


def small(plan: str, steps: int = 8, sigmas=None, scheduler: str = "karras") -> dict:
    p = {
        "1": {"class_type": "SamplerSchedulerToyModel",
              "inputs": {"model": "gmm-eps", "width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SamplerSchedulerKSampler",
              "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "latent_image": ["1", 2],
                         "seed": 1, "steps": steps, "cfg": 1.0, "plan": plan, "scheduler": scheduler,
                         "denoise": 1.0}},
        "3": {"class_type": "SamplerSchedulerToyDecode", "inputs": {"samples": ["2", 0], "model": "gmm-eps"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    if sigmas is not None:
        p.update(sigmas)
        p["2"]["inputs"]["sigmas"] = ["9", 0]
    return p


def _ays(preset: str, denoise: float = 1.0) -> dict:
    return {"9": {"class_type": "SamplerSchedulerAYSSigmas",
                  "inputs": {"model": ["1", 0], "preset": preset, "steps": 8, "denoise": denoise}}}


def _single_sigma() -> dict:
    """ComfyUI's SplitSigmas at step 0: its first output is the top sigma alone (nothing to step to)."""
    return {"8": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 8,
                                                             "denoise": 1.0}},
            "9": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["8", 0], "step": 0}}}


def test_sigmas_with_no_step_return_the_latent_unchanged_on_the_server(comfy_server):
    """AYS Sigmas at denoise 0 gives no sigmas: nothing to run (as ComfyUI's own samplers and our KSampler's own
    denoise 0); the run succeeds and says so."""
    entry = comfy_server.run(small("* euler", sigmas=_ays("SD1", denoise=0.0)))
    assert execution_error(entry) is None, execution_error(entry)
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any("0 steps, NFE 0" in t for t in texts), entry["outputs"]


def _flipped() -> dict:
    return {"8": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 8,
                                                             "denoise": 1.0}},
            "9": {"class_type": "FlipSigmas", "inputs": {"sigmas": ["8", 0]}}}


def _nan_first() -> dict:
    """ComfyUI's SetFirstSigma with a NaN sigma (JSON's NaN literal passes its min/max validation)."""
    return {"8": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 8,
                                                             "denoise": 1.0}},
            "9": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["8", 0], "sigma": float("nan")}}}


ERROR_CASES = {
    "unknown_method": (small("40% dpmpp_2m\n* dpmpp_9000"), "dpmpp_9000"),
    "impossible_split": (small("6 euler\n6 dpmpp_2m"), "12"),
    "bad_option_value": (small("* dpmpp_2m_sde eta=lots"), "eta"),
    "single_nonzero_sigma": (small("* euler", sigmas=_single_sigma()), "single value"),
    "increasing_sigmas": (small("* euler", sigmas=_flipped()), "decreasing"),
    "non_finite_sigmas": (small("* euler", sigmas=_nan_first()), "NaN"),
    "preset_does_not_fit": (small("* euler", sigmas=_ays("SVD")), "another kind of model"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_gives_an_error_naming_the_problem_and_the_server_keeps_working(comfy_server, case):
    prompt, needle = ERROR_CASES[case]
    status, resp = comfy_server.queue(prompt)
    if status == 200:
        entry = comfy_server.wait(resp["prompt_id"])
        err = execution_error(entry)
        assert err is not None, f"{case}: expected an error, the prompt succeeded"
    else:  # rejected at validation time
        err = json.dumps(resp)
    assert needle in err, f"{case}: error does not name the problem: {err}"
    assert "Traceback" not in err
    assert "custom_nodes" not in err and "/" not in err.split(":")[0], err  # the error type, not an install path
    # the next good prompt still works
    entry = comfy_server.run(small("40% dpmpp_2m_sde eta=1\n* dpmpp_2m"))
    assert execution_error(entry) is None, execution_error(entry)
