"""Server: ComfyUI 0.3.75 loads the pack cleanly and runs a workflow with the built-in model."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from comfy_server import PACK_DIR_NAME, execution_error

OUR_NODES = {"SamplerSchedulerToyModel", "SamplerSchedulerToyDecode"}


def test_server_lists_every_node_of_ours(comfy_server):
    info = comfy_server.get("/object_info")
    missing = OUR_NODES - set(info)
    assert not missing, f"missing nodes: {missing}"
    for node in OUR_NODES:
        assert info[node]["category"].startswith("sampling/custom_sampling/")


def test_server_log_has_no_error_or_warning_about_the_pack(comfy_server):
    # Only start-up counts: later tests post bad prompts on purpose, and ComfyUI logs their tracebacks.
    log = comfy_server.log().split("Starting server")[0]
    assert PACK_DIR_NAME in log  # the import-times report names every loaded custom node folder
    bad = [line for line in log.splitlines()
           if PACK_DIR_NAME in line and re.search(r"(IMPORT FAILED|Cannot import|Traceback|WARNING|ERROR)", line)]
    assert not bad, bad
    # ComfyUI's own optional extras (torchaudio, kornia, spandrel) may fail to import here; nothing of ours may.
    blocks = log.split("Traceback (most recent call last):")[1:]
    blocks = [b.split("\n\n")[0] for b in blocks]
    ours = [b[:1500] for b in blocks if PACK_DIR_NAME in b or "sampler_scheduler" in b.lower()]
    assert not ours, ours


def builtin_workflow(sampler: str = "euler", steps: int = 12, seed: int = 7) -> dict:
    return {
        "1": {"class_type": "SamplerSchedulerToyModel",
              "inputs": {"model": "gmm-eps", "width": 64, "height": 64, "batch_size": 2}},
        "2": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "latent_image": ["1", 2],
                         "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": sampler,
                         "scheduler": "karras", "denoise": 1.0}},
        "3": {"class_type": "SamplerSchedulerToyDecode", "inputs": {"samples": ["2", 0], "model": "gmm-eps"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ss_foundation"}},
    }


def test_workflow_with_builtin_model_and_comfy_ksampler_produces_an_image(comfy_server):
    entry = comfy_server.run(builtin_workflow())
    assert execution_error(entry) is None, execution_error(entry)
    images = entry["outputs"]["4"]["images"]
    assert len(images) == 2
    arr = np.asarray(Image.open(comfy_server.output_path(images[0])).convert("RGB"), dtype=np.float32)
    assert arr.shape == (64, 64, 3)
    # a structured sample: not blank, not saturated noise (GMM means are smooth patterns)
    assert 5.0 < arr.std() < 120.0
    smooth = np.abs(np.diff(arr, axis=0)).mean()
    assert smooth < arr.std(), "decoded sample looks like noise, not a smooth mixture pattern"
