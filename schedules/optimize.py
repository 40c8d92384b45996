"""Align Your Steps schedule optimisation: coordinate-wise zeroth-order search on a per-interval objective.

Method (Sabour et al., arXiv 2404.14507, section 3 and appendix; reference notes section 1):

- the objective of a schedule sigma_0 > ... > sigma_n is a sum over intervals [sigma_{i+1}, sigma_i]
  (KLUB, :class:`schedules.klub.KLUBObjective`; any ``objective(t_lo [M], t_up [M]) -> [M]`` works,
  e.g. the closed form of Gaussian data);
- the interior point sigma_i only enters its two neighbouring intervals, so it is optimised by
  trying 11 candidates (the current one included, so the objective never rises) log-spaced
  between its neighbours and keeping the one with the smallest sum of the two intervals;
  points of the same parity share no interval and are updated together (one batched call);
- the candidates of a point span a fraction ``scale`` of the log-gap to each neighbour; the scale
  shrinks when the current point wins and grows back when the best is an outermost candidate;
  sweeps repeat until nothing can change (all scales below ``min_scale``), or early stopping;
- 10 steps are subdivided to 20 and 40 by inserting geometric means of neighbours, and only the
  new points are optimised; other step counts: log-linear interpolation of the 40-step schedule.

Run ``python -m schedules.optimize --model gmm-eps --out schedule.json`` for a built-in model.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .ays_tables import loglinear_interp

IntervalObjective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``objective(t_lo [M], t_up [M]) -> values [M]`` (float64); t_lo < t_up are consecutive sigmas."""


class OptimizationCancelled(RuntimeError):
    """Raised when the ``cancel`` hook returns True."""


TRUST_SCALE = 0.25  # default trust region of the early-stopped search (see SearchConfig)


@dataclass
class SearchConfig:
    """Settings of one coordinate search. Early stopping (``early_stopping=False`` switches all of it
    off) is a trust region around the start: candidates reach at most ``trust_scale`` of the log-gap
    to a neighbour, and the search stops after ``max_sweeps`` sweeps, or when the relative improvement
    of a sweep stays below ``rel_tol`` for ``patience`` sweeps in a row. ``max_evals`` caps interval
    evaluations (always on): a batch of points that would pass it is cut to the points it still covers
    (highest noise first) and the search stops after them.

    Why: KLUB is loose at high noise, and its full minimum packs the steps at low noise behind one
    huge high-noise step, a worse schedule than the start. The paper starts from a good schedule and
    stops early; the default (2 sweeps, trust_scale 0.25) keeps each point within a quarter of the
    gap to its neighbours per sweep. Chosen on validation noise seeds (2001-2003, never the
    evaluation seeds) of ``benchmarks/bench_ays.py`` among 1-10 sweeps and scales 0.1-0.9: it beat
    every ComfyUI baseline in 2 of 9 (model, sampler) cells there, the old default (5 sweeps, no
    trust region) in 1.
    """

    n_candidates: int = 11  # per point, the current one included (odd: the same number on each side)
    initial_scale: float = 0.9  # fraction of the log-gap to a neighbour the outermost candidate reaches
    trust_scale: float | None = TRUST_SCALE  # with early stopping: cap on that fraction (None: initial_scale)
    shrink: float = 0.5  # scale factor when the current point wins
    grow: float = 2.0  # scale factor when an outermost candidate wins (capped at max_scale)
    min_scale: float = 1e-3  # a point has converged when its scale drops below this
    early_stopping: bool = True
    max_sweeps: int | None = 2  # few sweeps from a good start: fully minimised KLUB is a worse schedule
    rel_tol: float = 1e-3
    patience: int = 2
    max_evals: int | None = None

    def __post_init__(self) -> None:
        if self.n_candidates < 3 or self.n_candidates % 2 == 0:
            raise ValueError(f"n_candidates must be odd and >= 3, got {self.n_candidates}")
        if not 0 < self.initial_scale < 1:
            raise ValueError(f"initial_scale must be in (0, 1), got {self.initial_scale}")
        if self.trust_scale is not None and not 0 < self.trust_scale < 1:
            raise ValueError(f"trust_scale must be in (0, 1) or None, got {self.trust_scale}")
        if not 0 < self.shrink < 1 or self.grow < 1:
            raise ValueError("need 0 < shrink < 1 and grow >= 1")

    @property
    def max_scale(self) -> float:
        """The largest candidate reach in use: ``initial_scale``, capped by ``trust_scale`` with early stopping."""
        if self.early_stopping and self.trust_scale is not None:
            return min(self.initial_scale, self.trust_scale)
        return self.initial_scale


