"""Real ComfyUI in this process, for the benchmarks: models with a model-call counter, and one run entry point.

ComfyUI is imported from the tree the tests use (``tests/comfy_env.py``; ``COMFYUI_PATH`` wins); the
pack is imported as ComfyUI imports a custom node folder. A run goes through
``comfy.sample.sample_custom`` (what SamplerCustom does), so ComfyUI's noise scaling, model wrapper
and CFG path are the real ones for ComfyUI's samplers and ours alike. Model calls are counted at
the diffusion model (one forward call = one evaluation of the denoiser for the whole batch).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import comfy_env  # noqa: E402  (tests/comfy_env.py: where the ComfyUI trees are, how to import one)

# Samplers left out of the grid: adaptive step size (the NFE cannot be set).
ADAPTIVE = ("dpm_fast", "dpm_adaptive")


def comfy_root() -> Path:
    """The ComfyUI tree the benchmark runs on (0.3.75, or ``COMFYUI_PATH``)."""
    return comfy_env.server_tree()


def load_comfy(device: str = "cpu") -> str:
    """Import ComfyUI (CPU mode, or its default GPU mode for ``device="cuda"``); returns its version."""
    root = comfy_root()
    if device == "cpu":
        comfy_env.load(root)
    else:
        if not (root / "comfy" / "samplers.py").is_file():
            raise RuntimeError(f"no ComfyUI tree at {root}: run `bash .ci/setup` or set COMFYUI_PATH")
        sys.path.insert(0, str(root))
        saved = sys.argv
        sys.argv = [saved[0]]  # no --cpu: ComfyUI picks the GPU
        try:
            import comfy.options

            comfy.options.enable_args_parsing()
            import comfy.cli_args  # noqa: F401
            import comfy.model_management  # noqa: F401
        finally:
            sys.argv = saved
    try:
        import comfyui_version

        return str(comfyui_version.__version__)
    except ImportError:
        return "unknown"


def pack_module(name: str):
    """A submodule of this pack (``nodes.toy_model``...), imported the way ComfyUI imports the pack."""
    comfy_env.load_pack()
    return importlib.import_module(f"{comfy_env.PACK_MODULE}.{name}")


@dataclass
class CountedModel:
    """A built-in model as a real ModelPatcher, with a counter of diffusion-model calls."""

    kind: str
    patcher: Any
    calls: int = 0
    items: int = 0  # batch items seen (cond + uncond when a sampler forces both)
    _handle: Any = field(default=None, repr=False)

    @property
    def model_sampling(self):
        return self.patcher.get_model_object("model_sampling")

    @property
    def flow(self) -> bool:
        return self.kind == "gmm-flow"

    def reset(self) -> None:
        self.calls = 0
        self.items = 0


def make_model(kind: str) -> CountedModel:
    toy = pack_module("nodes.toy_model")
    patcher = toy.make_toy_model(kind)
    cm = CountedModel(kind, patcher)

    def hook(_module, args, kwargs):
        cm.calls += 1
        x = args[0] if args else kwargs.get("x")
        cm.items += int(x.shape[0])

    cm._handle = patcher.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    return cm


def sampler_names() -> list[str]:
    """ComfyUI's built-in samplers less the adaptive ones, in ComfyUI's order."""
    import comfy.samplers

    return [s for s in comfy.samplers.SAMPLER_NAMES if s not in ADAPTIVE]


def scheduler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.SCHEDULER_NAMES)


def ksampler_sigmas(model: CountedModel, sampler: str | None, scheduler: str, steps: int) -> torch.Tensor:
    """Sigmas as ComfyUI's KSampler computes them (one extra step and the penultimate sigma dropped for
    dpm_2, dpm_2_ancestral, uni_pc, uni_pc_bh2). ``sampler=None``: plain ``calculate_sigmas`` (our plans)."""
    return pack_module("nodes.schedule_logic").ksampler_sigmas(model.model_sampling, scheduler, steps, 1.0, sampler)


def comfy_sampler(name: str):
    import comfy.samplers

    return comfy.samplers.sampler_object(name)


def plan_sampler(plan_text: str):
    """Our Solver Mix sampler for a plan (the pack's KSAMPLER adapter around ``sample_plan``)."""
    cs = pack_module("nodes.comfy_sampler")
    plan = pack_module("sampler_core.plan").parse_plan(plan_text)
    return cs.plan_sampler(plan), plan


def plan_nfe(plan, sigmas: torch.Tensor, flow: bool) -> int:
    """Model calls our loop will make for ``plan`` on ``sigmas`` (predicted, no model call)."""
    return int(pack_module("sampler_core.loop").plan_nfe(plan, sigmas, model_kind="flow" if flow else "eps"))


def run(model: CountedModel, sampler, sigmas: torch.Tensor, noise: torch.Tensor, seed: int = 0,
        cfg: float = 1.0) -> tuple[torch.Tensor, int]:
    """Sample through ``comfy.sample.sample_custom``; returns (latent on CPU, float32; model calls)."""
    import comfy.sample

    toy = pack_module("nodes.toy_model")
    cond = toy.empty_conditioning()
    model.reset()
    out = comfy.sample.sample_custom(model.patcher, noise, cfg, sampler, sigmas, cond, cond,
                                     torch.zeros_like(noise), disable_pbar=True, seed=seed)
    return out.float().cpu(), model.calls
