"""Align Your Steps Optimiser on a real ComfyUI 0.3.75 server: optimise, save, list, use; corrupt preset files.

ComfyUI builds each node's schema anew for every /object_info request and for prompt validation (no
per-process cache in 0.3.75), so a preset saved by one prompt is listed and accepted by the next one.
The preset folder is ``<user directory>/sampler_scheduler/ays_schedules``; with ``--base-directory B``
the user directory is ``B/user``.
"""

from __future__ import annotations

import json

import pytest

from comfy_server import execution_error

NAME = "server-test-schedule"


def preset_folder(server):
    return server.base / "user" / "sampler_scheduler" / "ays_schedules"


def preset_options(server) -> list[str]:
    info = server.get("/object_info/SamplerSchedulerAYSSigmas")["SamplerSchedulerAYSSigmas"]
    spec = info["input"]["required"]["preset"]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def sample_with(sigmas_node: dict) -> dict:
    """Built-in gmm-eps model -> (sigmas node "9") -> our KSampler -> decode -> preview."""
    prompt = {
        "1": {"class_type": "SamplerSchedulerToyModel",
              "inputs": {"model": "gmm-eps", "width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SamplerSchedulerKSampler",
              "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "latent_image": ["1", 2],
                         "seed": 1, "steps": 10, "cfg": 1.0, "plan": "* euler", "scheduler": "karras",
                         "denoise": 1.0, "sigmas": ["9", 0]}},
        "3": {"class_type": "SamplerSchedulerToyDecode", "inputs": {"samples": ["2", 0], "model": "gmm-eps"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    prompt.update(sigmas_node)
    return prompt


def optimiser_node(name: str = NAME) -> dict:
    return {"9": {"class_type": "SamplerSchedulerAYSOptimize",
                  "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "cfg": 1.0,
                             "latent": ["1", 2], "steps": "10", "budget": 5000, "seed": 3, "preset_name": name,
                             "samples": 8, "reference_steps": 10, "max_batch": 1024}}}


def ays_node(preset: str) -> dict:
    return {"9": {"class_type": "SamplerSchedulerAYSSigmas",
                  "inputs": {"model": ["1", 0], "preset": preset, "steps": 10, "denoise": 1.0}}}


@pytest.fixture
def clean_presets(comfy_server):
    """Remove the presets this module writes, so other server tests see the default AYS behaviour."""
    yield preset_folder(comfy_server)
    for stem in (NAME, "corrupt", "hand-edited"):
        (preset_folder(comfy_server) / f"{stem}.json").unlink(missing_ok=True)


def test_optimiser_preset_is_saved_listed_and_used_by_the_ays_node(comfy_server, clean_presets):
    assert NAME not in preset_options(comfy_server)
    entry = comfy_server.run(sample_with(optimiser_node()))
    assert execution_error(entry) is None, execution_error(entry)
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any(f"saved preset {NAME!r}" in t for t in texts), entry["outputs"]
    saved = json.loads((clean_presets / f"{NAME}.json").read_text())
    assert saved["model"]["builtin"] == "gmm-eps" and len(saved["sigmas"]["10"]) == 11
    # a refreshed /object_info lists it, and a second prompt uses it by name
    assert NAME in preset_options(comfy_server)
    entry = comfy_server.run(sample_with(ays_node(NAME)))
    assert execution_error(entry) is None, execution_error(entry)
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any(f"preset {NAME}" in t for t in texts), entry["outputs"]


def test_corrupt_preset_file_gives_a_clear_error_and_object_info_keeps_working(comfy_server, clean_presets):
    clean_presets.mkdir(parents=True, exist_ok=True)
    (clean_presets / "corrupt.json").write_bytes(b"\x00\xffnot json at all")
    (clean_presets / "hand-edited.json").write_text(json.dumps({"format": "sampler-scheduler-ays-schedule",
                                                                "version": 1, "name": "hand-edited", "model": {},
                                                                "sigmas": {"10": [1.0, 2.0]},
                                                                "created": "2026-01-01T00:00:00+00:00"}))
    info = comfy_server.get("/object_info")
    assert {"SamplerSchedulerAYSSigmas", "SamplerSchedulerAYSOptimize", "KSampler"} <= set(info)
    assert {"corrupt", "hand-edited"} <= set(preset_options(comfy_server))
    for stem, needle in (("corrupt", "is not UTF-8 text"), ("hand-edited", "10 steps need 11")):
        status, resp = comfy_server.queue(sample_with(ays_node(stem)))
        assert status == 200, resp
        err = execution_error(comfy_server.wait(resp["prompt_id"]))
        assert err is not None and f"{stem}.json" in err and needle in err, err
        assert "Traceback" not in err
    entry = comfy_server.run(sample_with(ays_node("auto")))  # the server keeps working
    assert execution_error(entry) is None, execution_error(entry)


def cached_nodes(entry: dict) -> set[str]:
    """Node ids ComfyUI reused from its cache in this run (the history's ``execution_cached`` message)."""
    return {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}


def test_ays_node_runs_again_when_its_saved_preset_changes_between_prompts(comfy_server, clean_presets):
    """A preset rewritten outside the graph (a new optimiser run under the same name, a hand edit) must reach the
    next prompt: with unchanged inputs ComfyUI would otherwise reuse the AYS node's cached old sigmas."""
    def write(power: float) -> None:  # the model's own sigma range, interior points spaced by ``power``
        sig = [14.6 * (0.03 / 14.6) ** ((i / 10) ** power) for i in range(11)]
        clean_presets.mkdir(parents=True, exist_ok=True)
        (clean_presets / f"{NAME}.json").write_text(json.dumps({
            "format": "sampler-scheduler-ays-schedule", "version": 1, "name": NAME, "model": {"builtin": "gmm-eps"},
            "sigmas": {"10": sig}, "created": "2026-01-01T00:00:00+00:00"}))

    write(1.0)
    prompt = sample_with(ays_node(NAME))
    first = comfy_server.run(prompt)
    assert execution_error(first) is None, execution_error(first)
    again = comfy_server.run(prompt)  # nothing changed: ComfyUI may reuse the AYS node's output
    assert "9" in cached_nodes(again), again["status"]
    write(0.7)  # same name, other interior sigmas
    edited = comfy_server.run(prompt)
    assert execution_error(edited) is None, execution_error(edited)
    assert "9" not in cached_nodes(edited) and "2" not in cached_nodes(edited), edited["status"]
