"""Schedule logic shared by the nodes and the preview route (what is drawn is what runs).

Pure functions over ComfyUI's model-sampling objects: sigmas for a scheduler the way ComfyUI's
KSampler computes them (including denoise and the "discard penultimate sigma" rule), Align Your
Steps sigmas (published tables, saved optimised schedules, and a documented fallback for models
without a table), and validation of user-supplied sigmas.
"""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import comfy.model_base
import comfy.model_sampling
import comfy.samplers
import torch

from ..sampler_core.loop import check_schedule
from ..sampler_core.plan import Plan, Segment, parse_plan, resolve_plan, segment_bounds
from ..schedules.ays_tables import AYS_TABLES, ays_sigmas

log = logging.getLogger("sampler_scheduler")

AYS_SCHEDULER = "ays"
AYS_PUBLISHED = tuple(AYS_TABLES)  # SD1, SDXL, SVD, DeepFloyd-IF
FALLBACK_TABLE = "SD1"
DEFAULT_PLAN = (
    "40% dpmpp_2m_sde eta=1   # SDE early: noise corrects early errors\n"
    "*   dpmpp_2m             # ODE late: sharp details\n"
)

# Model families -> published AYS table (model_config class names of ComfyUI's supported models).
_FAMILY_TABLES = {
    "SD15": "SD1",
    "SDXL": "SDXL", "SSD1B": "SDXL", "Segmind_Vega": "SDXL", "KOALA_700M": "SDXL", "KOALA_1B": "SDXL",
    "SVD_img2vid": "SVD",
}

# Preview-only stand-ins for a model type (the frontend does not know the connected model).
PREVIEW_MODEL_TYPES = ("sd1", "sdxl", "flow", "flux")


def scheduler_names() -> list[str]:
    return [*comfy.samplers.SCHEDULER_NAMES, AYS_SCHEDULER]


def preview_model_sampling(model_type: str):
    """A real ComfyUI model-sampling object for a model type name (for previews without a model)."""
    settings = {"sd1": ({}, comfy.model_base.ModelType.EPS), "sdxl": ({}, comfy.model_base.ModelType.EPS),
                "flow": ({"shift": 3.0, "multiplier": 1000}, comfy.model_base.ModelType.FLOW),
                "flux": ({"shift": 1.15}, comfy.model_base.ModelType.FLUX)}
    if model_type not in settings:
        raise ValueError(f"unknown model_type {model_type!r}; choose one of {', '.join(PREVIEW_MODEL_TYPES)}")
    sampling_settings, mtype = settings[model_type]
    return comfy.model_base.model_sampling(SimpleNamespace(sampling_settings=sampling_settings), mtype)


def is_flow(model_sampling) -> bool:
    return isinstance(model_sampling, comfy.model_sampling.CONST)


def model_family_table(model_patcher) -> str | None:
    """The published AYS table for this model's family, if there is one (EPS models only)."""
    base = model_patcher.model
    if getattr(base, "model_type", None) != comfy.model_base.ModelType.EPS and \
            type(base.model_config).__name__ != "SVD_img2vid":
        return None
    return _FAMILY_TABLES.get(type(base.model_config).__name__)


def _sd1_percents(table: tuple[float, ...]) -> list[float]:
    """Positions of a table's sigmas on SD1.5's time axis, as ComfyUI 'percent' (0 = start, 1 = end)."""
    sd1 = preview_model_sampling("sd1")
    t = sd1.timestep(torch.tensor(table, dtype=torch.float32))
    return [float(1.0 - ti / 999.0) for ti in t]


def fallback_table(model_sampling) -> list[float]:
    """The documented fallback for models without a published table.

    The SD1 table's sigmas are placed on SD1.5's discrete time axis (ComfyUI 'percent' of the
    schedule), and the same percents are mapped through this model's own ``percent_to_sigma``: the
    published step spacing in time, transferred onto the model's sigma range (works for EPS, V, EDM
    and flow models alike).
    """
    out = [float(model_sampling.percent_to_sigma(p)) for p in _sd1_percents(AYS_TABLES[FALLBACK_TABLE])]
    out[0] = float(model_sampling.sigma_max)
    out[-1] = max(out[-1], float(model_sampling.sigma_min))
    return out


def _check_table_fits(name: str, table, model_sampling) -> None:
    smax, smin = float(model_sampling.sigma_max), float(model_sampling.sigma_min)
    if table[0] > smax * 1.05 or table[0] < smax * 0.5 or table[-1] < smin * 0.2:
        raise ValueError(
            f"AYS preset {name!r} spans sigma {table[0]:.4g}..{table[-1]:.4g}, but this model's sigmas span "
            f"{smax:.4g}..{smin:.4g}: the preset was made for another kind of model. Use preset 'auto', or a "
            f"preset optimised for this model.")


