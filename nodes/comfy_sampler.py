"""Adapter between ComfyUI's sampler machinery and the pack's solver core.

``plan_sampler(plan)`` returns a real ``comfy.samplers.KSAMPLER`` whose function runs
``sampler_core.loop.sample_plan`` with the model kind read from the model (flow models are
ComfyUI's CONST sampling) and with the running ComfyUI's own noise helpers, so that a
one-method plan draws exactly the noise ComfyUI's sampler of that name draws, on every version.
"""

from __future__ import annotations

import logging

import comfy.k_diffusion.sampling as kds
import comfy.model_management
import comfy.model_sampling
import comfy.samplers

from ..sampler_core.loop import plan_nfe, sample_plan
from ..sampler_core.plan import Plan
from .schedule_logic import afs_from_the_top

log = logging.getLogger("sampler_scheduler")


def model_settings(model) -> dict:
    """Model kind and ComfyUI's version-independent quirks for ``sample_plan``.

    'flow' for ComfyUI CONST (rectified-flow) models, else 'eps' (EPS, V, EDM: VE k-diffusion space).
    On flow models ComfyUI's SDE samplers start a first step from sigma >= 1 at
    ``model_sampling.percent_to_sigma(1e-4)`` instead (offset_first_sigma_for_snr); we pass that sigma.
    """
    return sampling_settings(model.inner_model.model_patcher.get_model_object("model_sampling"))


def sampling_settings(ms) -> dict:
    """:func:`model_settings` of a model's ``model_sampling`` object."""
    if isinstance(ms, comfy.model_sampling.CONST):
        return {"model_kind": "flow", "flow_first_sigma": float(ms.percent_to_sigma(1e-4))}
    return {"model_kind": "eps"}


def comfy_noise_sampler(kind: str, x, sigmas, seed):
    """ComfyUI's own noise samplers: its Brownian tree, or its default (seeded Gaussian) sampler."""
    if kind == "brownian":
        positive = sigmas[sigmas > 0]
        return kds.BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=True)
    return kds.default_noise_sampler(x, seed=seed)


def plan_sampler(plan: Plan) -> comfy.samplers.KSAMPLER:
    """A SAMPLER (for SamplerCustom / SamplerCustomAdvanced / our KSampler) that runs ``plan``."""

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        def step_done(info: dict) -> None:
            # Cancel within one step on every ComfyUI version (0.9.2 throttles its progress hook).
            comfy.model_management.throw_exception_if_processing_interrupted()
            if callback is not None:
                callback(info)

        settings = model_settings(model)
        ms = model.inner_model.model_patcher.get_model_object("model_sampling")
        run = afs_from_the_top(plan, float(sigmas[0]), float(ms.sigma_max))
        log.info("Sampler Scheduler: %d steps, NFE %d; plan: %s", len(sigmas) - 1,
                 plan_nfe(run, sigmas, **settings), run.to_text().replace("\n", " | "))
        return sample_plan(model, x, sigmas, extra_args=extra_args, callback=step_done, disable=disable,
                           plan=run, noise_sampler_factory=comfy_noise_sampler, **settings)

    # ComfyUI's ddim sampler re-noises inpainting with a fresh seeded noise; a pure ddim plan does too.
    inpaint = {"random": True} if all(seg.method == "ddim" for seg in plan.segments) else {}
    return _PlanKSampler(sample, inpaint_options=inpaint)


MAX_SEED = 0xFFFFFFFFFFFFFFFF


class _PlanKSampler(comfy.samplers.KSAMPLER):
    """ComfyUI's KSAMPLER; a pure ddim plan with the largest seed gets a clear error (ComfyUI's re-noising seeds
    ``seed + 1``, which overflows torch's 64-bit seed: a raw "Overflow when unpacking long long", also with
    ComfyUI's own ddim)."""

    def sample(self, model_wrap, sigmas, extra_args, *args, **kwargs):
        seed = extra_args.get("seed", 41)
        if self.inpaint_options.get("random", False) and isinstance(seed, int) and seed + 1 > MAX_SEED:
            raise ValueError(f"a plan of only ddim steps re-noises with seed + 1 (as ComfyUI's ddim), and seed {seed} "
                             "is the largest seed: choose a smaller seed, or another method on some step")
        return super().sample(model_wrap, sigmas, extra_args, *args, **kwargs)
