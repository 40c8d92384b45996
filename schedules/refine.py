"""Solver refinement of an AYS schedule: this pack's extension after the paper's KLUB search.

KLUB (Sabour et al., arXiv 2404.14507, section 3) bounds the KL divergence of *stochastic* DDIM; the paper
uses it for ODE solvers too and stops early because the bound is loose. On the pack's built-in models the
early-stopped KLUB schedule still loses to a standard scheduler for some solvers (``benchmarks/AYS_RESULTS.md``).
This stage starts from the early-stopped KLUB schedule and moves its interior points to lower the error of
deterministic solvers against a high-NFE reference run from the same noise (the reference the optimiser
draws its data with, so no real data is needed):

    score(s) = max over solvers m and metrics k of  log( e_k(x_m(s), x_ref) / e_k(x_m(s_0), x_ref) ),

``s_0`` the starting schedule: the worst relative error (a mean would trade one solver's error for another's).
Two metrics by default: ``rmse``, the RMS error over all samples, dominated by the few samples that end in
another mode of the data, and ``median``, the median over samples of each sample's RMS error: the typical
sample's precision, blind to those few. On the pack's flow model (a diagnostic noise seed, 2000 samples) RMSE
alone moved the schedule until dpmpp_2m sent fewer samples to another mode but left every sample less precise
(sliced W2 0.061 vs 0.039 of the beta schedule); the median alone let 1 % of the samples change mode (0.099);
both: 0.041. Both together beat RMSE alone on the validation seeds of ``benchmarks/bench_ays.py``
(7 of 9 cells beat every baseline, RMSE alone 6), as RMSE alone had beaten a sliced-W2 score and trimmed RMSE.
Adding the SDE solver dpmpp_2m_sde, scored by the sliced W2 of its 256 samples to the reference set (its path
leaves the reference's, so only the set compares), was worse there: on gmm-eps and digits 1 of 6 cells beat
every baseline (5 of 6 without it), dpmpp_2m_sde itself included (gmm-eps +7.1 % vs -28.6 %).

Coordinate-wise: in each sweep, every interior point (high noise first), then (``ranges``) every run of points
from the first or to the last interior point moved together, tries

    log s_i + r (log s_{i-1} - log s_i)   and   log s_i + r (log s_{i+1} - log s_i)   for r in ``reach``

and takes the best candidate when it lowers the score, so the score never rises. No ComfyUI imports: the
caller supplies how to run a solver (``run(method, sigmas) -> x``) and how a schedule becomes the sigmas a
sampler receives (``to_sampling``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .optimize import OptimizationCancelled

DEFAULT_METHODS = ("euler", "dpmpp_2m")  # a first-order and a second-order multistep solver
METRICS = ("rmse", "median", "sliced_w2")  # see SolverError.errors
N_DIRECTIONS = 128  # random unit directions of the sliced W2 (fixed seed)


def sliced_w2(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> float:
    """Sliced Wasserstein-2 distance of two equally sized sample sets (rows): the RMS over ``directions``
    (unit columns) of the 1-d W2 between the sorted projections. Blind to which sample went where, so a
    sample that ends in another mode of the same distribution costs nothing; a blur (shrunk variance) does."""
    px = torch.sort(x.reshape(x.shape[0], -1).double() @ directions, dim=0).values
    py = torch.sort(y.reshape(y.shape[0], -1).double() @ directions, dim=0).values
    return float(torch.sqrt(torch.mean((px - py) ** 2)))


@dataclass
class RefineConfig:
    """``sweeps`` passes over the interior points (each point alone, then with ``ranges`` every run of points
    that starts at the first or ends at the last interior point, moved together); candidates at ``reach``
    fractions of the log-gap to each neighbour; ``methods``: the solvers whose worst relative error is the score
    (names of the pack's step methods)."""

    sweeps: int = 2
    reach: tuple[float, ...] = (0.1, 0.3)
    methods: tuple[str, ...] = DEFAULT_METHODS
    ranges: bool = True  # also move runs of points together: every head 1..k and tail k..n-1 (joint shifts)
    # per solver: "rmse" (paired, to the reference), "median" (median per-sample RMS error, paired) and/or
    # "sliced_w2" (sample sets); rmse + median won on the validation seeds of benchmarks/bench_ays.py (module doc)
    metrics: tuple[str, ...] = ("rmse", "median")

    def __post_init__(self) -> None:
        if self.sweeps < 0:
            raise ValueError(f"sweeps must be >= 0, got {self.sweeps}")
        if not self.reach or not all(0 < r < 1 for r in self.reach):
            raise ValueError(f"every reach must be in (0, 1), got {self.reach}")
        if not self.methods:
            raise ValueError("at least one solver method is needed")
        if not self.metrics or not set(self.metrics) <= set(METRICS):
            raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {self.metrics}")



@dataclass
class RefineResult:
    sigmas: torch.Tensor  # float64, descending, same length and endpoints as the start
    history: list[float]  # score at the start and after every sweep (never increasing)
    evals: int  # schedule evaluations (each is one run of every method)
    seconds: float
    errors: dict[str, list[float]] = field(default_factory=dict)  # per method: RMSE at the start, at the end


def refine_blocks(steps: int, ranges: bool = True) -> list[tuple[int, int]]:
    """The runs of interior points (first, last index) a sweep moves, for a schedule of ``steps`` steps: every
    point alone, then with ``ranges`` every head 1..k (k >= 2) and every shorter tail k..steps-1 (k >= 2)."""
    last = steps - 1  # last interior point
    blocks = [(i, i) for i in range(1, last + 1)]
    if ranges:
        blocks += [(1, k) for k in range(2, last + 1)] + [(k, last) for k in range(2, last)]
    return blocks


def refine_schedule(sigmas: torch.Tensor | Sequence[float], score: Callable[[torch.Tensor], float],
                    config: RefineConfig | None = None, progress: Callable[[int, int, float], None] | None = None,
                    cancel: Callable[[], bool] | None = None) -> RefineResult:
    """Coordinate descent of ``score`` over the interior points of ``sigmas`` (endpoints fixed).

    ``progress(sweep, evals, score)`` after every point or run; ``cancel()`` returning True stops with
    :class:`~schedules.optimize.OptimizationCancelled`.
    """
    cfg = config or RefineConfig()
    t0 = time.perf_counter()
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1).clone()
    if s.numel() < 3 or not bool(torch.all(s > 0)) or not bool(torch.all(s[1:] < s[:-1])):
        raise ValueError("refinement needs at least 3 positive, strictly decreasing sigmas")

    def check() -> None:
        if cancel is not None and cancel():
            raise OptimizationCancelled("schedule refinement cancelled")

    check()
    current = float(score(s))
    evals = 1
    if not math.isfinite(current):
        raise ValueError("the solvers' error is not finite on the starting schedule")
    history = [current]
    blocks = refine_blocks(s.numel() - 1, cfg.ranges)
    for sweep in range(1, cfg.sweeps + 1):
        for i0, i1 in blocks:
            best, best_s = current, None
            logs = torch.log(s)
            for r in cfg.reach:
                for step in (-1, 1):  # towards the upper (larger sigma) or the lower neighbour of every point
                    check()
                    cand = s.clone()
                    # each point moves within its own (old) gap, so the order is kept for any run of points
                    idx = torch.arange(i0, i1 + 1)
                    cand[idx] = torch.exp(logs[idx] + r * (logs[idx + step] - logs[idx]))
                    value = float(score(cand))
                    evals += 1
                    if math.isfinite(value) and value < best:
                        best, best_s = value, cand
            if best_s is not None:
                s, current = best_s, best
            if progress is not None:
                progress(sweep, evals, current)
        history.append(current)
    return RefineResult(s, history, evals, time.perf_counter() - t0)