def ays_table_for(model_sampling, preset: str, family_table: str | None = None,
                  saved: dict[str, list[float]] | None = None) -> tuple[list[float], str]:
    """(descending sigma table, description of what was used) for an AYS preset name."""
    saved = saved or {}
    if preset == "auto":
        if family_table is not None:
            return list(AYS_TABLES[family_table]), f"published {family_table} table"
        if saved:  # saved optimised schedules for this model: the newest
            name, table = list(saved.items())[-1]
            return list(table), f"saved optimised schedule {name!r}"
        return fallback_table(model_sampling), "fallback: SD1 table's time spacing mapped onto this model's sigmas"
    if preset in AYS_TABLES:
        table = list(AYS_TABLES[preset])
    elif preset in saved:
        table = list(saved[preset])
    else:
        raise ValueError(f"unknown AYS preset {preset!r}; choose auto, {', '.join(AYS_TABLES)}"
                         + (f", or a saved one: {', '.join(saved)}" if saved else ""))
    _check_table_fits(preset, table, model_sampling)
    return table, f"preset {preset}"


MAX_FULL_STEPS = 1_000_000  # denoise < 1 computes int(steps / denoise) sigmas first


def ksampler_sigmas(model_sampling, scheduler: str, steps: int, denoise: float, final_method: str | None = None,
                    ays_table: list[float] | None = None) -> torch.Tensor:
    """Sigmas exactly as ComfyUI's KSampler computes them for (scheduler, steps, denoise).

    ``denoise < 1`` computes ``int(steps / denoise)`` steps and keeps the last ``steps + 1`` sigmas;
    when ``final_method`` (a plan's last segment, or a ComfyUI sampler name) is one that ComfyUI runs on
    one extra step with the penultimate sigma dropped (dpm_2, dpm_2_ancestral, uni_pc, uni_pc_bh2), so do we.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if denoise is not None and not math.isfinite(denoise):
        raise ValueError(f"denoise must be a number from 0 to 1, got {denoise}")
    if denoise is not None and 0.0 < denoise < 1.0 and steps / denoise > MAX_FULL_STEPS:
        raise ValueError(f"denoise {denoise:g} is too small for {steps} steps: the schedule it cuts from would have "
                         f"{steps / denoise:.4g} steps (at most {MAX_FULL_STEPS}); raise denoise")
    discard_set = comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    discard = final_method in discard_set

    def full(n: int) -> torch.Tensor:
        n_calc = n + 1 if discard else n
        if scheduler == AYS_SCHEDULER:
            if ays_table is None:
                raise ValueError("scheduler 'ays' needs an AYS table")
            sig = ays_sigmas(ays_table, n_calc, 1.0)
        elif scheduler in comfy.samplers.SCHEDULER_NAMES:
            sig = comfy.samplers.calculate_sigmas(model_sampling, scheduler, n_calc).cpu()
        else:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(scheduler_names())}")
        if discard:
            sig = torch.cat([sig[:-2], sig[-1:]])
        return sig.float()

    if denoise is None or denoise > 0.9999:
        return full(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return full(int(steps / denoise))[-(steps + 1):]


def final_method(plan: Plan | None, steps: int | None = None) -> str | None:
    """The method of a plan's last step (what decides ComfyUI's penultimate-sigma rule): with ``steps``, of the
    last segment that gets steps (a trailing segment that resolves to 0 steps does not run), else the last
    segment's."""
    if plan is None:
        return None
    if steps:
        return resolve_plan(plan, steps)[-1][0]
    return plan.segments[-1].method


def check_cfg(cfg: float) -> float:
    """cfg must be a finite number: NaN passes ComfyUI's min/max checks (and its JSON reader accepts it), and
    would turn every sample into NaN."""
    if not isinstance(cfg, (int, float)) or not math.isfinite(cfg):
        raise ValueError(f"cfg must be a finite number, got {cfg!r}")
    return float(cfg)


def check_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Validate user sigmas: 1-D, at least 2 values, then the solver core's checks (finite, non-negative, strictly
    decreasing; the model-kind check runs when sampling)."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        raise ValueError(f"SIGMAS must be a 1-D list of noise levels, got {getattr(sigmas, 'shape', type(sigmas))}")
    if sigmas.numel() < 2:
        raise ValueError(f"SIGMAS is empty or has a single value ({sigmas.numel()}): nothing to sample. "
                         "Check steps and denoise (denoise 0 gives no steps), or the node that makes the sigmas.")
    check_schedule([float(v) for v in sigmas.detach().float().cpu().tolist()], "eps")  # finite, >= 0, decreasing
    return sigmas


def check_at_least(**limits: tuple[int, int]) -> None:
    """Each ``name=(value, lowest)``: a clear error naming the first input below its lowest value (ComfyUI's
    server checks the schema's min first; this covers direct calls)."""
    for name, (value, low) in limits.items():
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")


