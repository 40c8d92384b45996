"""Helpers for in-process tests on real ComfyUI (use with the ``comfy_root`` fixture)."""

from __future__ import annotations

import torch

import comfy_env


def make_toy_model(kind: str):
    """A real ComfyUI ModelPatcher around one of the pack's built-in models."""
    return comfy_env.load_pack().nodes.toy_model.make_toy_model(kind)


def empty_conditioning():
    return comfy_env.load_pack().nodes.toy_model.empty_conditioning()


def run_comfy_sampler(model_patcher, sampler, sigmas: torch.Tensor, noise: torch.Tensor, seed: int = 0,
                      cfg: float = 1.0, latent: torch.Tensor | None = None, callback=None) -> torch.Tensor:
    """Run a comfy.samplers.KSAMPLER (ours or ComfyUI's) through ComfyUI's own sample_custom path."""
    import comfy.sample

    cond = empty_conditioning()
    latent = torch.zeros_like(noise) if latent is None else latent
    return comfy.sample.sample_custom(model_patcher, noise, cfg, sampler, sigmas, cond, cond, latent,
                                      callback=callback, disable_pbar=True, seed=seed)


def comfy_sampler(name: str):
    """ComfyUI's own built-in sampler of this name."""
    import comfy.samplers

    return comfy.samplers.sampler_object(name)


def model_sigmas(model_patcher, scheduler: str, steps: int) -> torch.Tensor:
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model_patcher.get_model_object("model_sampling"), scheduler, steps).cpu()
