"""KSampler (Sampler Scheduler): ComfyUI's KSampler with a per-step solver plan."""

from __future__ import annotations

import logging

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..sampler_core.loop import plan_nfe
from ..sampler_core.plan import PlanError, resolve_plan
from . import presets_store
from .comfy_sampler import plan_sampler, sampling_settings
from .schedule_logic import (
    AYS_SCHEDULER,
    DEFAULT_PLAN,
    afs_from_the_top,
    ays_table_for,
    check_cfg,
    check_sigmas,
    drop_repeated_sigmas,
    final_method,
    ksampler_sigmas,
    model_family_table,
    parse_user_plan,
    scheduler_names,
)

log = logging.getLogger("sampler_scheduler")

PLAN_TOOLTIP = (
    "One segment per line: <count> <method> [key=value ...]. count = steps (10), a percentage (40%) or * "
    "(the rest). Example: '40% dpmpp_2m_sde eta=1' then '* dpmpp_2m' (SDE early, ODE late). A single method "
    "name means every step. '#' starts a comment. eta=0 turns an SDE method into its ODE. Methods: ComfyUI's "
    "sampler names (euler, dpmpp_2m, uni_pc, lcm, ...; the README lists them), usf (per-step "
    "order/pred/deriv/corrector), afs (analytical first step, first line only: "
    "one model call less from pure noise; below the top sigma, e.g. denoise < 1, it evaluates the model)."
)


def run_plan(model, seed: int, cfg: float, plan_text: str, sigmas: torch.Tensor, positive, negative,
             latent_image: dict) -> tuple[dict, int]:
    """Sample ``latent_image`` with ``plan_text`` over ``sigmas`` the way ComfyUI's KSampler samples."""
    plan = afs_from_the_top(parse_user_plan(plan_text), float(sigmas[0]),
                            float(model.get_model_object("model_sampling").sigma_max))
    n = len(sigmas) - 1
    per_step = resolve_plan(plan, n)
    nfe = plan_nfe(per_step, sigmas, **sampling_settings(model.get_model_object("model_sampling")))
    latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
    noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
    callback = latent_preview.prepare_callback(model, n)
    samples = comfy.sample.sample_custom(
        model, noise, cfg, plan_sampler(plan), sigmas, positive, negative, latent,
        noise_mask=latent_image.get("noise_mask"), callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    out = latent_image.copy()
    out["samples"] = samples
    return out, nfe


class SamplerSchedulerKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerKSampler",
            display_name="KSampler (Sampler Scheduler)",
            category="sampling/custom_sampling/sampler_scheduler",
            description=(
                "Drop-in KSampler that runs a different solver on different steps (e.g. SDE early, ODE late), "
                "with one noise stream, shared multistep history and one progress bar across segments."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to sample with"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise and of the SDE noise (one stream for the whole run)"),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Number of steps (not model calls: "
                                                                            "see the NFE shown after a run)"),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (1: the positive conditioning only)"),
                io.String.Input("plan", multiline=True, default=DEFAULT_PLAN, tooltip=PLAN_TOOLTIP),
                io.Combo.Input("scheduler", options=scheduler_names(), default="karras",
                               tooltip="ComfyUI's schedulers, plus 'ays' (Align Your Steps: the published table "
                                       "for SD1/SDXL/SVD, a saved optimised one, or the documented fallback)"),
                io.Conditioning.Input("positive", tooltip="What the image should show"),
                io.Conditioning.Input("negative", tooltip="What it should not (used when cfg is not 1)"),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (empty latent: from pure noise)"),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="As in KSampler: < 1 runs the last part of a longer schedule (img2img)"),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Optional: these sigmas replace steps, scheduler and denoise"),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, **inputs: object) -> tuple:
        """With scheduler 'ays' the sigmas may come from a saved preset, which changes outside the graph: run again
        when the preset folder changed (as AYS Sigmas does), not only when an input did. ComfyUI passes only widget
        values here: a scheduler from a link is missing, and counts as possibly 'ays'."""
        scheduler = inputs.get("scheduler")
        return presets_store.folder_signature() if scheduler is None or scheduler == AYS_SCHEDULER else ()

    @classmethod
    def execute(cls, model, seed, steps, cfg, plan, scheduler, positive, negative, latent_image, denoise,
                sigmas=None) -> io.NodeOutput:
        check_cfg(cfg)
        parsed = parse_user_plan(plan)
        dropped = 0
        if sigmas is not None:
            if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and (
                    sigmas.numel() == 0 or (sigmas.numel() == 1 and float(sigmas[0]) == 0.0)):
                # e.g. AYS Sigmas at denoise 0, or a denoise that leaves no step: nothing to do, as in ComfyUI
                return io.NodeOutput(latent_image.copy(), ui={"text": ["0 steps, NFE 0 (the SIGMAS input has no "
                                                                       "step: the latent is returned unchanged)"]})
            sig = check_sigmas(sigmas).float().cpu()
            used = "SIGMAS input"
        else:
            ms = model.get_model_object("model_sampling")
            table = None
            used = f"scheduler {scheduler}"
            if scheduler == AYS_SCHEDULER:
                saved = presets_store.saved_for(model, steps)
                table, used = ays_table_for(ms, "auto", model_family_table(model), saved)
                log.info("Sampler Scheduler KSampler: ays uses the %s", used)
            sig = ksampler_sigmas(ms, scheduler, steps, denoise, final_method(parsed, steps), table)
            if len(sig) == 0:  # denoise 0: nothing to do, as KSampler
                return io.NodeOutput(latent_image.copy(), ui={"text": ["0 steps, NFE 0 (denoise 0)"]})
            sig, dropped = drop_repeated_sigmas(sig)
            if dropped:
                used += f"; {dropped} repeated sigma(s) dropped"
                log.info("Sampler Scheduler KSampler: %s with %d step(s) and denoise %g repeats %d sigma(s); "
                         "dropped (a zero-length step changes nothing)", scheduler, steps, denoise, dropped)
            try:
                check_sigmas(sig)
            except ValueError as e:  # e.g. ComfyUI's kl_optimal divides by steps - 1
                raise ValueError(f"scheduler {scheduler!r} with {steps} step(s) and denoise {denoise:g} gives an "
                                 f"unusable schedule ({e}); choose another step count or scheduler") from e
        try:
            out, nfe = run_plan(model, seed, cfg, plan, sig, positive, negative, latent_image)
        except PlanError as e:
            if dropped:
                raise ValueError(f"{e} (scheduler {scheduler!r} with {steps} steps and denoise {denoise:g} repeats "
                                f"{dropped} sigma(s), which were dropped: {len(sig) - 1} distinct step(s) are left; "
                                "raise denoise, choose another scheduler or use fewer fixed counts)") from e
            raise
        msg = f"{len(sig) - 1} steps, NFE {nfe} ({used})"
        return io.NodeOutput(out, ui={"text": [msg]})


NODES = [SamplerSchedulerKSampler]