def drop_repeated_sigmas(sigmas: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``sigmas`` without values equal to the one before (and how many were dropped). ComfyUI's schedulers repeat
    sigmas when steps / denoise exceeds the model's table (e.g. ``simple`` past 1000 steps): a zero-length step
    only wastes a model call in euler and divides by zero in multistep solvers."""
    if sigmas.numel() < 2:
        return sigmas, 0
    keep = torch.ones_like(sigmas, dtype=torch.bool)
    keep[1:] = sigmas[1:] != sigmas[:-1]
    return sigmas[keep], int((~keep).sum())


def parse_user_plan(text: str) -> Plan:
    if not text or not text.strip():
        raise ValueError("the plan is empty: write e.g. '* dpmpp_2m' (see docs/plan_format.md)")
    return parse_plan(text)


def plan_summary(plan: Plan, n_steps: int) -> tuple[list[tuple[str, dict]], list[tuple[int, int, str]]]:
    steps = resolve_plan(plan, n_steps)
    bounds = [(a, b, seg.method) for a, b, seg in segment_bounds(plan, n_steps)]
    return steps, bounds


TOP_TOLERANCE = 1e-3  # a run starts "at the top" when its first sigma is within this fraction of sigma_max


def afs_from_the_top(plan: Plan, first_sigma: float, sigma_max: float, warn: bool = True) -> Plan:
    """``plan`` with a first ``afs`` replaced by ``usf order=1`` (same options) when the run does not start at
    the model's largest sigma. The analytical first step takes D = 0, true only for pure noise at the top of the
    schedule; from a noised image (denoise < 1, the second part of split sigmas) it would throw the image away.
    The replacement is the same first-order step with a real model call (one more)."""
    first = plan.segments[0]
    if first.method != "afs" or first_sigma >= sigma_max * (1 - TOP_TOLERANCE):
        return plan
    if warn:
        log.warning("Sampler Scheduler: this run starts at sigma %.4g, below the model's top sigma %.4g (denoise < 1 "
                    "or split sigmas): its first step 'afs' (which assumes pure noise) evaluates the model instead, "
                    "as 'usf order=1' (one more model call)", first_sigma, sigma_max)
    return Plan((Segment(first.count, "usf", {"order": 1, **first.options}), *plan.segments[1:]))


def preview_schedule(*, plan_text: str | None, steps: int, denoise: float, scheduler: str | None,
                     preset: str | None, model_type: str, saved: dict[str, list[float]] | None = None) -> dict:
    """What a node will run, without running it: sigmas, per-step method, segments and NFE.

    ``scheduler`` is a ComfyUI scheduler name or ``"ays"`` (KSampler); ``preset`` an AYS preset
    (AYS Sigmas node, or the table behind ``"ays"``); ``plan_text`` None means plain Euler steps.
    """
    from ..sampler_core.loop import plan_nfe

    ms = preview_model_sampling(model_type)
    plan = parse_user_plan(plan_text) if plan_text is not None else None
    family = {"sd1": "SD1", "sdxl": "SDXL"}.get(model_type)
    if scheduler is None or scheduler == AYS_SCHEDULER:
        table, used = ays_table_for(ms, preset or "auto", family, saved)
        if scheduler is None:  # the AYS Sigmas node itself: ComfyUI's AYS semantics for denoise
            sigmas = ays_sigmas(table, steps, denoise)
        else:
            sigmas = ksampler_sigmas(ms, AYS_SCHEDULER, steps, denoise, final_method(plan, steps), table)
    else:
        used = f"scheduler {scheduler}"
        sigmas = ksampler_sigmas(ms, scheduler, steps, denoise, final_method(plan, steps))
    if scheduler is not None:  # the KSampler drops the repeats of a scheduler's sigmas (see its execute)
        sigmas, dropped = drop_repeated_sigmas(sigmas)
        if dropped:
            used += f"; {dropped} repeated sigma(s) dropped"
    n = max(len(sigmas) - 1, 0)
    if plan is None:
        plan = parse_plan("euler")
    # what runs: a first afs below the top sigma evaluates the model (plan_text below stays the user's plan)
    run = afs_from_the_top(plan, float(sigmas[0]), float(ms.sigma_max), warn=False) if n else plan
    per_step, bounds = plan_summary(run, n) if n else ([], [])
    return {
        "sigmas": [float(s) for s in sigmas],
        "methods": [m for m, _ in per_step],
        "segments": [[a, b, m] for a, b, m in bounds],
        "nfe": plan_nfe(per_step, sigmas, model_kind="flow" if is_flow(ms) else "eps") if n else 0,
        "schedule": used,
        "plan_text": plan.to_text(),
        "plan_json": plan.to_json(),
    }
