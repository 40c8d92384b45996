"""Align Your Steps Optimiser: a KLUB-optimised sigma schedule for any model, saved as a preset.

Method: Sabour et al., "Align Your Steps" (arXiv 2404.14507), section 3: minimise the KL upper bound
(KLUB) between the true reverse SDE and its discretisation, sum over intervals [sigma_{i+1}, sigma_i] of
int t^-3 E||D(x_t, t) - D(x_up, t_up)||^2 dt, by coordinate-wise search over the interior points,
10 -> 20 -> 40 steps (``schedules.klub`` / ``schedules.optimize``; no ComfyUI imports there).

Here the denoiser D is the user's model under the given conditioning and cfg, called through ComfyUI's
own CFGGuider (``comfy.sample.sample_custom`` with a SAMPLER whose function runs the optimisation: it
receives ComfyUI's wrapped model, ``model(x, sigma, **extra_args) -> x0`` with cfg applied). The data
x0 are encoded real images (optional LATENT ``data``) or samples of the model itself: a high-NFE
reference run (DPM-Solver++(2M) of the pack's sampler core, ~100 steps) under the same conditioning.

Solver refinement (``schedules.refine``, input ``solver_refinement``, on by default): after the KLUB search
of the 10-step schedule, coordinate sweeps lower the worst relative error (RMSE and median per-sample error)
of euler and dpmpp_2m against those reference runs from the same noise (a reference run of its own when real
images are the data); the 20- and 40-step phases then subdivide the refined schedule.

Sigma spaces: EPS / V / EDM models are optimised in their k-diffusion sigma; flow models (ComfyUI
CONST, x = (1 - s) x0 + s eps) in the equivalent VE sigma s / (1 - s), with s = 1 standing in as
``FLOW_S_CAP`` while optimising and saved as 1 again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from ..sampler_core.loop import sample_plan
from ..sampler_core.search import Problem
from ..sampler_core.search import reference_sigmas as search_reference_sigmas
from ..schedules.ays_tables import AYS_TABLES, ays_sigmas
from ..schedules.klub import KLUBObjective, KLUBSamples, flow_to_ve_denoiser, flow_to_ve_sigma, ve_to_flow_sigma
from ..schedules.optimize import (
    SearchConfig,
    SearchProgress,
    coordinate_search,
    interpolate_schedule,
    subdivide,
    time_uniform_schedule,
)
from ..schedules.presets import AYSPreset, preset_sigmas, save_preset
from ..schedules.refine import RefineConfig, SolverError, refine_blocks, refine_schedule
from . import presets_store
from .comfy_sampler import comfy_noise_sampler, model_settings
from .schedule_logic import check_at_least, check_cfg, is_flow

log = logging.getLogger("sampler_scheduler")

STEP_CHOICES = ("10", "20", "40")
FLOW_S_CAP = 0.9999  # flow time standing in for s = 1 (VE sigma = inf) while optimising
REFERENCE_PLAN = "dpmpp_2m"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
RESERVED_NAMES = {"auto", *(n.lower() for n in AYS_TABLES)}
# device names Windows reserves for any file, with any extension (con.json opens the console there)
WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"{p}{i}" for p in ("com", "lpt") for i in range(10))}
SEARCHED_PREFIX = "searched-"  # AYS Sigmas lists the Search node's schedules as searched-<name>


def check_preset_name(name: str) -> str:
    """A preset name that is also a safe file name: letters, digits, space, '.', '_', '-' (1..64, no leading
    punctuation, no trailing space or dot), not a built-in preset (auto, SD1, SDXL, SVD, DeepFloyd-IF), not a
    Windows device name (CON, NUL, COM1, ... with any extension) and not starting with ``searched-``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.endswith((" ", ".")):
        raise ValueError(
            f"preset name {name!r} is not allowed: use 1 to 64 letters, digits, spaces, '.', '_' or '-', starting "
            "with a letter or digit and not ending with a space or '.' (it becomes the file name)")
    if name.lower() in RESERVED_NAMES:
        raise ValueError(f"preset name {name!r} is taken by a built-in preset; choose another name")
    if name.split(".")[0].strip().lower() in WINDOWS_DEVICES:
        raise ValueError(f"preset name {name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9) and "
                         "cannot be a file name there; choose another name")
    if name.lower().startswith(SEARCHED_PREFIX):
        raise ValueError(f"preset name {name!r} starts with {SEARCHED_PREFIX!r}, the prefix AYS Sigmas gives the "
                         "Search node's schedules; choose a name without it")
    return name