@dataclass
class SearchProgress:
    """What the progress hook receives after every half-sweep (one parity class)."""

    steps: int  # steps of the schedule being optimised (10, 20, 40)
    sweep: int  # 1-based sweep number within this phase
    max_sweeps: int | None
    objective: float  # current total objective
    evals: int  # interval evaluations so far in this phase
    converged_points: int
    free_points: int


@dataclass
class SearchResult:
    sigmas: torch.Tensor  # float64, descending, n + 1 values
    history: list[float]  # total objective at the start and after every sweep (never increasing)
    interval_values: torch.Tensor  # objective of every interval of ``sigmas``
    sweeps: int
    evals: int
    stop_reason: str  # converged | early_stop | max_sweeps | budget


@dataclass
class ScheduleResult:
    """Optimised schedules by step count (10/20/40 when started from 10 with 2 subdivisions)."""

    sigmas: dict[int, torch.Tensor] = field(default_factory=dict)
    history: dict[int, list[float]] = field(default_factory=dict)
    stop_reason: dict[int, str] = field(default_factory=dict)
    evals: int = 0
    seconds: float = 0.0


def _check_schedule(sigmas: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1).clone()
    if s.numel() < 2:
        raise ValueError("a schedule needs at least 2 sigmas")
    if not bool(torch.all(torch.isfinite(s))) or not bool(torch.all(s > 0)):
        raise ValueError("schedule sigmas must be finite and > 0 (drop a final 0 before optimising)")
    if not bool(torch.all(s[1:] < s[:-1])):
        raise ValueError("schedule sigmas must be strictly decreasing")
    return s


