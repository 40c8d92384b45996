"""Solver refinement of AYS schedules (schedules/refine.py): pure coordinate descent and the solver-error score."""

from __future__ import annotations

import math

import pytest
import torch

from sampler_core import search as S
from sampler_core.loop import sample_plan
from schedules.optimize import OptimizationCancelled, time_uniform_schedule
from schedules.refine import RefineConfig, SolverError, refine_blocks, refine_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


def log_uniform(n: int = 10, hi: float = 10.0, lo: float = 0.05) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(hi), math.log(lo), n + 1, dtype=torch.float64))


def test_refinement_never_raises_the_score_keeps_endpoints_and_moves_towards_the_minimum():
    start = log_uniform()
    target = torch.tensor([10.0, 7.0, 4.0, 2.5, 1.5, 0.9, 0.5, 0.3, 0.15, 0.08, 0.05], dtype=torch.float64)

    def score(s: torch.Tensor) -> float:
        return float(((torch.log(s) - torch.log(target)) ** 2).sum())

    res = refine_schedule(start, score, RefineConfig(sweeps=4))
    assert all(b <= a for a, b in zip(res.history, res.history[1:], strict=False))
    assert res.history[-1] < 0.5 * res.history[0]
    assert res.sigmas[0] == start[0] and res.sigmas[-1] == start[-1]
    assert bool(torch.all(res.sigmas[1:] < res.sigmas[:-1]))
    assert res.evals == 1 + 4 * (9 + 8 + 7) * 2 * len(RefineConfig().reach)  # 9 points, 8 heads, 7 tails
    assert len(refine_blocks(10)) == 9 + 8 + 7 and len(refine_blocks(10, ranges=False)) == 9


def test_refinement_keeps_a_schedule_that_is_already_optimal():
    start = log_uniform()

    def score(s: torch.Tensor) -> float:
        return float(((torch.log(s) - torch.log(start)) ** 2).sum())

    res = refine_schedule(start, score, RefineConfig(sweeps=1))
    assert torch.equal(res.sigmas, start) and res.history == [0.0, 0.0]


def test_refinement_stops_on_cancel():
    calls = []
    with pytest.raises(OptimizationCancelled):
        refine_schedule(log_uniform(), lambda s: 0.0, cancel=lambda: calls.append(1) or len(calls) > 3)


@pytest.mark.parametrize("bad", [{"sweeps": -1}, {"reach": ()}, {"reach": (1.2,)}, {"methods": ()}])
def test_refinement_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        RefineConfig(**bad)


def test_refinement_rejects_a_schedule_that_is_not_decreasing():
    with pytest.raises(ValueError, match="decreasing"):
        refine_schedule(torch.tensor([1.0, 2.0, 0.5]), lambda s: 0.0)


def gmm_solver_error(seed: int, batch: int, start: torch.Tensor):
    denoiser, problem, shape = S.builtin_model("gmm-eps")
    x0 = S.start_latents(problem, torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed)))
    ref = S.reference_run(denoiser, x0, problem, 100)

    def run(method: str, sig: torch.Tensor) -> torch.Tensor:
        return sample_plan(lambda x, s, **_: denoiser(x, s), x0.clone(), sig, plan=method)

    def to_sampling(s: torch.Tensor) -> torch.Tensor:
        return torch.cat([s.float(), torch.zeros(1)])

    return SolverError(run, ref, to_sampling, start)


def test_solver_refinement_lowers_both_solvers_error_on_held_out_noise():
    """Refined on one noise batch of the exact Gaussian-mixture model, from the time-uniform SD1 start (8 steps);
    euler's and dpmpp_2m's RMSE to the reference is lower on a different batch."""
    from schedules.optimize import sd_discrete_sigmas

    start = time_uniform_schedule(sd_discrete_sigmas(), 8)
    score = gmm_solver_error(0, 128, start)
    res = refine_schedule(start, score, RefineConfig(sweeps=1))
    assert res.history[-1] < res.history[0]
    held_out = gmm_solver_error(1, 256, start)
    before, after = held_out.base, held_out.errors(res.sigmas)
    assert all(a < b for a, b in zip(after, before, strict=True)), (before, after)


def test_solver_error_rejects_a_start_where_the_solvers_fail():
    ref = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="not finite"):
        SolverError(lambda m, s: torch.full((2, 3), math.nan), ref, lambda s: s, log_uniform())



def test_sliced_w2_ignores_which_sample_went_where_but_sees_a_blur():
    from schedules.refine import sliced_w2

    g = torch.Generator().manual_seed(0)
    y = torch.randn((256, 4, 4), generator=g)
    d = torch.randn((16, 32), generator=g, dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    perm = torch.randperm(256, generator=g)
    assert sliced_w2(y[perm], y, d) == pytest.approx(0.0, abs=1e-12)  # same set, other pairing
    blur = sliced_w2(0.8 * y, y, d)
    assert blur > 0.1 and sliced_w2(0.9 * y, y, d) < blur


@pytest.mark.parametrize("metrics", [("sliced_w2",), ("rmse", "sliced_w2"), ("median",), ("rmse", "median")])
def test_solver_error_scores_every_method_and_metric(metrics):
    ref = torch.randn((64, 8), generator=torch.Generator().manual_seed(1))

    def run(method: str, sig: torch.Tensor) -> torch.Tensor:
        return ref * (1 - float(sig[1]) / 20)  # shrinks with the first interior sigma

    start = log_uniform(3)
    score = SolverError(run, ref, lambda s: s, start, ("euler", "dpmpp_2m"), metrics)
    assert score.labels == [f"{m} {k}" for m in ("euler", "dpmpp_2m") for k in metrics]
    assert len(score.base) == 2 * len(metrics) and all(b > 0 for b in score.base)
    lower = start.clone()
    lower[1] = start[1] * 0.5
    assert score(lower) < 0 < score(torch.tensor([10.0, 9.0, 0.3, 0.05], dtype=torch.float64))


def test_median_metric_sees_the_typical_sample_and_ignores_a_few_outliers():
    """``median`` is the median per-sample RMS error: one sample far off (another mode) moves ``rmse`` a lot and
    ``median`` not at all, while a small error on every sample moves ``median``."""
    ref = torch.randn((101, 8), generator=torch.Generator().manual_seed(2))
    outlier = ref.clone()
    outlier[0] += 10.0
    everywhere = ref + 0.1
    outputs = {"outlier": outlier, "everywhere": everywhere, "start": ref + 0.01}

    def run(method: str, sig: torch.Tensor) -> torch.Tensor:
        return outputs[{0.5: "start", 0.4: "outlier", 0.3: "everywhere"}[round(float(sig[1]), 1)]]

    start = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
    score = SolverError(run, ref, lambda s: s, start, ("euler",), ("rmse", "median"))
    rmse_o, median_o = score.errors(torch.tensor([1.0, 0.4, 0.1], dtype=torch.float64))
    rmse_e, median_e = score.errors(torch.tensor([1.0, 0.3, 0.1], dtype=torch.float64))
    assert median_o == pytest.approx(0.0, abs=1e-12) and rmse_o > 0.9  # 10 * sqrt(8 / (101 * 8)) ~ 0.995
    assert median_e == pytest.approx(0.1, rel=1e-6) and rmse_e == pytest.approx(0.1, rel=1e-6)


def test_default_refinement_scores_rmse_and_median():
    assert RefineConfig().metrics == ("rmse", "median")
    with pytest.raises(ValueError, match="metrics"):
        RefineConfig(metrics=("mean",))
