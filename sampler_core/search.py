"""Solver-schedule search (S3, Liu et al., arXiv 2312.07243): the best per-step plan for a model and an NFE budget.

A candidate is a per-step choice of method + options (``usf`` with its order / prediction / derivative
estimate / corrector / eta, dpmpp_2m, uni_pc, heun, ...) and a sigma schedule given by a few knobs:

* sigma_i (positive points, VE sigma; flow models: s / (1 - s)) follow Karras et al. 2022 eq. 5,
  sigma_i = (top^(1/rho) + t_i (last^(1/rho) - top^(1/rho)))^rho, t_i = i / (m - 1), with knobs rho, the
  last positive sigma (>= the model's sigma_min) and, on flow models, the VE sigma of the first point
  after s = 1 (top), blended in log sigma by the knob ``kl`` (weight in [0, 1]) with the KL-optimal
  spacing tan((1 - t_i) atan(top) + t_i atan(last)) (ComfyUI's kl_optimal); then every interior point
  moves by ``offset_i`` (|offset| <= 0.4) of the log-gap to its neighbour on that side (order is kept).
  The schedule ends in 0 as ComfyUI's schedulers do.
* the step count n follows from the choices: sum over steps i < n-1 of the method's model calls, plus
  one for the last step to sigma 0, equals the NFE budget exactly (checked with :func:`loop.plan_nfe`).

Fitness: RMSE of the final sample to a high-NFE reference run from the same noise (any model, no data),
or with ``data``, the sliced Wasserstein-2 distance of the samples to the data. Search: an evolutionary
loop (tournament selection, crossover of per-step choices and knobs, mutation, random candidates, budget
repair) proposes candidates in stages; a predictor of log fitness on a feature encoding of the candidate
(knobs and their products, per step the method and option values), by default a linear ridge regression refit
on the real evaluations after each stage, screens each stage's proposals so that only the predicted best are
evaluated for real (the paper's learned predictor; a kernel ridge regression, the mean of the two, a per-stage
choice of the two by leave-one-out error, k-NN and a random forest are options).
The last ``refine_share`` of the evaluations is a local search from the best candidate (coordinate moves
of the schedule knobs, then of each step's choice). Optionally several independent runs (restarts), keeping the
one with the lowest search fitness. Deterministic for a seed.

Command for the built-in models: ``python -m sampler_core.search --model gmm-eps --nfe 5 --out plan.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .loop import plan_nfe, sample_plan
from .plan import Plan, Segment, parse_plan
from .predictors import KNN, Forest, KernelRidge, Ridge
from .registry import METHODS

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoiser(x [B, ...], sigma [B]) -> x0`` in the model's own space (k-diffusion form)."""

OFFSET_MAX = 0.4  # largest move of an interior point, as a fraction of the log-gap to its neighbour
RHO_RANGE = (0.7, 30.0)  # Karras rho (log-uniform knob); large rho ~ log-uniform spacing
LAST_RATIO_MAX = 8.0  # last positive sigma in [sigma_min, 8 sigma_min] (VE)
FLOW_TOP_RANGE = (2.0, 500.0)  # flow models: VE sigma of the point after s = 1
N_FIXED_KNOBS = 4  # rho, last, top (flow), kl blend
IDLE_LIMIT = 2000  # proposal rounds in a row with nothing new to evaluate: the search space is used up


# --------------------------------------------------------------------------- the space of per-step choices


@dataclass(frozen=True)
class Choice:
    """One per-step choice: a registered method and the options written for it (the rest are defaults)."""

    method: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    def full(self) -> dict[str, Any]:
        return {**METHODS[self.method].defaults(), **self.opts}

    def calls(self) -> int:
        """Model calls of a non-final step (the last step to sigma 0 always takes one; ``afs`` takes none)."""
        return METHODS[self.method].model_calls

    def label(self) -> str:
        return " ".join([self.method] + [f"{k}={v}" for k, v in self.options])


def _choice(method: str, **opts: Any) -> Choice:
    """A choice with only non-default options written, in the method's option order."""
    cls = METHODS[method]
    d = cls.defaults()
    unknown = set(opts) - set(d)
    if unknown:
        raise ValueError(f"{method} has no option {', '.join(sorted(unknown))}")
    written = tuple((o.name, opts[o.name]) for o in cls.options if o.name in opts and opts[o.name] != d[o.name])
    full = {**d, **opts}
    cls.check(full)
    return Choice(method, written)


FAMILIES = ("usf", "dpmpp_2m", "uni_pc", "uni_pc_bh2", "heun", "deis", "ipndm", "dpmpp_2m_sde", "afs")


def default_space(stochastic: bool = False) -> list[Choice]:
    """The per-step choices searched: every ``usf`` combination (order 1-3, data/noise prediction, full/low
    derivative estimate, UniC corrector or none) plus dpmpp_2m, uni_pc (order 2, 3), uni_pc_bh2, heun,
    deis and ipndm, and the analytical first step ``afs`` (first step only, no model call; data/noise
    prediction, corrector or none); with ``stochastic``,
    usf eta in {0.3, 1} (data prediction) and dpmpp_2m_sde eta in {0.3, 1}."""
    out: list[Choice] = []
    for order in (1, 2, 3):
        for pred in ("data", "noise"):
            for deriv in (("full", "low") if order == 3 else ("full",)):  # identical below order 3
                for corr in ("unic", "none"):
                    out.append(_choice("usf", order=order, pred=pred, deriv=deriv, corrector=corr))
    out += [_choice("dpmpp_2m"), _choice("uni_pc", order=2), _choice("uni_pc", order=3), _choice("uni_pc_bh2"),
            _choice("heun"), _choice("deis"), _choice("ipndm")]
    out += [_choice("afs", pred=pred, corrector=corr) for pred in ("data", "noise") for corr in ("unic", "none")]
    if stochastic:
        for eta in (0.3, 1.0):
            out.append(_choice("usf", order=2, eta=eta))
            out.append(_choice("usf", order=3, eta=eta))
            out.append(_choice("dpmpp_2m_sde", eta=eta))
    return out