def coordinate_search(
    sigmas: torch.Tensor | Sequence[float],
    objective: IntervalObjective,
    free: torch.Tensor | Sequence[bool] | None = None,
    config: SearchConfig | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SearchResult:
    """Coordinate-wise zeroth-order search of the interior points of ``sigmas`` (endpoints fixed).

    ``free`` marks the points that may move (default: every interior point). Returns the schedule
    and the history of the total objective, which never increases: a point only moves when a
    candidate's two intervals sum to strictly less than their current values.
    """
    cfg = config or SearchConfig()
    s = _check_schedule(sigmas)
    n = s.numel() - 1
    movable = torch.zeros(n + 1, dtype=torch.bool)
    if free is None:
        movable[1:n] = True
    else:
        movable = torch.as_tensor(free, dtype=torch.bool).reshape(-1).clone()
        if movable.numel() != n + 1:
            raise ValueError(f"free mask has {movable.numel()} entries for {n + 1} sigmas")
        movable[0] = movable[n] = False
    half = (cfg.n_candidates - 1) // 2
    offsets = torch.arange(1, half + 1, dtype=torch.float64) / half  # fractions of the reach, (0, 1]
    top_scale = cfg.max_scale
    scale = torch.full((n + 1,), top_scale, dtype=torch.float64)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise OptimizationCancelled("schedule optimisation cancelled")

    check_cancel()
    values = torch.as_tensor(objective(s[1:], s[:-1]), dtype=torch.float64).reshape(-1).cpu().clone()
    evals = n
    if not bool(torch.all(torch.isfinite(values))):
        raise ValueError(f"the objective is not finite on the initial schedule: {values.tolist()}")
    history = [float(values.sum())]
    stop_reason = "converged"
    sweep = 0
    stale = 0
    while True:
        active = movable & (scale >= cfg.min_scale)
        if not bool(active.any()):
            stop_reason = "converged"
            break
        if cfg.early_stopping and cfg.max_sweeps is not None and sweep >= cfg.max_sweeps:
            stop_reason = "max_sweeps"
            break
        sweep += 1
        budget_hit = False
        for parity in (1, 0):
            idx = torch.nonzero(active & (torch.arange(n + 1) % 2 == parity)).reshape(-1)
            if idx.numel() == 0:
                continue
            per_point = 2 * half * 2  # intervals per point: 2 * half candidates, each with two intervals
            if cfg.max_evals is not None and evals + idx.numel() * per_point > cfg.max_evals:
                budget_hit = True  # the points the budget still covers (high noise first), then stop
                idx = idx[: max(0, (cfg.max_evals - evals) // per_point)]
                if idx.numel() == 0:
                    break
            p = idx.numel()
            m = p * per_point  # intervals to evaluate
            check_cancel()
            log_mid = torch.log(s[idx])
            log_lo = torch.log(s[idx + 1])  # lower neighbour (smaller sigma)
            log_hi = torch.log(s[idx - 1])
            reach = scale[idx].reshape(-1, 1) * offsets.reshape(1, -1)  # [P, half]
            down = log_mid.reshape(-1, 1) - reach * (log_mid - log_lo).reshape(-1, 1)
            up = log_mid.reshape(-1, 1) + reach * (log_hi - log_mid).reshape(-1, 1)
            cand = torch.exp(torch.cat([down, up], dim=1))  # [P, 2*half], strictly between neighbours
            lo_nb = s[idx + 1].reshape(-1, 1).expand_as(cand)
            hi_nb = s[idx - 1].reshape(-1, 1).expand_as(cand)
            t_lo = torch.cat([lo_nb.reshape(-1), cand.reshape(-1)])
            t_up = torch.cat([cand.reshape(-1), hi_nb.reshape(-1)])
            out = torch.as_tensor(objective(t_lo, t_up), dtype=torch.float64).reshape(-1).cpu()
            evals += m
            below, above = out[: p * 2 * half].reshape(p, -1), out[p * 2 * half:].reshape(p, -1)
            # candidate's interval i (below it) + interval i-1 (above it); a non-finite value never wins
            total = torch.nan_to_num(below + above, nan=math.inf, posinf=math.inf)
            current = values[idx] + values[idx - 1]
            best_val, best = total.min(dim=1)
            moved = best_val < current
            outermost = (best == half - 1) | (best == 2 * half - 1)
            for j in range(p):  # bookkeeping on CPU floats (the objective call is the batched part)
                i = int(idx[j])
                if bool(moved[j]):
                    s[i] = cand[j, best[j]]
                    values[i] = below[j, best[j]]
                    values[i - 1] = above[j, best[j]]
                    if bool(outermost[j]):
                        scale[i] = min(scale[i] * cfg.grow, top_scale)
                else:
                    scale[i] = scale[i] * cfg.shrink
            if progress is not None:
                progress(SearchProgress(n, sweep, cfg.max_sweeps if cfg.early_stopping else None,
                                        float(values.sum()), evals,
                                        int((movable & (scale < cfg.min_scale)).sum()), int(movable.sum())))
            if budget_hit:
                break
        history.append(float(values.sum()))
        if budget_hit:
            stop_reason = "budget"
            break
        if cfg.early_stopping:
            prev = history[-2]
            improvement = (prev - history[-1]) / abs(prev) if prev != 0 else 0.0
            stale = stale + 1 if improvement < cfg.rel_tol else 0
            if stale >= cfg.patience:
                stop_reason = "early_stop"
                break
    return SearchResult(s, history, values, sweep, evals, stop_reason)


def subdivide(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Double the steps: insert the geometric mean between neighbours. Returns (sigmas, new-point mask)."""
    s = _check_schedule(sigmas)
    out = torch.empty(2 * s.numel() - 1, dtype=torch.float64)
    out[0::2] = s
    out[1::2] = torch.sqrt(s[1:] * s[:-1])
    new = torch.zeros(out.numel(), dtype=torch.bool)
    new[1::2] = True
    return out, new


def optimize_schedule(
    objective: IntervalObjective,
    initial: torch.Tensor | Sequence[float],
    subdivisions: int = 2,
    config: SearchConfig | None = None,
    subdivision_config: SearchConfig | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    search_first: bool = True,
) -> ScheduleResult:
    """Optimise ``initial`` (all interior points), then subdivide ``subdivisions`` times optimising only
    the new points. ``subdivision_config`` (default: ``config``) applies to the subdivided phases.
    ``search_first=False`` keeps ``initial`` as the first phase's result (already optimised, e.g. refined)."""
    start = time.perf_counter()
    result = ScheduleResult()
    none_free = torch.zeros(len(initial), dtype=torch.bool)
    search = coordinate_search(initial, objective, None if search_first else none_free, config, progress, cancel)
    steps = search.sigmas.numel() - 1
    result.sigmas[steps], result.history[steps] = search.sigmas, search.history
    result.stop_reason[steps] = search.stop_reason
    result.evals += search.evals
    current = search.sigmas
    for _ in range(subdivisions):
        finer, new = subdivide(current)
        search = coordinate_search(finer, objective, new, subdivision_config or config, progress, cancel)
        steps = search.sigmas.numel() - 1
        result.sigmas[steps], result.history[steps] = search.sigmas, search.history
        result.stop_reason[steps] = search.stop_reason
        result.evals += search.evals
        current = search.sigmas
    result.seconds = time.perf_counter() - start
    return result


def interpolate_schedule(sigmas: torch.Tensor | Sequence[float], steps: int) -> torch.Tensor:
    """Log-linear interpolation of an optimised schedule (e.g. the 40-step one) to ``steps`` steps
    (``steps + 1`` sigmas, both ends kept), float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.from_numpy(loglinear_interp(_check_schedule(sigmas).numpy(), steps + 1))


def karras_schedule(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """EDM schedule (Karras et al. 2022, eq. 5) with ``steps + 1`` sigmas from sigma_max down to sigma_min
    (no final 0): sigma_i = (max^(1/rho) + i/n (min^(1/rho) - max^(1/rho)))^rho."""
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    out = (hi + ramp * (lo - hi)) ** rho
    out[0], out[-1] = sigma_max, sigma_min
    return out


def time_uniform_schedule(model_sigmas: torch.Tensor | Sequence[float], steps: int) -> torch.Tensor:
    """Time-uniform start for discrete-time models: ``steps + 1`` points evenly spaced in the timestep
    index of the model's ascending sigma table (log sigma interpolated between table entries),
    from the largest sigma down to the smallest."""
    table = torch.as_tensor(model_sigmas, dtype=torch.float64).reshape(-1).cpu()
    if table.numel() < 2 or not bool(torch.all(table[1:] > table[:-1])) or not bool(torch.all(table > 0)):
        raise ValueError("model_sigmas must be an ascending table of positive sigmas")
    pos = torch.linspace(table.numel() - 1, 0, steps + 1, dtype=torch.float64).numpy()
    log_s = np.interp(pos, np.arange(table.numel(), dtype=np.float64), torch.log(table).numpy())
    return torch.from_numpy(np.exp(log_s))


# ---------------------------------------------------------------------------------------------
# Command: optimise for a built-in model
# ---------------------------------------------------------------------------------------------

GMM_SHAPE = (4, 8, 8)  # latent of the built-in GMM models at their default 64x64 size (C, H, W)
FLOW_SHIFT = 3.0  # the built-in flow GMM's ComfyUI ModelSamplingDiscreteFlow shift
FLOW_S_CAP = 0.9999  # flow time standing in for s = 1 (VE sigma = inf) while optimising


def sd_discrete_sigmas() -> torch.Tensor:
    """SD1.x's 1000 discrete sigmas (scaled-linear betas 0.00085..0.012), ascending: 0.0292..14.61."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def shifted_flow_sigmas(shift: float = FLOW_SHIFT) -> torch.Tensor:
    """A discrete flow model's 1000 flow times s = shift t / (1 + (shift - 1) t), t = k/1000, ascending."""
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    return shift * t / (1 + (shift - 1) * t)


def _sampling_identity(sigmas: torch.Tensor, model_type: str) -> dict:
    """The model-type and sigma-range keys of the AYS Sigmas node's model identity (``nodes.presets_store``) for a
    built-in model without a ModelSampling patch, so that 'auto' there picks the command's presets."""
    return {"model_type": model_type, "sigma_min": round(float(sigmas.min()), 5),
            "sigma_max": round(float(sigmas.max()), 5)}


def builtin_problem(model: str):
    """(VE denoiser, data source, initial 10-step VE schedule, model identity) of a built-in model.

    gmm-eps / digits: SD1.x sigmas, time-uniform start. gmm-flow: the shift-3 flow times mapped to VE
    sigma s / (1 - s), with s = 1 capped at :data:`FLOW_S_CAP`, time-uniform start.
    Imports ``sampler_core`` as a top-level package (run from the repository root).
    """
    from .klub import flow_to_ve_denoiser, flow_to_ve_sigma

    if model in ("gmm-eps", "gmm-flow"):
        from sampler_core.models.gmm import GaussianMixture

        gmm = GaussianMixture.for_latent(GMM_SHAPE, seed=0)
        identity = {"builtin": model, **_sampling_identity(sd_discrete_sigmas(), "EPS"),
                    "latent_shape": list(GMM_SHAPE), "mixture_seed": 0, "sampling": "eps"}
        if model == "gmm-eps":
            return gmm.denoise, gmm.sample, time_uniform_schedule(sd_discrete_sigmas(), 10), identity
        flow = shifted_flow_sigmas()
        identity.update({"sampling": "flow", "shift": FLOW_SHIFT, **_sampling_identity(flow, "FLOW")})
        flow[-1] = FLOW_S_CAP
        initial = time_uniform_schedule(flow_to_ve_sigma(flow), 10)
        return flow_to_ve_denoiser(gmm.denoise_flow), gmm.sample, initial, identity
    if model == "digits":
        from sampler_core.models.digits import load_digits_denoiser, pixels_to_latent
        from sampler_core.models.train_digits import digits_pixels

        net = load_digits_denoiser()
        data = pixels_to_latent(digits_pixels())  # [1797, 4, 4, 4]: one digit per latent
        identity = {"builtin": "digits", **_sampling_identity(sd_discrete_sigmas(), "EPS"),
                    "latent_shape": list(data.shape[1:]), "sampling": "eps"}
        return net.denoise, data, time_uniform_schedule(sd_discrete_sigmas(), 10), identity
    raise ValueError(f"unknown built-in model {model!r}: use gmm-eps, gmm-flow or digits")


def builtin_to_sampling(model: str, ve: torch.Tensor) -> torch.Tensor:
    """A built-in model's VE-space schedule as the sigmas the AYS node gives a sampler (flow: back to flow times
    with s = 1 on top; the final value replaced by 0)."""
    from .ays_tables import ays_sigmas
    from .klub import ve_to_flow_sigma

    sig = torch.as_tensor(ve, dtype=torch.float64).reshape(-1)
    if model == "gmm-flow":
        sig = ve_to_flow_sigma(sig)
        sig[0] = 1.0
    return ays_sigmas(sig, sig.numel() - 1)


def refine_builtin(model: str, sigmas_ve: torch.Tensor, samples: int, seed: int, config=None):
    """Solver refinement (:mod:`schedules.refine`) of a built-in model's schedule: ``samples`` noise draws
    (``seed``) and their 200-step ODE reference (the pack's ``sampler_core.search.reference_run``).
    Returns (RefineResult, model evaluations, the SolverError score)."""
    from sampler_core import search as S
    from sampler_core.loop import sample_plan

    from .refine import RefineConfig, SolverError, refine_schedule

    cfg = config or RefineConfig()
    denoiser, problem, shape = S.builtin_model(model)
    kw = {"flow_first_sigma": S.flow_first_sigma()} if problem.model_kind == "flow" else {}
    noise = torch.randn((samples, *shape), generator=torch.Generator().manual_seed(seed))
    x0 = S.start_latents(problem, noise)
    ref = S.reference_run(denoiser, x0, problem, 200, kw)
    calls = [0]

    def counted(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        calls[0] += x.shape[0]
        return denoiser(x, sigma)

    def run(method: str, sig: torch.Tensor) -> torch.Tensor:
        return sample_plan(counted, x0.clone(), sig, extra_args={"seed": seed}, plan=method,
                           model_kind=problem.model_kind, **kw)

    score = SolverError(run, ref, lambda ve: builtin_to_sampling(model, ve), sigmas_ve, cfg.methods, cfg.metrics)
    result = refine_schedule(sigmas_ve, score, cfg)
    return result, calls[0], score


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedules.optimize",
                                     description="Optimise an Align Your Steps schedule for a built-in model.")
    parser.add_argument("--model", required=True, choices=["gmm-eps", "gmm-flow", "digits"])
    parser.add_argument("--out", required=True, help="preset JSON file to write")
    parser.add_argument("--steps", type=int, default=10, choices=[10, 20, 40],
                        help="stop after this many steps (10 -> 20 -> 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=128, help="KLUB samples per interval")
    parser.add_argument("--name", default=None, help="preset name (default: file name)")
    parser.add_argument("--max-batch", type=int, default=1024, help="samples per model call")
    parser.add_argument("--max-sweeps", type=int, default=SearchConfig.max_sweeps, help="early stopping: sweep limit")
    parser.add_argument("--rel-tol", type=float, default=SearchConfig.rel_tol,
                        help="early stopping: relative KLUB improvement per sweep counted as no progress")
    parser.add_argument("--patience", type=int, default=SearchConfig.patience,
                        help="early stopping: sweeps in a row without progress before stopping")
    parser.add_argument("--no-early-stopping", action="store_true", help="run every phase to convergence")
    parser.add_argument("--no-refine", action="store_true",
                        help="skip the solver refinement of the 10-step schedule (KLUB search only, as the paper)")
    parser.add_argument("--refine-samples", type=int, default=256,
                        help="noise samples of the solver refinement (each with a 200-step reference run)")
    args = parser.parse_args(argv)
    for flag, value, low in (("--samples", args.samples, 1), ("--max-batch", args.max_batch, 1),
                             ("--max-sweeps", args.max_sweeps, 1), ("--patience", args.patience, 1),
                             ("--refine-samples", args.refine_samples, 1)):
        if value < low:
            parser.error(f"{flag} must be at least {low}, got {value}")
    if not (math.isfinite(args.rel_tol) and args.rel_tol >= 0):
        parser.error(f"--rel-tol must be a finite number >= 0, got {args.rel_tol}")

    from pathlib import Path

    from .ays_tables import AYS_TABLES
    from .klub import KLUBObjective, KLUBSamples, ve_to_flow_sigma

    name = args.name or Path(args.out).stem
    if name.lower() in {"auto", *(n.lower() for n in AYS_TABLES)}:
        parser.error(f"preset name {name!r} is taken by a built-in AYS preset; choose another --name")
    from .presets import AYSPreset, save_preset_file

    denoiser, data, initial, identity = builtin_problem(args.model)
    generator = torch.Generator().manual_seed(args.seed)
    samples = KLUBSamples.draw(data, args.samples, generator)
    objective = KLUBObjective(denoiser, samples, max_batch=args.max_batch)
    config = SearchConfig(early_stopping=not args.no_early_stopping, max_sweeps=args.max_sweeps,
                          rel_tol=args.rel_tol, patience=args.patience)

    def report(p: SearchProgress) -> None:
        print(f"  {p.steps} steps, sweep {p.sweep}: KLUB {p.objective:.6g} ({p.evals} interval evaluations)",
              flush=True)

    subdivisions = int(round(math.log2(args.steps // 10)))
    start = time.perf_counter()
    first = coordinate_search(initial, objective, None, config, report)
    refined = None
    if not args.no_refine:
        refined, refine_calls, score = refine_builtin(args.model, first.sigmas, args.refine_samples, args.seed)
        print(f"  solver refinement: worst relative error {math.exp(refined.history[-1]):.3f} of the KLUB "
              f"schedule's ({refined.evals} schedules, {refine_calls} model evaluations)", flush=True)
    result = optimize_schedule(objective, refined.sigmas if refined else first.sigmas, subdivisions, config,
                               progress=report, search_first=False)
    result.history[10] = first.history
    result.stop_reason[10] = first.stop_reason
    result.seconds = time.perf_counter() - start
    out = Path(args.out)
    sigmas = dict(result.sigmas)
    if args.model == "gmm-flow":  # back to the model's own flow times; the capped top is s = 1 again
        for k, v in sigmas.items():
            v = ve_to_flow_sigma(v)
            v[0] = 1.0
            sigmas[k] = v
    preset = AYSPreset(
        name=name,
        model=identity,
        conditioning={"source": "built-in model data (unconditional)", "klub_samples": args.samples,
                      "seed": args.seed, "early_stopping": config.early_stopping, "max_sweeps": config.max_sweeps,
                      "rel_tol": config.rel_tol, "patience": config.patience,
                      "solver_refinement": None if refined is None else {
                          "methods": list(score.methods), "score_history": refined.history,
                          "samples": args.refine_samples, "model_evaluations": refine_calls}},
        sigmas={k: [float(x) for x in v] for k, v in sigmas.items()},
        klub_history={k: list(v) for k, v in result.history.items()},
    )
    save_preset_file(out, preset)
    extra = "" if refined is None else f" + {refine_calls} solver refinement"
    print(f"optimised {args.model} in {result.seconds:.1f} s ({objective.nfe} KLUB{extra} model evaluations); "
          f"wrote {out}")
    for k, v in sigmas.items():
        print(f"  {k:>2} steps ({result.stop_reason[k]}): " + ", ".join(f"{x:.4g}" for x in v.tolist()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
