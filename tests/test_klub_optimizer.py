"""KLUB estimator, coordinate search, subdivision, interpolation and presets of Align Your Steps.

Oracle: Gaussian data N(0, c^2 I_d) has the exact denoiser D(x, t) = c^2 / (c^2 + t^2) x and the
closed-form KLUB d c^4 int t^-3 (1/(t^2 + c^2) - 1/(t_up^2 + c^2)) dt per interval.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import minimize

from schedules.klub import (
    KLUBObjective,
    KLUBSamples,
    flow_to_ve_denoiser,
    flow_to_ve_sigma,
    gaussian_klub,
    klub_estimate,
    sample_t,
    ve_to_flow_sigma,
)
from schedules.optimize import (
    OptimizationCancelled,
    SearchConfig,
    coordinate_search,
    interpolate_schedule,
    karras_schedule,
    optimize_schedule,
    subdivide,
    time_uniform_schedule,
)
from schedules.presets import (
    AYSPreset,
    PresetError,
    list_presets,
    load_preset,
    preset_sigmas,
    save_preset,
)

SIGMA_MIN, SIGMA_MAX = 0.0291675, 14.614642


def gaussian_problem(c: float, d: int):
    def data(n: int, generator: torch.Generator) -> torch.Tensor:
        return c * torch.randn(n, d, generator=generator)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return (c * c / (c * c + sigma.reshape(-1, 1) ** 2)) * x

    return data, denoiser


def quad_klub(t_lo: float, t_up: float, c: float, d: int) -> float:
    def integrand(t: float) -> float:
        return d * c**4 * t**-3 * (1 / (t * t + c * c) - 1 / (t_up * t_up + c * c))

    return quad(integrand, t_lo, t_up, limit=200, epsabs=0, epsrel=1e-11)[0]


def closed_form_objective(c: float, d: int):
    return lambda t_lo, t_up: gaussian_klub(t_lo, t_up, c, d)


# --------------------------------------------------------------------------------------------- estimator


def test_gaussian_klub_closed_form_equals_numerical_integral():
    sig = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    for c in (0.3, 1.0, 2.5):
        ours = gaussian_klub(sig[1:], sig[:-1], c, 3)
        ref = [quad_klub(float(lo), float(up), c, 3) for lo, up in zip(sig[1:], sig[:-1], strict=True)]
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-8)


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_klub_estimate_within_3_standard_errors_of_closed_form(c):
    d = 8
    data, denoiser = gaussian_problem(c, d)
    samples = KLUBSamples.draw(data, 2000, torch.Generator().manual_seed(1))
    sig = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    mean, stderr = klub_estimate(denoiser, sig[1:], sig[:-1], samples)
    for j in range(10):
        exact = quad_klub(float(sig[j + 1]), float(sig[j]), c, d)
        assert stderr[j] > 0
        assert stderr[j] < 0.1 * exact  # a useful estimate, not a huge error bar
        assert abs(float(mean[j]) - exact) < 3 * float(stderr[j]), (j, float(mean[j]), exact, float(stderr[j]))


def test_importance_samples_of_t_stay_in_their_interval_and_follow_the_cdf():
    t_lo = torch.tensor([0.03, 0.5, 3.0], dtype=torch.float64)
    t_up = torch.tensor([0.05, 2.0, 700.0], dtype=torch.float64)
    u = (torch.arange(400, dtype=torch.float64) + 0.5) / 400
    t, weight = sample_t(t_lo, t_up, u)
    assert torch.all(t >= t_lo[:, None]) and torch.all(t <= t_up[:, None])
    assert torch.all(torch.diff(t, dim=1) > 0)  # inverse CDF of increasing u is increasing
    assert torch.all(weight > 0) and torch.all(torch.isfinite(weight))
    # median: P(t <= t_median) = 1/2 by numerical integration of the density
    c = 0.5
    for m in range(3):
        lo, up = float(t_lo[m]), float(t_up[m])
        def q(s, up=up):
            return s**-3 * (1 / (s * s + c * c) - 1 / (up * up + c * c))
        total = quad(q, lo, up, limit=200)[0]
        t_med = float(sample_t(t_lo[m:m + 1], t_up[m:m + 1], torch.tensor([0.5], dtype=torch.float64))[0][0, 0])
        assert quad(q, lo, t_med, limit=200)[0] / total == pytest.approx(0.5, abs=1e-6)


def test_klub_estimate_is_reproducible_and_independent_of_batch_size():
    data, denoiser = gaussian_problem(1.0, 4)
    sig = karras_schedule(SIGMA_MIN, SIGMA_MAX, 6)
    a = KLUBSamples.draw(data, 64, torch.Generator().manual_seed(5))
    b = KLUBSamples.draw(data, 64, torch.Generator().manual_seed(5))
    m1, _ = klub_estimate(denoiser, sig[1:], sig[:-1], a, max_batch=16)
    m2, _ = klub_estimate(denoiser, sig[1:], sig[:-1], b, max_batch=100_000)
    torch.testing.assert_close(m1, m2, rtol=1e-5, atol=0)
    m3, _ = klub_estimate(denoiser, sig[1:], sig[:-1], KLUBSamples.draw(data, 64, torch.Generator().manual_seed(6)))
    assert not torch.allclose(m1, m3)


def test_shared_upper_points_give_the_same_terms_as_separate_calls():
    data, denoiser = gaussian_problem(1.0, 4)
    samples = KLUBSamples.draw(data, 32, torch.Generator().manual_seed(2))
    t_lo = torch.tensor([0.1, 0.2, 0.4, 0.05], dtype=torch.float64)
    t_up = torch.tensor([1.0, 1.0, 1.0, 0.3], dtype=torch.float64)
    together, _ = klub_estimate(denoiser, t_lo, t_up, samples, max_batch=48)
    alone = torch.cat([klub_estimate(denoiser, t_lo[i:i + 1], t_up[i:i + 1], samples)[0] for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=0)


def test_klub_objective_counts_model_evaluations():
    data, denoiser = gaussian_problem(1.0, 2)
    calls = []

    def counting(x, sigma):
        calls.append(x.shape[0])
        return denoiser(x, sigma)

    objective = KLUBObjective(counting, KLUBSamples.draw(data, 10, torch.Generator().manual_seed(0)), max_batch=1000)
    objective(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    # 3 intervals + 2 distinct upper points, 10 samples each, in one model call
    assert objective.nfe == sum(calls) == 50
    assert calls == [50]
    assert objective.last_stderr.shape == (3,)


def test_flow_denoiser_wrapped_as_ve_equals_the_ve_denoiser():
    c = 0.7
    _, ve = gaussian_problem(c, 3)

    def flow(x, s):  # exact denoiser of x = (1 - s) x0 + s eps, x0 ~ N(0, c^2)
        s = s.reshape(-1, 1)
        return (1 - s) * c * c / ((1 - s) ** 2 * c * c + s * s) * x

    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.05, 0.5, 1.0, 4.0, 50.0])
    torch.testing.assert_close(flow_to_ve_denoiser(flow)(x, sigma), ve(x, sigma), rtol=1e-5, atol=1e-6)
    s = torch.tensor([0.001, 0.25, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(ve_to_flow_sigma(flow_to_ve_sigma(s)), s)
    assert float(ve_to_flow_sigma(math.inf)) == 1.0


# --------------------------------------------------------------------------------------------- search


def scipy_minimum(objective, sigmas: torch.Tensor) -> tuple[float, np.ndarray]:
    """Independent reference: L-BFGS-B on the log of the interior points (ends fixed)."""
    hi, lo = float(sigmas[0]), float(sigmas[-1])

    def total(log_inner: np.ndarray) -> float:
        inner = np.sort(np.exp(log_inner))[::-1]
        s = torch.tensor(np.concatenate([[hi], inner, [lo]]), dtype=torch.float64)
        return float(objective(s[1:], s[:-1]).sum())

    res = minimize(total, np.log(sigmas[1:-1].numpy()), method="L-BFGS-B", options={"maxiter": 5000})
    return float(res.fun), np.sort(np.exp(res.x))[::-1]


def test_coordinate_search_reaches_the_closed_form_minimum_within_1_percent():
    d = 4
    objective = closed_form_objective(1.0, d)
    start = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    result = coordinate_search(start, objective, config=SearchConfig(early_stopping=False))
    assert result.stop_reason == "converged"
    best, best_points = scipy_minimum(objective, start)
    assert result.history[-1] <= 1.01 * best
    assert best == pytest.approx(1.601 * d, rel=2e-3)  # the reference value
    expected = [0.9825, 0.5656, 0.3686, 0.2504, 0.1732, 0.1207, 0.0845, 0.0593, 0.0416]
    np.testing.assert_allclose(best_points, expected, rtol=5e-3)
    np.testing.assert_allclose(result.sigmas[1:-1].numpy(), expected, rtol=1e-2)
    assert result.sigmas[0] == SIGMA_MAX and result.sigmas[-1] == SIGMA_MIN


def test_objective_never_rises_across_sweeps():
    result = coordinate_search(karras_schedule(SIGMA_MIN, SIGMA_MAX, 10), closed_form_objective(0.5, 1),
                               config=SearchConfig(early_stopping=False))
    assert len(result.history) == result.sweeps + 1 > 3
    assert all(b <= a for a, b in pairwise(result.history))
    assert result.history[-1] < result.history[0]
    # the tracked interval values are the objective of the final schedule
    torch.testing.assert_close(result.interval_values, gaussian_klub(result.sigmas[1:], result.sigmas[:-1], 0.5, 1))

    data, denoiser = gaussian_problem(1.0, 4)
    objective = KLUBObjective(denoiser, KLUBSamples.draw(data, 64, torch.Generator().manual_seed(3)))
    noisy = coordinate_search(karras_schedule(SIGMA_MIN, SIGMA_MAX, 10), objective,
                              config=SearchConfig(max_sweeps=4, rel_tol=0.0))
    assert noisy.sweeps == 4 and noisy.stop_reason == "max_sweeps"
    assert all(b <= a for a, b in pairwise(noisy.history))
    assert noisy.history[-1] < noisy.history[0]
    assert torch.all(noisy.sigmas[1:] < noisy.sigmas[:-1])


def test_early_stopping_stops_before_convergence_and_budget_is_respected():
    objective = closed_form_objective(1.0, 1)
    start = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    full = coordinate_search(start, objective, config=SearchConfig(early_stopping=False))
    early = coordinate_search(start, objective, config=SearchConfig(max_sweeps=None, rel_tol=1e-2, patience=1))
    assert early.stop_reason == "early_stop"
    assert early.sweeps < full.sweeps
    assert early.history[-1] >= full.history[-1]
    capped = coordinate_search(start, objective, config=SearchConfig(early_stopping=False, max_evals=500))
    assert capped.stop_reason == "budget"
    assert capped.evals <= 500


def test_a_budget_below_one_batch_of_points_still_moves_the_points_it_covers():
    objective = closed_form_objective(1.0, 1)
    start = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    per_point = 4 * ((SearchConfig().n_candidates - 1) // 2)  # 2 * half candidates, two intervals each
    budget = 10 + 2 * per_point  # the start's 10 intervals, then two points of the first batch of five
    res = coordinate_search(start, objective, config=SearchConfig(max_evals=budget))
    assert res.stop_reason == "budget" and res.evals == budget
    assert res.history[-1] < res.history[0]
    moved = torch.nonzero(res.sigmas != start).reshape(-1).tolist()
    assert moved and set(moved) <= {1, 3}  # the two highest-noise points of the odd batch, nothing else
    tiny = coordinate_search(start, objective, config=SearchConfig(max_evals=10 + per_point - 1))
    assert tiny.evals == 10 and torch.equal(tiny.sigmas, start.double()) and tiny.stop_reason == "budget"


def test_default_search_is_a_trust_region_around_the_start():
    default = SearchConfig()
    assert default.early_stopping and default.max_sweeps == 2
    assert default.max_scale == pytest.approx(0.25)  # trust_scale caps the candidate reach
    assert SearchConfig(early_stopping=False).max_scale == pytest.approx(0.9)  # the full search is unchanged
    assert SearchConfig(trust_scale=None).max_scale == pytest.approx(0.9)
    with pytest.raises(ValueError, match="trust_scale"):
        SearchConfig(trust_scale=1.5)

    objective = closed_form_objective(1.0, 1)
    start = karras_schedule(SIGMA_MIN, SIGMA_MAX, 10)
    one = coordinate_search(start, objective, config=SearchConfig(max_sweeps=1))
    log_s, log_new = torch.log(start), torch.log(one.sigmas)
    for i in range(1, 10, 2):  # odd points move first, against the start's neighbours
        reach = 0.25 * max(log_s[i - 1] - log_s[i], log_s[i] - log_s[i + 1])
        assert abs(float(log_new[i] - log_s[i])) <= float(reach) + 1e-12
    assert one.history[-1] < one.history[0]
    # the trust region keeps the default result near the start; the unconstrained search goes further
    free = coordinate_search(start, objective, config=SearchConfig(max_sweeps=2, trust_scale=None))
    trusted = coordinate_search(start, objective)
    drift = lambda r: float(torch.abs(torch.log(r.sigmas) - log_s).max())  # noqa: E731
    assert drift(trusted) < drift(free)
    assert trusted.history[-1] < trusted.history[0]


def test_progress_hook_is_called_and_cancel_hook_stops():
    seen = []
    coordinate_search(karras_schedule(SIGMA_MIN, SIGMA_MAX, 10), closed_form_objective(1.0, 1),
                      config=SearchConfig(max_sweeps=2, rel_tol=0.0), progress=seen.append)
    assert [p.sweep for p in seen] == [1, 1, 2, 2]
    assert all(p.steps == 10 and p.free_points == 9 for p in seen)
    assert seen[-1].objective <= seen[0].objective

    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(OptimizationCancelled):
        coordinate_search(karras_schedule(SIGMA_MIN, SIGMA_MAX, 10), closed_form_objective(1.0, 1), cancel=cancel)


def test_non_finite_candidates_never_win_and_a_non_finite_start_is_an_error():
    exact = closed_form_objective(1.0, 1)

    def broken(t_lo, t_up):  # e.g. a model that overflows at some noise levels
        out = exact(t_lo, t_up).clone()
        bad = lambda t: (t > 0.3) & (t < 0.45)  # noqa: E731
        out[bad(t_lo) | bad(t_up)] = math.nan
        return out

    start = torch.tensor([14.6, 2.0, 0.6, 0.2, 0.0292], dtype=torch.float64)
    result = coordinate_search(start, broken, config=SearchConfig(max_sweeps=1))
    assert torch.isfinite(result.interval_values).all()
    assert not bool(((result.sigmas > 0.3) & (result.sigmas < 0.45)).any())  # never moved into the NaN region
    assert result.sigmas[2] != start[2]  # a point with some NaN candidates still moves to its best finite one
    assert result.history[-1] < result.history[0]
    with pytest.raises(ValueError, match="not finite"):
        coordinate_search(torch.tensor([14.6, 0.4, 0.0292], dtype=torch.float64), broken)


def test_subdivision_keeps_old_points_fixed_and_only_optimises_new_ones():
    sig, new = subdivide(torch.tensor([8.0, 2.0, 0.5]))
    torch.testing.assert_close(sig, torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5], dtype=torch.float64))
    assert new.tolist() == [False, True, False, True, False]

    result = optimize_schedule(closed_form_objective(1.0, 1), karras_schedule(SIGMA_MIN, SIGMA_MAX, 10),
                               subdivisions=2, config=SearchConfig(max_sweeps=20))
    assert sorted(result.sigmas) == [10, 20, 40]
    assert torch.equal(result.sigmas[20][0::2], result.sigmas[10])
    assert torch.equal(result.sigmas[40][0::2], result.sigmas[20])
    for steps in (20, 40):
        s = result.sigmas[steps]
        assert torch.all(s[1:] < s[:-1])
        history = result.history[steps]
        assert history[-1] < history[0]  # the new points moved and improved the objective
        assert all(b <= a for a, b in pairwise(history))
    # more steps, smaller bound
    assert result.history[40][-1] < result.history[20][-1] < result.history[10][-1]


def test_interpolating_a_40_step_schedule_to_40_gives_it_back():
    result = optimize_schedule(closed_form_objective(1.0, 1), karras_schedule(SIGMA_MIN, SIGMA_MAX, 10),
                               subdivisions=2, config=SearchConfig(max_sweeps=3))
    s40 = result.sigmas[40]
    torch.testing.assert_close(interpolate_schedule(s40, 40), s40, rtol=1e-12, atol=0)
    s10 = interpolate_schedule(s40, 10)
    assert s10.numel() == 11
    torch.testing.assert_close(s10, s40[0::4], rtol=1e-12, atol=0)  # 40 -> 10 hits every 4th point
    s17 = interpolate_schedule(s40, 17)
    assert s17.numel() == 18 and torch.all(s17[1:] < s17[:-1])


def test_initial_schedules():
    k = karras_schedule(0.002, 80.0, 10)
    assert k.numel() == 11 and k[0] == 80.0 and k[-1] == 0.002 and torch.all(k[1:] < k[:-1])
    table = torch.exp(torch.linspace(math.log(0.03), math.log(14.6), 1000, dtype=torch.float64))
    tu = time_uniform_schedule(table, 10)
    assert tu[0] == pytest.approx(14.6) and tu[-1] == pytest.approx(0.03)
    torch.testing.assert_close(torch.diff(torch.log(tu)), torch.full((10,), -math.log(14.6 / 0.03) / 10,
                                                                     dtype=torch.float64))
    with pytest.raises(ValueError, match="decreasing"):
        coordinate_search(torch.tensor([1.0, 2.0, 0.5]), closed_form_objective(1.0, 1))


@pytest.mark.parametrize("model", ["gmm-eps", "digits"])
def test_optimising_a_builtin_model_lowers_its_klub(model):
    from schedules.optimize import builtin_problem

    denoiser, data, initial, identity = builtin_problem(model)
    objective = KLUBObjective(denoiser, KLUBSamples.draw(data, 32, torch.Generator().manual_seed(0)))
    result = coordinate_search(initial, objective, config=SearchConfig(max_sweeps=2, rel_tol=0.0))
    assert identity["builtin"] == model
    assert initial.numel() == 11 and float(initial[0]) == pytest.approx(14.6146, rel=1e-4)
    assert result.history[-1] < result.history[0]
    assert objective.nfe > 0


def test_command_writes_a_valid_preset(tmp_path):
    from schedules.optimize import main

    out = tmp_path / "gmm flow.json"
    assert main(["--model", "gmm-flow", "--out", str(out), "--samples", "16", "--max-sweeps", "1",
                 "--steps", "20", "--refine-samples", "32"]) == 0
    preset = load_preset(out)
    refine = preset.conditioning["solver_refinement"]
    assert refine["samples"] == 32 and refine["score_history"][0] == 0.0 and refine["score_history"][-1] <= 0.0
    assert preset.sigmas[20][0::2] == pytest.approx(preset.sigmas[10], rel=1e-9)  # 20 steps: only new points move
    assert preset.name == "gmm flow"
    assert preset.steps == [10, 20]
    assert preset.model["builtin"] == "gmm-flow"
    assert preset.sigmas[10][0] == 1.0 and all(0 < s < 1 for s in preset.sigmas[10][1:])  # flow times
    assert len(preset.klub_history[10]) == 2
    plain = tmp_path / "plain.json"
    assert main(["--model", "gmm-eps", "--out", str(plain), "--samples", "16", "--max-sweeps", "1",
                 "--no-refine"]) == 0
    assert load_preset(plain).conditioning["solver_refinement"] is None


@pytest.mark.parametrize("args, problem", [
    (["--refine-samples", "0"], "--refine-samples must be at least 1"),
    (["--samples", "0"], "--samples must be at least 1"),
    (["--rel-tol", "nan"], "--rel-tol must be a finite number"),
    (["--name", "SD1"], "taken by a built-in AYS preset"),
])
def test_command_rejects_bad_arguments_before_any_work(tmp_path, capsys, args, problem):
    from schedules.optimize import main

    out = tmp_path / "p.json"
    with pytest.raises(SystemExit):
        main(["--model", "gmm-eps", "--out", str(out), *args])
    assert problem in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["--model", "gmm-eps", "--out", str(tmp_path / "auto.json")])  # the name defaults to the file name


# --------------------------------------------------------------------------------------------- presets


def make_preset(name: str = "My model") -> AYSPreset:
    s40 = karras_schedule(SIGMA_MIN, SIGMA_MAX, 40)
    return AYSPreset(
        name=name,
        model={"kind": "test", "sampling": "eps"},
        conditioning={"positive": "a cat"},
        sigmas={10: s40[0::4].tolist(), 20: s40[0::2].tolist(), 40: s40.tolist()},
        klub_history={10: [3.0, 2.0], 40: [1.0]},
    )


def test_preset_round_trip(tmp_path):
    preset = make_preset()
    path = save_preset(tmp_path, preset)
    assert path.name == "My_model.json"
    loaded = load_preset(path)
    assert loaded.name == preset.name and loaded.model == preset.model
    assert loaded.sigmas == preset.sigmas and loaded.klub_history == preset.klub_history
    assert loaded.created == preset.created and loaded.source == str(path)
    assert b"pickle" not in path.read_bytes() and json.loads(path.read_text())["version"] == 1


def test_preset_sigmas_use_exact_step_counts_or_interpolate_the_finest():
    preset = make_preset()
    ten = preset_sigmas(preset, 10)
    assert ten.dtype == torch.float32 and ten.numel() == 11 and ten[-1] == 0
    torch.testing.assert_close(ten[:-1], torch.tensor(preset.sigmas[10][:-1], dtype=torch.float32))
    s15 = preset_sigmas(preset, 15)
    expected = interpolate_schedule(torch.tensor(preset.sigmas[40]), 15).to(torch.float32)
    torch.testing.assert_close(s15[:-1], expected[:-1])
    assert preset_sigmas(preset, 20, 0.5).numel() == 11
    assert preset_sigmas(preset, 20, 0.0).numel() == 0


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace('"version": 1', '"version": 7'), "newer"),
        (lambda text: text.replace('"format"', '"formt"'), "missing field"),
        (lambda text: text.replace('"name": "My model"', '"name": "My model", "colour": 1'), "unknown field"),
        (lambda text: text.replace("14.614642", "NaN", 1), "not valid JSON"),
        (lambda text: text.replace("14.614642", '"big"', 1), "not a number"),
        (lambda text: text.replace("14.614642", "0.001", 1), "not strictly decreasing"),
        (lambda text: text.replace('"10": [', '"10": [20.0, ', 1), "need 11"),
        (lambda text: text.replace('"created": "', '"created": "yesterday '), "ISO 8601"),
        (lambda text: text.replace('"name": "My model"', '"name": "My model", "name": "x"'), "twice"),
        (lambda text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (lambda text: text.replace("14.614642", "1e300", 1), "outside float32's range"),
    ],
)
def test_corrupt_or_hand_edited_preset_raises_a_clear_error(tmp_path, edit, problem):
    path = save_preset(tmp_path, make_preset())
    path.write_text(edit(path.read_text()))
    with pytest.raises(PresetError) as info:
        load_preset(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_preset_files_that_are_not_regular_files_are_refused_without_reading_them(tmp_path):
    """A FIFO would block the reader (and the server's node list) until someone writes to it; a device such as
    /dev/zero would never end. Both are refused by their file type, before any read."""
    import contextlib
    import os
    import threading
    import time

    save_preset(tmp_path, make_preset("good one"))
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "digits.json").write_text('{"format": ' + "1" * 5000 + "}")

    done = threading.Event()

    def unblock() -> None:  # a reader stuck on the FIFO is released, so that the test fails instead of hanging
        if not done.wait(10):
            with contextlib.suppress(OSError):
                os.close(os.open(tmp_path / "pipe.json", os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    t0 = time.perf_counter()
    presets, warnings = list_presets(tmp_path)
    done.set()
    assert time.perf_counter() - t0 < 5
    assert [p.name for p in presets] == ["good one"]
    text = "\n".join(warnings)
    assert "pipe.json" in text and "zero.json" in text and text.count("is not a regular file") == 2
    assert "digits.json" in text and "a number has too many digits" in text
    for name in ("pipe.json", "zero.json"):
        with pytest.raises(PresetError, match="is not a regular file"):
            load_preset(tmp_path / name)


def test_list_presets_skips_bad_files_with_warnings(tmp_path):
    save_preset(tmp_path, make_preset("good one"))
    save_preset(tmp_path, make_preset("another"))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    presets, warnings = list_presets(tmp_path)
    assert [p.name for p in presets] == ["another", "good one"]
    assert len(warnings) == 3
    assert all("skipped" in w for w in warnings)
    assert any("broken.json" in w for w in warnings) and any("list.json" in w for w in warnings)
    assert list_presets(tmp_path / "missing") == ([], [])


def test_preset_whose_sigmas_collapse_in_float32_is_refused(tmp_path):
    """Two values 1e-9 apart are distinct in the file (float64) but one value in SIGMAS (float32): a zero-length
    step. Validation checks what ComfyUI will see."""
    path = save_preset(tmp_path, make_preset())
    data = json.loads(path.read_text())
    s10 = data["sigmas"]["10"]
    s10[5] = s10[4] * (1 - 1e-9)
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match="not strictly decreasing in float32"):
        load_preset(path)