class SolverError:
    """The refinement score: the largest log ratio of a solver's RMS error to a reference, relative to ``start``.

    ``run(method, sampling_sigmas) -> x`` runs one solver from the fixed starting noise; ``ref`` is the
    reference result from the same noise; ``to_sampling(sigmas)`` maps an optimisation-space schedule to
    the sigmas the sampler receives (e.g. back to flow times, final value replaced by 0).
    """

    def __init__(self, run: Callable[[str, torch.Tensor], torch.Tensor], ref: torch.Tensor,
                 to_sampling: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                 methods: Sequence[str] = DEFAULT_METHODS, metrics: Sequence[str] = ("rmse",)) -> None:
        self.run, self.ref, self.to_sampling, self.methods = run, ref, to_sampling, tuple(methods)
        self.metrics = tuple(metrics)
        dim = ref[0].numel()
        d = torch.randn((dim, N_DIRECTIONS), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.directions = (d / d.norm(dim=0, keepdim=True)).to(ref.device)
        self.runs = 0
        self._cache: dict[tuple, list[float]] = {}
        self.base = self.errors(start)
        if not all(math.isfinite(e) and e > 0 for e in self.base):
            raise ValueError(f"solver errors on the starting schedule are not finite and positive: {self.base}")

    @property
    def labels(self) -> list[str]:
        """What each entry of :meth:`errors` is: "<method> <metric>"."""
        return [f"{m} {metric}" for m in self.methods for metric in self.metrics]

    def errors(self, sigmas: torch.Tensor) -> list[float]:
        """Per method and metric, the distance to the reference (each schedule runs once; repeats are cached):
        ``rmse`` sqrt(mean over samples and elements of (x - ref)^2); ``median`` the median over samples of
        sqrt(mean over a sample's elements of (x - ref)^2); ``sliced_w2`` :func:`sliced_w2` of the two sets."""
        key = tuple(float(v) for v in torch.as_tensor(sigmas).reshape(-1).tolist())
        if key in self._cache:
            return self._cache[key]
        sig = self.to_sampling(sigmas)
        out = []
        for m in self.methods:
            x = self.run(m, sig)
            self.runs += 1
            finite = bool(torch.isfinite(x).all())
            per_sample = ((x.double() - self.ref.double()) ** 2).reshape(x.shape[0], -1).mean(1)  # squared RMS
            for metric in self.metrics:
                if not finite:
                    err = math.inf
                elif metric == "rmse":
                    err = float(per_sample.mean().sqrt())
                elif metric == "median":  # the typical sample's error: blind to the few that end in another mode
                    err = float(per_sample.median().sqrt())
                else:
                    err = sliced_w2(x, self.ref, self.directions)
                out.append(err if math.isfinite(err) else math.inf)
        self._cache[key] = out
        return out

    def __call__(self, sigmas: torch.Tensor) -> float:
        errs = self.errors(sigmas)
        if not all(math.isfinite(e) for e in errs):
            return math.inf
        return max(math.log(max(e, 1e-30) / b) for e, b in zip(errs, self.base, strict=True))