def choice_features(c: Choice) -> list[float]:
    """Encoding of one choice for the predictor: method one-hot, order, noise prediction, low derivative
    estimate, corrector, eta, extra calls."""
    full = c.full()
    one_hot = [1.0 if c.method == f else 0.0 for f in FAMILIES]
    order = full.get("order", full.get("max_order", METHODS[c.method].order))
    return one_hot + [
        min(float(order), 4.0) / 3.0,
        1.0 if full.get("pred") == "noise" else 0.0,
        1.0 if full.get("deriv") == "low" else 0.0,
        1.0 if full.get("corrector") == "unic" or c.method.startswith("uni_pc") else 0.0,
        float(full.get("eta", 0.0)) if METHODS[c.method].stochastic else 0.0,
        float(c.calls() - 1),
    ]


# --------------------------------------------------------------------------- candidates and schedules


@dataclass(frozen=True)
class Candidate:
    """Per-step choice indices (one per step) and schedule knobs in [0, 1]:
    ``knobs = (rho, last, top, offset_0 .. offset_{K-1})``; offset_j moves positive point j + 1."""

    steps: tuple[int, ...]
    knobs: tuple[float, ...]

    def key(self) -> tuple:
        return self.steps, tuple(round(k, 6) for k in self.knobs)


@dataclass
class Problem:
    """What a schedule needs to know about the model: kind and sigma range (model's own sigmas)."""

    model_kind: str
    sigma_min: float
    sigma_max: float

    def to_ve(self, s: float) -> float:
        return s / (1.0 - s) if self.model_kind == "flow" else s

    def from_ve(self, v: float) -> float:
        return v / (1.0 + v) if self.model_kind == "flow" else v


def _karras(m: int, hi: float, lo: float, rho: float) -> list[float]:
    if m == 1:
        return [lo]
    a, b = hi ** (1 / rho), lo ** (1 / rho)
    return [(a + i / (m - 1) * (b - a)) ** rho for i in range(m)]


def _kl_optimal(m: int, hi: float, lo: float) -> list[float]:
    """m points from hi down to lo, evenly spaced in atan(sigma) (the KL-optimal schedule of N(0, I) data)."""
    a, b = math.atan(hi), math.atan(lo)
    return [math.tan(a + i / (m - 1) * (b - a)) for i in range(m)]


def _log_knob(u: float, lo: float, hi: float) -> float:
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def schedule_sigmas(problem: Problem, n: int, knobs: Sequence[float]) -> torch.Tensor:
    """The n + 1 sigmas (float32, descending, final 0) of a candidate with n steps (see the module docstring)."""
    rho = _log_knob(knobs[0], *RHO_RANGE)
    ve_min = problem.to_ve(problem.sigma_min)
    last = ve_min * _log_knob(knobs[1], 1.0, LAST_RATIO_MAX)
    if problem.model_kind == "flow":
        top = max(_log_knob(knobs[2], *FLOW_TOP_RANGE), last * 1.5)
        head = [math.inf]  # s = 1
        m = n - 1
    else:
        top = problem.sigma_max
        last = min(last, top / 1.5)
        head = []
        m = n
    body = _karras(m, top, last, rho) if m > 0 else []
    w = float(knobs[3])
    if w > 0 and m > 1:
        tan = _kl_optimal(m, top, last)
        body = [math.exp((1 - w) * math.log(a) + w * math.log(b)) for a, b in zip(body, tan, strict=True)]
    pts = head + body
    logs = [math.log(p) if math.isfinite(p) else math.inf for p in pts]
    moved = list(logs)
    offsets = knobs[N_FIXED_KNOBS:]
    for j in range(1, len(pts) - 1):
        if not math.isfinite(logs[j - 1]) or j - 1 >= len(offsets):
            continue  # the point after s = 1 is the `top` knob
        d = (offsets[j - 1] - 0.5) * 2 * OFFSET_MAX
        nb = logs[j - 1] if d > 0 else logs[j + 1]
        moved[j] = logs[j] + abs(d) * (nb - logs[j])
    sig = [problem.sigma_max if not math.isfinite(v) else problem.from_ve(math.exp(v)) for v in moved]
    sig[0] = problem.sigma_max
    out = torch.tensor(sig + [0.0], dtype=torch.float32)
    if not bool(torch.all(out[1:] < out[:-1])):
        raise ValueError("schedule is not strictly decreasing")
    return out


def candidate_plan(space: Sequence[Choice], steps: Sequence[int]) -> Plan:
    """Per-step choices as a plan: equal neighbours merged into one segment; the last segment is ``*``."""
    segs: list[tuple[Choice, int]] = []
    for idx in steps:
        c = space[idx]
        if segs and segs[-1][0] == c:
            segs[-1] = (c, segs[-1][1] + 1)
        else:
            segs.append((c, 1))
    return Plan(tuple(Segment(None if k == len(segs) - 1 else count, c.method, c.opts)
                      for k, (c, count) in enumerate(segs)))


def steps_nfe(space: Sequence[Choice], steps: Sequence[int]) -> int:
    """NFE of per-step choices with a final sigma 0: calls of steps 0..n-2, plus 1 for the last step."""
    return sum(space[i].calls() for i in steps[:-1]) + 1


# --------------------------------------------------------------------------- fitness


def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """sqrt(mean((x - ref)^2)) over every element."""
    return float(((x.double() - ref.double()) ** 2).mean().sqrt())


def sliced_w2(x: torch.Tensor, data: torch.Tensor, n_dirs: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-2 (Bonneel et al. 2015) between the rows of ``x`` and of ``data``: along fixed random
    unit directions, W2^2 = mean_i (y_(i) - Q_data((i + 1/2) / n))^2 with the data's empirical quantiles Q_data."""
    a = x.double().reshape(x.shape[0], -1).cpu()
    b = data.double().reshape(data.shape[0], -1).cpu()
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_dirs, a.shape[1], generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=1, keepdim=True)
    ya = torch.sort(a @ dirs.T, dim=0).values
    yb = torch.sort(b @ dirs.T, dim=0).values.numpy()
    u = (np.arange(a.shape[0]) + 0.5) / a.shape[0]
    grid = (np.arange(b.shape[0]) + 0.5) / b.shape[0]
    q = torch.from_numpy(np.stack([np.interp(u, grid, yb[:, k]) for k in range(n_dirs)], axis=1))
    return float(((ya - q) ** 2).mean(dim=0).mean().sqrt())


