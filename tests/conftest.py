"""Shared fixtures: real ComfyUI trees (both versions, in-process), and the pack loaded from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sampler_core, schedules standalone
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers

import comfy_env  # noqa: E402

_TREES = comfy_env.comfy_trees()


@pytest.fixture(scope="session", params=list(_TREES), ids=lambda v: f"comfyui-{v}")
def comfy_root(request) -> Path:
    """A real ComfyUI tree, importable in-process for the duration of the tests that use it.

    Parametrised over ComfyUI 0.3.75 and 0.9.2 (or ``COMFYUI_PATH``); pytest groups the tests
    by version, and the previous version's modules are unloaded before the next is imported.
    """
    root = _TREES[request.param]
    comfy_env.load(root)
    yield root
    comfy_env.unload(root)


@pytest.fixture(scope="session")
def comfy_version(comfy_root) -> str:
    import comfyui_version

    return comfyui_version.__version__


@pytest.fixture(scope="session")
def pack(comfy_root):
    """This repository imported as ComfyUI imports a custom node package."""
    return comfy_env.load_pack()


@pytest.fixture
def user_dir(comfy_root, tmp_path):
    """ComfyUI's user directory pointed at a fresh temporary folder for one test (presets are saved there)."""
    import folder_paths

    old = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(tmp_path / "user"))
    yield tmp_path / "user"
    folder_paths.set_user_directory(old)


@pytest.fixture(scope="session")
def comfy_server():
    """A running ComfyUI 0.3.75 server (or COMFYUI_PATH) with this pack installed; stopped at the end."""
    from comfy_server import ComfyServer

    server = ComfyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def one_thread():
    """One torch thread (as the commands and the benchmarks): fast and reproducible on a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