def phase_budgets(budget: int, free_points: list[int]) -> list[float]:
    """Split a model-evaluation budget over the phases (10, 20, 40 steps) in proportion to their free points."""
    total = sum(free_points)
    return [budget * p / total for p in free_points]


def max_interval_evals(phase_budget: float, samples: int, steps: int, n_candidates: int) -> int:
    """Interval evaluations (``SearchConfig.max_evals``) that keep one phase within ``phase_budget`` model
    evaluations. Every interval costs ``samples`` evaluations of D at its lower point; upper points are shared:
    the start costs 2 * steps * samples; a batch of P points costs samples * P * (6 h + 1) for 4 h P intervals
    (h = (n_candidates - 1) / 2: 2h candidates as uppers plus the P upper neighbours), i.e. (6h + 1) / (4h) each.
    """
    half = (n_candidates - 1) // 2
    per_sample = phase_budget / samples - 2 * steps
    return steps + max(0, math.floor(per_sample * 4 * half / (6 * half + 1)))


def min_budget(steps: int, samples: int) -> int:
    """Smallest budget that evaluates the starting schedule of every phase once (10, 20, 40 steps)."""
    return sum(2 * n * samples for n in (10, 20, 40) if n <= steps)


def tensor_fingerprint(t: torch.Tensor) -> str:
    """First 16 hex digits of the SHA-256 of a tensor's float32 values (identifies a conditioning)."""
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def conditioning_summary(cond) -> list[dict]:
    """JSON summary of a CONDITIONING: per entry the tensor shape and fingerprint, and the extra keys."""
    out = []
    for entry in cond or []:
        item: dict = {}
        if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], torch.Tensor):
            item["shape"] = list(entry[0].shape)
            item["sha256_16"] = tensor_fingerprint(entry[0])
        if isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict):
            item["keys"] = sorted(str(k) for k in entry[1])
            pooled = entry[1].get("pooled_output")
            if isinstance(pooled, torch.Tensor):
                item["pooled_sha256_16"] = tensor_fingerprint(pooled)
        out.append(item)
    return out


def start_schedule(model_sampling, flow: bool, steps: int = 10) -> torch.Tensor:
    """Starting schedule in the optimisation space (float64, descending, ``steps + 1`` values).

    Time-uniform in the model's own ascending sigma table (``model_sampling.sigmas``) when it has one,
    else log-uniform; endpoints sigma_max and sigma_min. Flow models: the table in VE sigma s / (1 - s),
    with s capped at :data:`FLOW_S_CAP`.
    """
    smin, smax = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    table = getattr(model_sampling, "sigmas", None)
    if isinstance(table, torch.Tensor) and table.numel() >= 2:
        table = table.detach().double().cpu().reshape(-1)
    else:
        table = torch.exp(torch.linspace(math.log(smin), math.log(smax), 1000, dtype=torch.float64))
    if flow:
        table = flow_to_ve_sigma(table.clamp(max=FLOW_S_CAP))
    table = torch.unique(table[table > 0])  # sorted ascending, strictly
    if table.numel() < 2:
        raise ValueError("the model's sigma table has fewer than two distinct noise levels")
    return time_uniform_schedule(table, steps)


def to_model_space(sigmas: torch.Tensor, flow: bool, sigma_max: float) -> list[float]:
    """Optimised VE-space sigmas back in the model's own space (flow: s = v / (1 + v), top s = sigma_max)."""
    if not flow:
        return [float(v) for v in sigmas]
    s = ve_to_flow_sigma(sigmas)
    s[0] = sigma_max
    return [float(v) for v in s]


def reference_sigmas(model_sampling, flow: bool, steps: int) -> torch.Tensor:
    """Schedule of the reference run: the search's (:func:`sampler_core.search.reference_sigmas`, Karras rho 7
    in VE sigma; flow models resolve the high-noise end, s = 1 down to s = 0.99, with a tenth of the steps)."""
    problem = Problem("flow" if flow else "eps", float(model_sampling.sigma_min), float(model_sampling.sigma_max))
    return search_reference_sigmas(problem, steps).float()