FLOW_REFERENCE_TOP = 1e4  # VE sigma of the flow reference's first point after s = 1 (s = 0.9999)
FLOW_REFERENCE_KNEE = 100.0  # VE sigma where its log-uniform high-noise part hands over to Karras spacing


def reference_sigmas(problem: Problem, steps: int) -> torch.Tensor:
    """Schedule of the high-NFE reference run: Karras rho = 7 in VE sigma from sigma_max down to sigma_min,
    then 0. Flow models that start at s = 1 (VE sigma infinite): s = 1, then ``steps // 10`` points
    log-uniform in VE sigma from 1e4 (s = 0.9999) down to 100 (s = 0.990), then Karras rho = 7 from 100 down.
    A single step from s = 1 to VE sigma 100 (this function's former flow schedule) is too coarse: on the
    built-in flow GMM it sent 11 of 16384 samples near a component boundary into the wrong component (RMSE
    0.025 to a converged 2000-step float64 solution; now 1e-5, 200 steps), and the search fitted its plans
    to that error."""
    ve_min = problem.to_ve(problem.sigma_min)
    if problem.model_kind == "flow" and problem.sigma_max < 1.0:  # no s = 1 singularity: Karras in VE sigma
        body = _karras(steps, problem.to_ve(problem.sigma_max), ve_min, 7.0)[1:]
        return torch.tensor([problem.sigma_max] + [problem.from_ve(v) for v in body] + [0.0], dtype=torch.float64)
    if problem.model_kind == "flow":
        k = max(steps // 10, 1) if steps >= 3 else 0
        top, knee = math.log(FLOW_REFERENCE_TOP), math.log(FLOW_REFERENCE_KNEE)
        high = [math.exp(top + i / k * (knee - top)) for i in range(k)]
        body = [problem.from_ve(v) for v in high + _karras(steps - 1 - k, FLOW_REFERENCE_KNEE, ve_min, 7.0)]
        sig = [problem.sigma_max] + body
    else:
        sig = _karras(steps, problem.sigma_max, problem.sigma_min, 7.0)
    return torch.tensor(sig + [0.0], dtype=torch.float64)


def reference_run(denoiser: Denoiser, x_start: torch.Tensor, problem: Problem, steps: int = 200,
                  sample_kwargs: dict | None = None, step_hook: Callable[[], None] | None = None) -> torch.Tensor:
    """High-accuracy probability-flow ODE solution from ``x_start``: ``usf`` (order 3, UniC, exact in the
    model's half-log-SNR) on :func:`reference_sigmas`. ``step_hook()`` after every step (it may raise to cancel)."""
    sig = reference_sigmas(problem, steps).to(x_start.device, x_start.dtype)
    callback = (lambda _info: step_hook()) if step_hook is not None else None
    return sample_plan(_k_model(denoiser), x_start.clone(), sig, extra_args={"seed": 0}, callback=callback,
                       plan="usf", model_kind=problem.model_kind, **(sample_kwargs or {}))


def _k_model(denoiser: Denoiser) -> Callable:
    def model(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        return denoiser(x, sigma)

    return model


# --------------------------------------------------------------------------- search


PREDICTORS = ("ridge", "kernel", "auto", "mean", "knn", "forest")


@dataclass
class SearchConfig:
    """Settings of the evolutionary search. ``evaluations``: real evaluations (sampling runs), the initial
    population included. Proposals: children of the elite (tournament, crossover, mutation) and a share of
    random candidates. Each stage refits the predictor and evaluates the ``per_stage`` predicted best of
    ``pool`` proposals (``pool=0``: per parent pair, the predicted best of ``children``); without the
    predictor the first ``per_stage`` proposals are evaluated."""

    evaluations: int = 200
    # independent runs (search seeds seed, seed + 1, ...; one reference run), each with ``evaluations``; the plan
    # with the lowest search fitness is kept. At NFE 5 on the built-in flow GMM (3000 evaluations) single runs
    # ended in different basins (search fitness 0.116 / 0.103 / 0.090 for seeds 0 / 1 / 2), and the lowest search
    # fitness was also the best on held-out noise
    restarts: int = 1
    initial: int = 24
    per_stage: int = 6
    children: int = 16  # proposals per parent pair the predictor picks one from
    refine_share: float = 0.3  # share of the evaluations spent on local search from the best candidate
    refine_step: float = 0.1  # first knob step of the local search (knobs are in [0, 1])
    refine_min_step: float = 0.005
    random_share: float = 0.3  # share of proposals drawn at random (not from the elite)
    one_hot: bool = False  # ridge predictor: also a one-hot of the choice index per step
    pool: int = 300  # > 0: the stage's ``per_stage`` predicted best of this many proposals (0: per parent pair)
    # share of a stage's evaluations the predictor picks; the rest are plain proposals (exploration). On seeds
    # 100-119 (300 evaluations, 128 samples, median evaluations to reach the no-predictor median) 0.25 beat the
    # search without a predictor in 3 of the 4 GMM cases (NFE 5 / 8), 0.5 in 1 of 4 (0.5 had won on 6 seeds)
    screen_share: float = 0.25
    elite: int = 12
    use_predictor: bool = True
    stochastic: bool | None = None  # SDE choices in the space (default: only with data)
    # "ridge" (linear, expanded features), "kernel" (kernel ridge regression), "auto" (per stage the one of the
    # two with the lower leave-one-out error), "mean" (the average of the two), "knn" or "forest" (random forest;
    # on seeds 100-119 it beat no predictor at NFE 8 on all three models but not at gmm-eps / digits NFE 5: README,
    # "Other predictors"). On seeds 100-139 (40
    # runs, 300 evaluations, 128 samples; median evaluations to reach the no-predictor median, GMM eps/flow at NFE
    # 5/8) mean 120.5/274/282/257.5, ridge 141/245.5/301/301, kernel 107/301/261.5/273, auto 108/301/235/290.5,
    # none 280/294.5/295/297.5; but with "mean" the full benchmark searches (1500 evaluations) found worse plans
    # (held-out ratio digits NFE 5 0.732 vs 0.582, NFE 8 0.566 vs 0.521, gmm-eps NFE 8 0.649 vs 0.539) and its
    # comparison on seeds 200-219 was no better (gmm-flow NFE 5 301 vs ridge 226.5), so ridge stays the default
    predictor: str = "ridge"
    # kernel, auto, mean and knn predictors fit the latest this many evaluations (one n x n eigendecomposition
    # per length scale and stage; ~0.1 s at 600 on one core)
    predictor_window: int = 600
    ridge: float | None = None  # kernel predictor's lam (None: chosen by leave-one-out error at every stage)

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {self.predictor!r}: expected one of {', '.join(PREDICTORS)}")
        if self.restarts < 1:
            raise ValueError(f"restarts must be at least 1, got {self.restarts}")
        if self.predictor_window < 2:
            raise ValueError(f"predictor_window must be at least 2, got {self.predictor_window}")


@dataclass
class SearchResult:
    plan: Plan
    sigmas: torch.Tensor  # float32, n + 1 values, final 0
    fitness: float
    nfe: int
    history: list[dict[str, Any]]  # one row per real evaluation: eval, fitness, best, stage, predicted
    evaluations: int
    model_calls: int  # model calls of the evaluations and the reference
    seconds: float
    baselines: dict[str, float] = field(default_factory=dict)  # fitness of the seeded starting candidates

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_text(), "plan_json": self.plan.to_dict(),
                "sigmas": [float(v) for v in self.sigmas.tolist()], "nfe": self.nfe, "fitness": self.fitness,
                "evaluations": self.evaluations, "model_calls": self.model_calls, "seconds": self.seconds,
                "baselines": {k: (v if math.isfinite(v) else None) for k, v in self.baselines.items()},
                "history": self.history}


class SearchCancelled(RuntimeError):
    """Raised when the ``progress`` hook asks to stop."""


class _Searcher:
    def __init__(self, denoiser: Denoiser, problem: Problem, nfe: int, x_start: torch.Tensor,
                 ref: torch.Tensor | None, data: torch.Tensor | None, config: SearchConfig, seed: int,
                 space: list[Choice], sample_kwargs: dict, progress: Callable | None,
                 step_hook: Callable | None, noise_seed: int | None = None) -> None:
        self.problem, self.nfe, self.x_start, self.ref, self.data = problem, nfe, x_start, ref, data
        self.cfg, self.seed, self.space = config, seed, space
        # SDE noise and sliced-W2 directions: the same in every restart, so their fitness values compare
        self.noise_seed = seed if noise_seed is None else noise_seed
        self.sample_kwargs, self.progress, self.step_hook = sample_kwargs, progress, step_hook
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.n_knobs = N_FIXED_KNOBS + nfe  # an offset per interior point (nfe + 1 steps with afs)
        self.single = [i for i, c in enumerate(space) if c.calls() == 1]
        self.evaluated: dict[tuple, float] = {}
        self.order: list[tuple[Candidate, float]] = []
        self.history: list[dict[str, Any]] = []
        self.predictor_log: list[dict[str, Any]] = []  # per stage: leave-one-out errors of the fitted predictors
        self.best: tuple[Candidate, float] | None = None
        self._feat: list[list[float]] | None = None
        self._stalled = False
        self._keys: dict[tuple, tuple] = {}
        self._idle = 0  # proposals in a row that were all evaluated before
        self.exhausted = False  # every proposal was a repeat IDLE_LIMIT times in a row: the space is used up

        def counted(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
            self.calls += 1
            return denoiser(x, sigma)

        self.model = counted

    # ---- candidates

    def repair(self, steps: list[int]) -> tuple[int, ...]:
        """Add or drop steps (or swap a 2-call choice for a 1-call one) until the NFE equals the budget.
        New steps go before the last one (the last step to sigma 0 always takes one call). A zero-call
        choice (``afs``) may only be the first of at least two steps: anywhere else it becomes a 1-call one."""
        steps = list(steps) or [self.single[0]]
        for _ in range(8 * self.nfe + 8):
            for i, c in enumerate(steps):
                if self.space[c].calls() == 0 and (i > 0 or len(steps) < 2):
                    steps[i] = int(self.rng.choice(self.single))
            cur = steps_nfe(self.space, steps)
            if cur == self.nfe:
                return tuple(steps)
            if cur > self.nfe:
                multi = [i for i in range(len(steps) - 1) if self.space[steps[i]].calls() > 1]
                if multi and self.rng.random() < 0.5:
                    steps[int(self.rng.choice(multi))] = int(self.rng.choice(self.single))
                else:
                    del steps[int(self.rng.integers(len(steps)))]
            else:
                lead = 1 if self.space[steps[0]].calls() == 0 else 0  # keep a first afs first
                j = int(self.rng.integers(lead, max(len(steps), lead + 1)))  # before the last step
                near = steps[min(j, len(steps) - 1)]
                steps.insert(j, near if self.space[near].calls() == 1 else int(self.rng.choice(self.single)))
        return tuple([self.single[0]] * self.nfe)

    def random_candidate(self) -> Candidate:
        n = int(self.rng.integers(max(1, self.nfe // 2), self.nfe + 1))
        steps = [int(self.rng.integers(len(self.space))) for _ in range(n)]
        knobs = [float(self.rng.random()) for _ in range(N_FIXED_KNOBS)]
        knobs += [float(np.clip(0.5 + 0.15 * self.rng.standard_normal(), 0, 1))
                  for _ in range(self.n_knobs - N_FIXED_KNOBS)]
        return Candidate(self.repair(steps), tuple(knobs))

    def seeded(self) -> list[tuple[str, Candidate]]:
        """Known-good starting points: one method on every step, Karras rho = 7, a log-uniform and the KL-optimal
        spacing; and the same after an analytical first step."""
        out = []
        rho7 = (math.log(7.0) - math.log(RHO_RANGE[0])) / (math.log(RHO_RANGE[1]) - math.log(RHO_RANGE[0]))
        lo, hi = FLOW_TOP_RANGE
        top = (math.log(100.0) - math.log(lo)) / (math.log(hi) - math.log(lo))
        names = [_choice("usf"), _choice("usf", order=2, corrector="none"), _choice("uni_pc", order=3),
                 _choice("dpmpp_2m")]
        for c in names:
            if c not in self.space:
                continue
            idx = self.space.index(c)
            for rho_u, kl, label in ((rho7, 0.0, "karras rho=7"), (1.0, 0.0, f"karras rho={RHO_RANGE[1]:g}"),
                                     (rho7, 1.0, "kl_optimal")):
                knobs = (rho_u, 0.0, top, kl) + (0.5,) * (self.n_knobs - N_FIXED_KNOBS)
                out.append((f"{c.label()} / {label}", Candidate(self.repair([idx] * self.nfe), knobs)))
        afs = _choice("afs", pred="noise")
        if afs in self.space and self.nfe >= 2:  # the same, after an analytical first step (rho 7, kl_optimal)
            for label, c in [(lb, c) for lb, c in out if "rho=7" in lb or "kl_optimal" in lb]:
                steps = (self.space.index(afs),) + c.steps
                out.append((f"{afs.label()} + {label}", Candidate(self.repair(list(steps)), c.knobs)))
        return out

    def mutate(self, c: Candidate) -> Candidate:
        steps = list(c.steps)
        r = self.rng.random()
        if r < 0.15 and len(steps) > 1:  # drop a step (repair adds one elsewhere or swaps a 2-call choice)
            del steps[int(self.rng.integers(len(steps)))]
        elif r < 0.25:  # a 2-call choice somewhere (repair drops a step)
            steps[int(self.rng.integers(len(steps)))] = int(self.rng.integers(len(self.space)))
        rate = 1.0 / max(len(steps), 1)
        for i in range(len(steps)):
            if self.rng.random() < rate:
                steps[i] = int(self.rng.integers(len(self.space)))
        scale = float(self.rng.choice([0.02, 0.07, 0.2]))
        knobs = np.array(c.knobs)
        mask = self.rng.random(len(knobs)) < 0.5
        knobs = np.clip(knobs + mask * scale * self.rng.standard_normal(len(knobs)), 0.0, 1.0)
        return Candidate(self.repair(steps), tuple(float(k) for k in knobs))

    def crossover(self, a: Candidate, b: Candidate) -> Candidate:
        if self.rng.random() < 0.5:  # one-point cut of the per-step choices
            cut = int(self.rng.integers(1, max(len(a.steps), 2)))
            steps = list(a.steps[:cut]) + list(b.steps[cut:])
        else:
            steps = [a.steps[i] if (i >= len(b.steps) or self.rng.random() < 0.5) else b.steps[i]
                     for i in range(len(a.steps))]
        w = self.rng.random(len(a.knobs))
        knobs = tuple(float(v) for v in w * np.array(a.knobs) + (1 - w) * np.array(b.knobs))
        return Candidate(self.repair(steps), knobs)

    def features(self, c: Candidate, expanded: bool | None = None) -> list[float]:
        """Knobs, step count, per step the choice's encoding (:func:`choice_features`); ``expanded`` (the
        linear ridge predictor's features, default unless the predictor is "kernel" or "knn") adds the squares
        and products of the fixed knobs and, with ``one_hot``, a one-hot of the choice per step."""
        if expanded is None:
            expanded = self.cfg.predictor not in ("kernel", "knn", "forest")
        if self._feat is None:
            self._feat = [choice_features(ch) for ch in self.space]
        width = len(FAMILIES) + 6
        f = list(c.knobs) + [len(c.steps) / self.nfe]
        for i in range(self.nfe + 1):  # at most nfe + 1 steps (afs first)
            f += self._feat[c.steps[i]] if i < len(c.steps) else [0.0] * width
        if expanded:
            k = list(c.knobs)
            f += [a * b for i, a in enumerate(k[:N_FIXED_KNOBS]) for b in k[i:N_FIXED_KNOBS]]
            if self.cfg.one_hot:
                hot = [0.0] * ((self.nfe + 1) * len(self.space))  # nfe + 1 steps at most (afs first)
                for i, j in enumerate(c.steps):
                    hot[i * len(self.space) + j] = 1.0
                f += hot
        return f

    # ---- evaluation

    def sigmas(self, c: Candidate) -> torch.Tensor:
        return schedule_sigmas(self.problem, len(c.steps), c.knobs)

    def key(self, c: Candidate) -> tuple:
        """What a run of ``c`` depends on: its per-step choices and its sigmas (float32). Knobs that leave the
        sigmas unchanged (``top`` on eps models, offsets of points a shorter plan lacks, clipped values) give
        the same key, so equivalent candidates cost one real evaluation, not one each."""
        k = c.key()
        hit = self._keys.get(k)
        if hit is None:
            try:
                hit = (c.steps, tuple(self.sigmas(c).tolist()))
            except ValueError:
                hit = k
            self._keys[k] = hit
        return hit

    def fitness_of(self, c: Candidate) -> float:
        try:
            sig = self.sigmas(c)
            steps = [(self.space[i].method, self.space[i].opts) for i in c.steps]
            if plan_nfe(steps, sig, model_kind=self.problem.model_kind, **self._compat()) != self.nfe:
                return math.inf
            x = sample_plan(self.model, self.x_start.clone(), sig.to(self.x_start.device, self.x_start.dtype),
                            extra_args={"seed": self.noise_seed}, callback=self._step_cb, plan=steps,
                            model_kind=self.problem.model_kind, **self.sample_kwargs)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            return math.inf
        if not bool(torch.isfinite(x).all()):
            return math.inf
        if self.data is not None:
            return sliced_w2(x, self.data, seed=self.noise_seed)
        return rmse(x, self.ref)

    def _compat(self) -> dict:
        return {k: v for k, v in self.sample_kwargs.items() if k != "noise_sampler_factory"}

    def _step_cb(self, info: dict) -> None:
        if self.step_hook is not None:
            self.step_hook()

    def evaluate(self, c: Candidate, stage: int, predicted: float | None = None) -> float:
        key = self.key(c)
        if key in self.evaluated:
            return self.evaluated[key]
        f = self.fitness_of(c)
        self.evaluated[key] = f
        self.order.append((c, f))
        if math.isfinite(f) and (self.best is None or f < self.best[1]):
            self.best = (c, f)
        row = {"eval": len(self.order), "fitness": f if math.isfinite(f) else None, "stage": stage,
               "best": self.best[1] if self.best else None, "predicted": predicted}
        self.history.append(row)
        if self.progress is not None and self.progress(row, self.cfg.evaluations) is False:
            raise SearchCancelled("search cancelled")
        return f

    # ---- loop

    def idle(self, before: int) -> bool:
        """After a proposal round that started with ``before`` evaluations: True (and ``exhausted``) once
        IDLE_LIMIT rounds in a row evaluated nothing new, as in a space with fewer distinct plans than the budget
        (NFE 1: one sigma pair, about 20 single-call methods). Runs the step hook, so a cancel is seen here too."""
        if self.step_hook is not None:
            self.step_hook()
        self._idle = self._idle + 1 if len(self.order) == before else 0
        self.exhausted = self.exhausted or self._idle >= IDLE_LIMIT
        return self.exhausted

    def run(self) -> dict[str, float]:
        cfg = self.cfg
        baselines = {}
        for label, c in self.seeded():
            if len(self.order) >= cfg.evaluations:
                break
            baselines[label] = self.evaluate(c, 0)
        while len(self.order) < min(cfg.initial, cfg.evaluations):
            before = len(self.order)
            c = self.random_candidate()
            if self.key(c) not in self.evaluated:
                self.evaluate(c, 0)
            if self.idle(before):
                return baselines
        stage = 0
        evolve_until = cfg.evaluations - int(cfg.refine_share * cfg.evaluations)
        stage_start = len(self.order)
        while len(self.order) < evolve_until:
            if stage and self.idle(stage_start):  # the previous stage found nothing new to evaluate
                return baselines
            stage_start = len(self.order)
            stage += 1
            finite = sorted([(f, i) for i, (_, f) in enumerate(self.order) if math.isfinite(f)])
            elite = [self.order[i][0] for _, i in finite[: cfg.elite]] or [self.random_candidate()]
            want = min(cfg.per_stage, evolve_until - len(self.order))
            predictor = self.fit_predictor() if cfg.use_predictor else None
            seen = set(self.evaluated)
            if predictor is not None and cfg.pool > 0:  # stage-wide screening: the predicted best of a pool
                pool = [c for _ in range(cfg.pool) for c in self.children(elite, 1, seen)]
                pool = list({self.key(c): c for c in pool}.values())
                scores = predictor(pool)
                screened = max(1, round(cfg.screen_share * want))
                order = np.argsort(scores, kind="stable")
                for j in order[:screened]:
                    self.evaluate(pool[int(j)], stage, float(math.exp(scores[int(j)])))
                for j in range(want - screened):  # plain proposals (exploration, as without the predictor)
                    if j < len(pool) and self.key(pool[j]) not in self.evaluated:
                        self.evaluate(pool[j], stage, float(math.exp(scores[j])))
                continue
            for _ in range(want):
                group = self.children(elite, cfg.children if predictor is not None else 1, seen)
                if predictor is None:
                    pick, pred = group[0], None
                else:
                    scores = predictor(group)
                    j = int(np.argmin(scores))
                    pick, pred = group[j], float(math.exp(scores[j]))
                seen.add(self.key(pick))
                self.evaluate(pick, stage, pred)
        self.refine()
        return baselines

    def refine(self) -> None:
        """Local search from the best candidate with the remaining evaluations (history stage -1): coordinate
        moves of the schedule knobs that shape its sigmas (+-step, halved after a sweep without gain), and
        once the step is small, a sweep over the other single-call choices of every step but the last."""
        step = self.cfg.refine_step
        while len(self.order) < self.cfg.evaluations and self.best is not None:
            cand, fit = self.best
            if step >= self.cfg.refine_min_step:
                improved = False
                for k in self.rng.permutation(self.shape_knobs(cand)):
                    for sign in (1.0, -1.0):
                        knobs = list(cand.knobs)
                        knobs[int(k)] = min(max(knobs[int(k)] + sign * step, 0.0), 1.0)
                        if self._try(Candidate(cand.steps, tuple(knobs)), fit):
                            improved = True
                            break
                    if improved or len(self.order) >= self.cfg.evaluations:
                        break
                if not improved:
                    step /= 2
                continue
            improved = False
            for i in self.rng.permutation(max(len(cand.steps) - 1, 1)):
                for j in self.rng.permutation(len(self.space)):
                    if self.space[int(j)].calls() != self.space[cand.steps[int(i)]].calls() or j == cand.steps[i]:
                        continue
                    steps = list(cand.steps)
                    steps[int(i)] = int(j)
                    if self._try(Candidate(tuple(steps), cand.knobs), fit):
                        improved = True
                        break
                if improved or len(self.order) >= self.cfg.evaluations:
                    break
            if not improved and len(self.order) < self.cfg.evaluations:
                step = self.cfg.refine_step  # choices are locally optimal: schedule again from the start step
                if self._stalled:
                    break
                self._stalled = True
            elif improved:
                self._stalled = False
        while len(self.order) < self.cfg.evaluations and not self.exhausted:  # budget left after a stall: evolve on
            before = len(self.order)
            c = self.mutate(self.best[0])
            if self.key(c) not in self.evaluated:
                self.evaluate(c, -1)
            elif self.rng.random() < 0.01:
                self.evaluate(self.random_candidate(), -1)
            self.idle(before)

    def shape_knobs(self, c: Candidate) -> list[int]:
        """Indices of the knobs that change this candidate's sigmas: rho, last, top (flow), kl, interior offsets."""
        n = len(c.steps)
        flow = self.problem.model_kind == "flow"
        fixed = [0, 1, 2, 3] if flow else [0, 1, 3]
        first = 2 if flow else 1  # first positive point an offset moves
        return fixed + [N_FIXED_KNOBS + j - 1 for j in range(first, n - 1)]

    def _try(self, c: Candidate, fit: float) -> bool:
        if self.key(c) in self.evaluated or len(self.order) >= self.cfg.evaluations:
            return False
        return self.evaluate(c, -1) < fit

    def children(self, elite: list[Candidate], m: int, seen: set) -> list[Candidate]:
        """``m`` new children of one parent pair (tournament of two among the elite; crossover with a second
        elite half of the time, then mutation)."""
        a = elite[min(int(self.rng.integers(len(elite))), int(self.rng.integers(len(elite))))]
        b = elite[int(self.rng.integers(len(elite)))] if self.rng.random() < 0.5 and len(elite) > 1 else None
        out: list[Candidate] = []
        keys = set()
        for _ in range(20 * m):
            if self.rng.random() < self.cfg.random_share:
                child = self.random_candidate()
            elif b is not None:
                child = self.crossover(a, b)
                child = self.mutate(child) if self.rng.random() < 0.7 else child
            else:
                child = self.mutate(a)
            ck = self.key(child)
            if ck not in seen and ck not in keys:
                keys.add(ck)
                out.append(child)
                if len(out) == m:
                    break
        return out or [self.random_candidate()]

    def fit_predictor(self) -> Callable[[Sequence[Candidate]], np.ndarray]:
        """The predictor of log fitness, fitted on the real evaluations so far (all for "ridge", the latest
        ``predictor_window`` otherwise; failures count as the worst fitness seen, times e); returns a function
        from candidates to predicted log fitness. "auto" fits the linear ridge and the kernel ridge and uses the
        one with the lower leave-one-out error (both on the log-fitness scale) at this stage; "mean" averages
        their predictions."""
        kind = self.cfg.predictor
        finite = [f for _, f in self.order if math.isfinite(f)]
        worst = math.log(max(finite)) + 1.0 if finite else 0.0
        # the kernel models (and "auto"/"mean", so both errors are over the same points): the latest evaluations
        order = self.order if kind == "ridge" else self.order[-self.cfg.predictor_window:]
        cands = [c for c, _ in order]
        ys = np.array([math.log(f) if math.isfinite(f) and f > 0 else worst for _, f in order])
        if kind == "forest":
            forest = Forest(seed=self.seed * 7919 + len(cands)).fit(
                np.array([self.features(c, False) for c in cands]), ys)
            self.predictor_log.append({"stage_evals": len(cands), "loo": {"Forest": forest.loo}})
            return lambda cs: forest.predict(np.array([self.features(c, False) for c in cs]))
        if kind == "knn":
            knn = KNN().fit(np.array([self.features(c, False) for c in cands]), ys)
            return lambda cs: knn.predict(np.array([self.features(c, False) for c in cs]))
        fitted = []  # (leave-one-out mean squared error of log fitness, model, expanded features)
        if kind in ("ridge", "auto", "mean"):
            ridge = Ridge().fit(np.array([self.features(c, True) for c in cands]), ys)
            fitted.append((ridge.loo, ridge, True))
        if kind in ("kernel", "auto", "mean"):
            kr = KernelRidge(self.cfg.ridge).fit(np.array([self.features(c, False) for c in cands]), ys)
            fitted.append((kr.loo * kr.y_sd**2, kr, False))
        if kind == "auto":
            fitted = [min(fitted, key=lambda t: t[0])]
        self.predictor_log.append({"stage_evals": len(cands), "loo": {type(m).__name__: e for e, m, _ in fitted}})

        def predict(cs: Sequence[Candidate]) -> np.ndarray:
            preds = [m.predict(np.array([self.features(c, ex) for c in cs])) for _, m, ex in fitted]
            return np.mean(preds, axis=0)

        return predict


def search_plan(denoiser: Denoiser, *, model_kind: str, sigma_min: float, sigma_max: float, nfe: int,
                x_start: torch.Tensor, ref: torch.Tensor | None = None, data: torch.Tensor | None = None,
                config: SearchConfig | None = None, seed: int = 0, space: list[Choice] | None = None,
                reference_steps: int = 200, sample_kwargs: dict | None = None,
                progress: Callable[[dict, int], Any] | None = None,
                step_hook: Callable[[], None] | None = None) -> SearchResult:
    """Search per-step methods + sigma schedule for ``nfe`` model calls (exactly) on ``denoiser``.

    ``x_start``: the starting latents at ``sigma_max`` (noise already scaled as the sampler receives it).
    ``ref``: the reference result from ``x_start`` (default: :func:`reference_run` with ``reference_steps``);
    ``data`` (samples of the target) switches the fitness to the sliced W2 distance. ``sample_kwargs`` go to
    every ``sample_plan`` call (noise factory, ComfyUI compat options). ``progress(row, total)`` is called
    after every real evaluation (returning False cancels); ``step_hook()`` after every sampling step (it may
    raise to cancel). Deterministic for a ``seed``. With ``config.restarts`` > 1, independent runs with seeds
    ``seed``, ``seed + 1``, ... (one reference run) each spend ``config.evaluations``; the result is the run with
    the lowest fitness, its history all runs' rows numbered on.
    """
    t0 = time.perf_counter()
    if nfe < 1:
        raise ValueError(f"the NFE budget must be at least 1, got {nfe}")
    if model_kind not in ("eps", "flow"):
        raise ValueError(f"model_kind must be 'eps' or 'flow', got {model_kind!r}")
    config = config or SearchConfig()
    stochastic = config.stochastic if config.stochastic is not None else data is not None
    space = space or default_space(stochastic)
    problem = Problem(model_kind, float(sigma_min), float(sigma_max))
    sample_kwargs = dict(sample_kwargs or {})
    total = config.evaluations * config.restarts
    history: list[dict[str, Any]] = []  # every run's rows, numbered on; "best" over all runs so far
    runs: list[_Searcher] = []
    baselines: dict[str, float] = {}  # the seeded plans' fitness, from the first run (the same in every run)
    for restart in range(config.restarts):
        offset = len(history)

        def hook(row: dict, _n: int, offset: int = offset, restart: int = restart) -> Any:
            row = {**row, "eval": row["eval"] + offset, "restart": restart}
            prev = history[-1]["best"] if history else None
            if prev is not None and (row["best"] is None or prev < row["best"]):
                row["best"] = prev
            history.append(row)
            return progress(row, total) if progress is not None else None

        s = _Searcher(denoiser, problem, nfe, x_start, None, data, config, seed + restart, space, sample_kwargs,
                      hook, step_hook, noise_seed=seed)
        if data is None:
            if ref is None:
                ref = reference_run(s.model, x_start, problem, reference_steps, sample_kwargs, step_hook)
            s.ref = ref
        scored = s.run()
        if restart == 0:
            baselines = scored
        runs.append(s)
    finished = [r for r in runs if r.best is not None]
    if not finished:
        raise RuntimeError("no candidate could be evaluated (every run failed or gave non-finite results)")
    s = min(finished, key=lambda r: r.best[1])  # the lowest search fitness (the first run on a tie)
    best, fit = s.best
    plan = candidate_plan(space, best.steps)
    sigmas = s.sigmas(best)
    nfe_found = plan_nfe(plan, sigmas, model_kind=model_kind, **s._compat())
    return SearchResult(plan=plan, sigmas=sigmas, fitness=fit, nfe=nfe_found, history=history,
                        evaluations=sum(len(r.order) for r in runs), model_calls=sum(r.calls for r in runs),
                        seconds=time.perf_counter() - t0,
                        baselines=baselines)


def evals_to_reach(history: Sequence[dict[str, Any]], target: float) -> int | None:
    """Real evaluations until the best fitness is <= ``target`` (None if never)."""
    for row in history:
        if row["best"] is not None and row["best"] <= target:
            return int(row["eval"])
    return None


# --------------------------------------------------------------------------- built-in models (command)

GMM_SHAPE = (4, 8, 8)
DIGITS_SHAPE = (4, 4, 4)  # one digit per latent
FLOW_SHIFT = 3.0


def builtin_model(name: str) -> tuple[Denoiser, Problem, tuple[int, ...]]:
    """(denoiser in the model's own space, problem, latent shape) of a built-in model, with the sigma range
    ComfyUI gives it (SD1.x discrete sigmas for gmm-eps and digits; shift-3 discrete flow for gmm-flow)."""
    if name in ("gmm-eps", "digits"):
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        ac = torch.cumprod(1 - betas, dim=0)
        table = ((1 - ac) / ac) ** 0.5
        problem = Problem("eps", float(table[0]), float(table[-1]))
        if name == "digits":
            from .models.digits import load_digits_denoiser

            net = load_digits_denoiser()
            return (lambda x, s: net.denoise(x, s)), problem, DIGITS_SHAPE
        from .models.gmm import for_latent_cached

        gmm = for_latent_cached(GMM_SHAPE)
        return (lambda x, s: gmm.denoise(x, s)), problem, GMM_SHAPE
    if name == "gmm-flow":
        from .models.gmm import for_latent_cached

        gmm = for_latent_cached(GMM_SHAPE)
        t = 1e-3
        problem = Problem("flow", FLOW_SHIFT * t / (1 + (FLOW_SHIFT - 1) * t), 1.0)
        return (lambda x, s: gmm.denoise_flow(x, s)), problem, GMM_SHAPE
    raise ValueError(f"unknown built-in model {name!r}: use gmm-eps, gmm-flow or digits")


def start_latents(problem: Problem, noise: torch.Tensor) -> torch.Tensor:
    """What ComfyUI's sampler receives from unit noise at the model's sigma_max (max_denoise): EPS models
    noise * sqrt(1 + sigma_max^2), flow (CONST) models the noise itself."""
    if problem.model_kind == "flow":
        return noise.clone()
    return noise * math.sqrt(1.0 + problem.sigma_max**2)


def flow_first_sigma(shift: float = FLOW_SHIFT) -> float:
    """A discrete shifted flow model's ``percent_to_sigma(1e-4)``: s = shift t / (1 + (shift - 1) t), t = 1 - 1e-4."""
    t = 1.0 - 1e-4
    return shift * t / (1 + (shift - 1) * t)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sampler_core.search",
                                 description="Search a per-step solver plan + sigma schedule for a built-in model.")
    ap.add_argument("--model", required=True, choices=["gmm-eps", "gmm-flow", "digits"])
    ap.add_argument("--nfe", type=int, required=True, help="model-call budget of the plan (met exactly)")
    ap.add_argument("--out", required=True, help="JSON file to write (plan text, plan JSON, sigmas, history)")
    ap.add_argument("--evaluations", type=int, default=SearchConfig.evaluations,
                    help="real evaluations (search budget)")
    ap.add_argument("--batch", type=int, default=256,
                    help="noise samples the fitness is measured on (at NFE 5 on the GMM models thousands: rare "
                         "samples that end in another mixture component carry much of the error)")
    ap.add_argument("--restarts", type=int, default=1,
                    help="independent search runs (seeds seed, seed + 1, ...), each with --evaluations; the plan "
                         "with the lowest search fitness is kept")
    ap.add_argument("--seed", type=int, default=0, help="seed of the search and of its noise")
    ap.add_argument("--reference-steps", type=int, default=200)
    ap.add_argument("--no-predictor", action="store_true", help="evaluate every proposal (no screening)")
    ap.add_argument("--predictor", choices=PREDICTORS, default=SearchConfig.predictor,
                    help="fitness predictor that screens the proposals")
    args = ap.parse_args(argv)
    if args.restarts < 1:
        ap.error(f"--restarts must be at least 1, got {args.restarts}")

    torch.set_num_threads(1)
    denoiser, problem, shape = builtin_model(args.model)
    noise = torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(args.seed))
    kw = {"flow_first_sigma": flow_first_sigma()} if problem.model_kind == "flow" else {}
    cfg = SearchConfig(evaluations=args.evaluations, use_predictor=not args.no_predictor, predictor=args.predictor,
                       restarts=args.restarts)

    def report(row: dict, total: int) -> None:
        if row["eval"] % 25 == 0 or row["eval"] == total:
            print(f"  {row['eval']}/{total} evaluations, best RMSE {row['best']:.4g}", flush=True)

    res = search_plan(denoiser, model_kind=problem.model_kind, sigma_min=problem.sigma_min,
                      sigma_max=problem.sigma_max, nfe=args.nfe, x_start=start_latents(problem, noise), config=cfg,
                      seed=args.seed, reference_steps=args.reference_steps, sample_kwargs=kw, progress=report)
    assert parse_plan(res.plan.to_text()) == res.plan
    out = {"model": args.model, "model_kind": problem.model_kind, "nfe_budget": args.nfe, **res.to_dict()}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, allow_nan=False)
    print(f"searched {args.model} at NFE {args.nfe} in {res.seconds:.1f} s ({res.evaluations} evaluations, "
          f"{res.model_calls} model calls): RMSE {res.fitness:.4g}; wrote {args.out}")
    print("plan:\n  " + res.plan.to_text().replace("\n", "\n  "))
    print("sigmas: " + ", ".join(f"{v:.4g}" for v in res.sigmas.tolist()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