@dataclasses.dataclass
class OptimiserSettings:
    steps: int
    budget: int
    seed: int
    samples: int
    reference_steps: int
    max_batch: int
    refine: bool = True


def refine_evaluations(samples: int, config: RefineConfig | None = None, steps: int = 10) -> int:
    """Model evaluations of the solver refinement: every schedule it tries (the start once, then per sweep
    ``2 * len(reach)`` candidates for each run of points of :func:`~schedules.refine.refine_blocks`) runs every
    method for ``steps`` calls on ``samples``."""
    cfg = config or RefineConfig()
    schedules = 1 + cfg.sweeps * len(refine_blocks(steps, cfg.ranges)) * 2 * len(cfg.reach)
    return schedules * len(cfg.methods) * steps * samples


@dataclasses.dataclass
class OptimiserRun:
    """What the optimisation produced (VE space) and what it cost."""

    sigmas: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    history: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    stop_reason: dict[int, str] = dataclasses.field(default_factory=dict)
    reference_evals: int = 0
    klub_evals: int = 0
    refine_evals: int = 0
    refine_history: list[float] = dataclasses.field(default_factory=list)
    refine_errors: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    data_source: str = ""


def reference_pairs(model, extra_args: dict, model_sampling, flow: bool, settings: OptimiserSettings,
                    shape: tuple, generator: torch.Generator, device, run: OptimiserRun,
                    progress: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """``settings.samples`` starting latents (noise at sigma_max) and their high-NFE reference results, both
    in the sampler's space."""
    n = settings.samples
    ref_sig = reference_sigmas(model_sampling, flow, settings.reference_steps).to(device)
    starts, outs = [], []
    for start in range(0, n, settings.max_batch):
        b = min(settings.max_batch, n - start)
        noise = torch.randn((b, *shape), generator=generator).to(device)
        xt = model_sampling.noise_scaling(ref_sig[0], noise, torch.zeros_like(noise), True)

        def step_done(_info: dict, b: int = b) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            progress(b)

        out = sample_plan(model, xt.clone(), ref_sig, extra_args=extra_args, callback=step_done, plan=REFERENCE_PLAN,
                          noise_sampler_factory=comfy_noise_sampler, **model_settings(model))
        starts.append(xt)
        outs.append(out)
        run.reference_evals += b * settings.reference_steps
    return torch.cat(starts), torch.cat(outs)


def refine_in_sampler(model, extra_args: dict, model_sampling, flow: bool, settings: OptimiserSettings,
                      sigmas: torch.Tensor, x_start: torch.Tensor, ref: torch.Tensor, run: OptimiserRun,
                      progress: Callable[[int], None]) -> torch.Tensor:
    """Solver refinement (``schedules.refine``) of the 10-step KLUB schedule (VE space) against the reference
    results ``ref`` from ``x_start``; the sigmas each try samples with are the ones the AYS node would give."""
    sigma_max = float(model_sampling.sigma_max)
    config = RefineConfig()

    def step_done(info: dict) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        progress(int(info["x"].shape[0]))

    def run_method(method: str, sig: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, x_start.shape[0], settings.max_batch):
            xt = x_start[start:start + settings.max_batch].clone()
            out.append(sample_plan(model, xt, sig.to(xt.device), extra_args=extra_args, callback=step_done,
                                   plan=method, noise_sampler_factory=comfy_noise_sampler, **model_settings(model)))
            run.refine_evals += xt.shape[0] * (sig.numel() - 1)
        return torch.cat(out)

    def to_sampling(ve: torch.Tensor) -> torch.Tensor:
        return ays_sigmas(to_model_space(ve, flow, sigma_max), sigmas.numel() - 1)

    def cancelled() -> bool:
        comfy.model_management.throw_exception_if_processing_interrupted()
        return False

    score = SolverError(run_method, ref, to_sampling, sigmas, config.methods, config.metrics)
    result = refine_schedule(sigmas, score, config, cancel=cancelled)
    run.refine_history = result.history
    run.refine_errors = {k: [b, e] for k, b, e in zip(score.labels, score.base, score.errors(result.sigmas),
                                                      strict=True)}
    return result.sigmas


def optimise_in_sampler(model, x: torch.Tensor, extra_args: dict, settings: OptimiserSettings, flow: bool,
                        model_sampling, data: torch.Tensor | None, run: OptimiserRun,
                        progress: Callable[[int], None]) -> None:
    """The whole optimisation, inside ComfyUI's sampling context (``model`` is ComfyUI's wrapped denoiser
    with conditioning and cfg applied). Results go into ``run``."""
    device = x.device
    shape = tuple(x.shape[1:]) if data is None else tuple(data.shape[1:])
    generator = torch.Generator().manual_seed(settings.seed)
    n = settings.samples
    pairs = None
    if data is None:
        pairs = reference_pairs(model, extra_args, model_sampling, flow, settings, shape, generator, device, run,
                                progress)
        data = model_sampling.inverse_noise_scaling(torch.zeros((), device=device), pairs[1]).float()
        run.data_source = (f"model samples: reference run {REFERENCE_PLAN}, {settings.reference_steps} steps "
                           "(Karras rho 7 in VE sigma" + (", high-noise end resolved)" if flow else ")"))
    else:
        data = data.to(device=device, dtype=torch.float32)
        run.data_source = f"{data.shape[0]} encoded images (LATENT input 'data')"
    pool = data

    def base(xin: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        out = model(xin, sigma.to(device=xin.device, dtype=torch.float32), **extra_args)
        progress(int(xin.shape[0]))
        return out.float()

    denoiser = flow_to_ve_denoiser(base) if flow else base
    source = pool if pool.shape[0] != n else (lambda k, g: pool[:k])
    samples = KLUBSamples.draw(source, n, generator, device=device)
    objective = KLUBObjective(denoiser, samples, max_batch=settings.max_batch)
    config = SearchConfig()
    current = start_schedule(model_sampling, flow, 10)
    phases = [m for m in (10, 20, 40) if m <= settings.steps]
    free = [9, 10, 20][: len(phases)]
    remaining = float(settings.budget)

    def cancelled() -> bool:
        comfy.model_management.throw_exception_if_processing_interrupted()
        return False

    def report(p: SearchProgress) -> None:
        log.info("AYS optimiser: %d steps, sweep %d: KLUB %.6g", p.steps, p.sweep, p.objective)

    for k, steps in enumerate(phases):
        phase_budget = phase_budgets(int(remaining), free[k:])[0]
        mask = None
        if steps > 10:
            current, mask = subdivide(current)
        cfg = dataclasses.replace(config, max_evals=max_interval_evals(phase_budget, n, steps, config.n_candidates))
        before = objective.nfe
        result = coordinate_search(current, objective, mask, cfg, report, cancelled)
        remaining -= objective.nfe - before
        current = result.sigmas
        if steps == 10 and settings.refine:
            if pairs is None:  # real images as data: the refinement still needs reference runs from noise
                pairs = reference_pairs(model, extra_args, model_sampling, flow, settings, shape, generator, device,
                                        run, progress)
            current = refine_in_sampler(model, extra_args, model_sampling, flow, settings, current, *pairs, run,
                                        progress)
        run.sigmas[steps], run.history[steps], run.stop_reason[steps] = current, result.history, \
            result.stop_reason
    run.klub_evals = objective.nfe


def optimise_schedule(model, positive, negative, cfg: float, latent: dict, data: dict | None,
                      settings: OptimiserSettings) -> OptimiserRun:
    """Run the optimisation through ``comfy.sample.sample_custom`` (ComfyUI's CFGGuider and model wrapper)."""
    ms = model.get_model_object("model_sampling")
    flow = is_flow(ms)
    lat = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    if getattr(lat, "is_nested", False):
        raise ValueError("nested (multi-part) latents are not supported by the AYS optimiser")
    data_x0 = None
    if data is not None:
        data_x0 = data["samples"]
        if getattr(data_x0, "is_nested", False) or data_x0.ndim != lat.ndim or data_x0.shape[1] != lat.shape[1]:
            raise ValueError(f"data latents have shape {tuple(data_x0.shape)}, but the model's latents are "
                             f"{tuple(lat.shape)} (batch first): encode the images with this model's VAE")
        if data_x0.shape[2:] != lat.shape[2:]:
            raise ValueError(f"data latents are {'x'.join(map(str, data_x0.shape[2:]))} but 'latent' is "
                             f"{'x'.join(map(str, lat.shape[2:]))}: the schedule is optimised for one size, so "
                             "give both the same size (resize the images before encoding, or match the empty latent)")
        if data_x0.shape[0] == 0:
            raise ValueError("the data LATENT holds no images (batch 0): connect encoded real images, or leave "
                             "'data' unconnected to draw the data from the model")
        if not torch.isfinite(data_x0).all():
            raise ValueError("data latents contain NaN or infinite values")
        data_x0 = model.model.process_latent_in(data_x0.float())
    run = OptimiserRun()
    ref_evals = 0 if data_x0 is not None and not settings.refine else settings.samples * settings.reference_steps
    total = ref_evals + settings.budget + (refine_evaluations(settings.samples) if settings.refine else 0)
    pbar = comfy.utils.ProgressBar(total)
    done = [0]

    def progress(k: int) -> None:
        done[0] += k
        pbar.update_absolute(min(done[0], total))

    def sampler_function(wrapped, x, sigmas, extra_args=None, callback=None, disable=None):
        optimise_in_sampler(wrapped, x, extra_args or {}, settings, flow, ms, data_x0, run, progress)
        return x

    one = torch.zeros((1, *lat.shape[1:]), dtype=lat.dtype)
    sigmas = reference_sigmas(ms, flow, settings.reference_steps)
    comfy.sample.sample_custom(model, one, cfg, comfy.samplers.KSAMPLER(sampler_function), sigmas, positive,
                               negative, one, disable_pbar=True, seed=settings.seed)
    pbar.update_absolute(total)
    return run


class SamplerSchedulerAYSOptimize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerAYSOptimize",
            display_name="Align Your Steps Optimiser",
            category="sampling/custom_sampling/schedulers",
            description=(
                "Optimises an Align Your Steps schedule for this model, conditioning and cfg (KLUB, Sabour et al. "
                "2024): coordinate search over the sigmas, 10 -> 20 -> 40 steps; by default the 10-step schedule is "
                "then refined against the error of euler and dpmpp_2m (solver_refinement). Data: encoded real images "
                "(optional 'data') or the model's own samples from a high-NFE run. Saves the schedule as a "
                "preset in the user directory (sampler_scheduler/ays_schedules); the Align Your Steps Sigmas "
                "node offers it after a refresh (R) of the node definitions. Outputs the sigmas."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model to optimise the schedule for (its ModelSampling "
                                                "patches included)"),
                io.Conditioning.Input("positive", tooltip="Conditioning of the reference run that draws the data"),
                io.Conditioning.Input("negative", tooltip="Negative conditioning (used when cfg is not 1)"),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Use the cfg you sample with: the schedule is optimised for that denoiser"),
                io.Latent.Input("latent", tooltip="Gives the latent shape (e.g. an Empty Latent Image)"),
                io.Combo.Input("steps", options=list(STEP_CHOICES), default="10",
                               tooltip="Optimise 10 steps, then subdivide to 20 and 40 (new points only)"),
                io.Int.Input("budget", default=100000, min=1000, max=100_000_000, step=1000,
                             tooltip="Maximum model evaluations of the search (one sample at one sigma each; "
                                     "cfg != 1 doubles the real work). The reference run is extra: "
                                     "samples x reference_steps"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the reference run and of the KLUB samples (a new node starts with "
                                     "'fixed' after generate: same seed, same result, cached)"),
                io.String.Input("preset_name", default="my-model",
                                tooltip="Saved as <user dir>/sampler_scheduler/ays_schedules/<name>.json "
                                        "(letters, digits, space . _ -); an existing preset of that name is "
                                        "replaced"),
                io.Int.Input("samples", default=64, min=4, max=4096,
                             tooltip="KLUB samples per interval (data points; more = less noisy, slower)"),
                io.Int.Input("reference_steps", default=100, min=10, max=1000,
                             tooltip="Steps of the reference run that draws the data from the model"),
                io.Int.Input("max_batch", default=32, min=1, max=4096,
                             tooltip="Samples per model call (lower it if memory runs out)"),
                io.Latent.Input("data", optional=True,
                                tooltip="Optional: a batch of encoded real images used as data instead of "
                                        "the model's own samples"),
                io.Boolean.Input("solver_refinement", default=True, optional=True,
                                 tooltip="After the KLUB search (10 steps), move the sigmas to lower the error of "
                                         "euler and dpmpp_2m against the reference run from the same noise (this "
                                         "pack's extension of the paper; it beat the KLUB-only schedule in the "
                                         "benchmark). Costs about 3860 x samples model evaluations on top of the "
                                         "budget (and a reference run when real images are the data)"),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg: float, latent: dict, steps: str, budget: int, seed: int,
                preset_name: str, samples: int, reference_steps: int, max_batch: int,
                data: dict | None = None, solver_refinement: bool = True) -> io.NodeOutput:
        check_cfg(cfg)
        check_at_least(samples=(samples, 4), reference_steps=(reference_steps, 10), max_batch=(max_batch, 1),
                       seed=(seed, 0))
        name = check_preset_name(preset_name)
        # before the run: a name whose file holds another preset ('a b' vs 'a_b') must not cost a whole optimisation
        presets_store.check_name_free(name)
        n_steps = int(steps)
        if n_steps not in (10, 20, 40):
            raise ValueError(f"steps must be 10, 20 or 40, got {steps!r}")
        need = min_budget(n_steps, samples)
        if budget < need:
            raise ValueError(f"budget {budget} is too small for {n_steps} steps with {samples} samples: it needs at "
                             f"least {need} model evaluations to evaluate the starting schedules; raise the "
                             "budget or lower samples")
        settings = OptimiserSettings(n_steps, budget, seed, samples, reference_steps, max_batch,
                                     bool(solver_refinement))
        ms = model.get_model_object("model_sampling")
        flow = is_flow(ms)
        t0 = time.perf_counter()
        run = optimise_schedule(model, positive, negative, cfg, latent, data, settings)
        seconds = time.perf_counter() - t0
        smax = float(ms.sigma_max)
        sigmas = {k: to_model_space(v, flow, smax) for k, v in run.sigmas.items()}
        finest = max(sigmas)
        interpolated = [k for k in (10, 20, 40) if k not in sigmas]
        for k in interpolated:  # log-linear, as presets do for any other step count
            sigmas[k] = [float(v) for v in interpolate_schedule(sigmas[finest], k)]
        identity = dict(presets_store.model_identity(model))
        identity.setdefault("latent_shape", list(latent["samples"].shape[1:]))
        identity.setdefault("sampling", "flow" if flow else "k-diffusion sigma")
        conditioning = {
            "data": run.data_source, "cfg": float(cfg), "positive": conditioning_summary(positive),
            "negative": conditioning_summary(negative), "seed": int(seed), "klub_samples": samples,
            "budget": budget, "model_evaluations": run.klub_evals, "reference_evaluations": run.reference_evals,
            "seconds": round(seconds, 2), "optimised_steps": sorted(run.sigmas),
            "interpolated_steps": interpolated, "stop_reason": {str(k): v for k, v in run.stop_reason.items()},
            "optimisation_space": "VE sigma s/(1-s)" if flow else "k-diffusion sigma",
            "solver_refinement": ({"methods": list(RefineConfig().methods),
                                   "metrics": list(RefineConfig().metrics), "score_history": run.refine_history,
                                   "errors_start_end": run.refine_errors, "model_evaluations": run.refine_evals}
                                  if settings.refine else None),
        }
        preset = AYSPreset(name=name, model=identity, sigmas=sigmas, conditioning=conditioning,
                           klub_history=run.history)
        path = save_preset(presets_store.presets_dir(), preset)
        out = preset_sigmas(preset, n_steps)
        klub = ", ".join(f"{k} steps {h[0]:.4g} -> {h[-1]:.4g} ({run.stop_reason[k]})"
                         for k, h in sorted(run.history.items()))
        msg = (f"AYS optimiser: saved preset {name!r} ({path}); KLUB per phase: {klub}; "
               f"{run.klub_evals} + {run.reference_evals} reference"
               + (f" + {run.refine_evals} refinement" if settings.refine else "")
               + f" model evaluations, {seconds:.1f} s. "
               "Refresh the node definitions (R) to see it in Align Your Steps Sigmas.")
        log.info("Sampler Scheduler %s", msg)
        return io.NodeOutput(out, ui={"text": [msg]})


NODES = [SamplerSchedulerAYSOptimize]
