"""Measured order of accuracy of the step methods on an analytic model (exact Gaussian-mixture denoiser).

The error of a run (max abs, float64) against a tight DOP853 solution of the probability-flow ODE
dx/dsigma = (x - D(x, sigma))/sigma is fitted against the step count N = 8..64:
slope of -log(error) vs log N = the method's order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sampler_core.loop import sample_plan
from sampler_core.models.gmm import GaussianMixture

NS = (8, 16, 32, 64)
GMM = GaussianMixture.for_latent((2, 4, 4), n_components=3, seed=3)
RANGES = {"eps": (20.0, 0.2), "flow": (0.98, 0.1)}


_MU = GMM.means.reshape(GMM.means.shape[0], -1)  # [K, D]
_S2 = GMM.stds**2
_LOGPI = GMM.weights.log()


def _exact_denoiser(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E[x0 | a x0 + b eps = x] of the mixture (float64, softmax written out: tiny tensors, no thread pool)."""
    xb = x.reshape(x.shape[0], -1)
    a, b = a.reshape(-1, 1), b.reshape(-1, 1)
    var = a**2 * _S2 + b**2  # [B, K]
    d2 = (xb**2).sum(1, keepdim=True) - 2 * a * (xb @ _MU.T) + a**2 * (_MU**2).sum(1)
    logits = _LOGPI - 0.5 * d2 / var - 0.5 * xb.shape[1] * var.log()
    w = (logits - logits.max(1, keepdim=True).values).exp()
    w = w / w.sum(1, keepdim=True)
    gain = a * _S2 / var
    return ((w * (1 - a * gain)) @ _MU + (w * gain).sum(1, keepdim=True) * xb).reshape(x.shape)


def _denoise(kind: str):
    def den(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0])
        return _exact_denoiser(x, torch.ones_like(s) if kind == "eps" else 1 - s, s)

    return den


def _schedule(kind: str, n: int) -> torch.Tensor:
    """n steps uniform in the model's half-log-SNR (log sigma for eps), ending above 0."""
    hi, lo = RANGES[kind]
    if kind == "eps":
        return torch.exp(torch.linspace(math.log(hi), math.log(lo), n + 1, dtype=torch.float64))
    lam = torch.linspace(math.log((1 - hi) / hi), math.log((1 - lo) / lo), n + 1, dtype=torch.float64)
    return torch.sigmoid(-lam)


_CASES: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _case(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x at sigma_max, exact ODE solution at sigma_min)."""
    if kind not in _CASES:
        hi, lo = RANGES[kind]
        g = torch.Generator().manual_seed(1)
        x0 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64) * (hi if kind == "eps" else 1.0)
        den = _denoise(kind)

        def rhs(s, y):
            x = torch.from_numpy(y).reshape(x0.shape)
            return ((x - den(x, torch.full((2,), s, dtype=torch.float64))) / s).flatten().numpy()

        sol = solve_ivp(rhs, (hi, lo), x0.flatten().numpy(), method="DOP853", rtol=1e-11, atol=1e-11)
        assert sol.success
        _CASES[kind] = (x0, torch.from_numpy(sol.y[:, -1]).reshape(x0.shape))
    return _CASES[kind]


def measured_order(plan: str, kind: str) -> tuple[float, list[float]]:
    x0, ref = _case(kind)
    den = _denoise(kind)
    errs = []
    for n in NS:
        y = sample_plan(lambda x, s, **_: den(x, s), x0, _schedule(kind, n), plan=plan, model_kind=kind)
        errs.append(float((y - ref).abs().max()))
    slope = -np.polyfit(np.log(NS), np.log(errs), 1)[0]
    return float(slope), errs


@pytest.mark.parametrize(
    "plan, lo, hi",
    [
        ("euler", 0.75, 1.25),
        ("heun", 1.7, 2.3),
        ("dpm_2", 1.7, 2.3),
        ("dpmpp_2m", 1.7, 2.3),
        ("uni_pc", 1.7, 2.3),
        ("usf order=3 corrector=none", 2.6, 4.5),
        ("usf order=3 corrector=unic", 2.6, 4.5),
        ("usf order=3 pred=noise corrector=none", 2.6, 4.5),
    ],
)
def test_measured_order_on_eps_gmm(plan, lo, hi):
    slope, errs = measured_order(plan, "eps")
    assert lo <= slope <= hi, f"{plan}: measured order {slope:.2f}, errors {errs}"
    assert errs[-1] < errs[0]


@pytest.mark.parametrize(
    "plan, lo, hi",
    [
        ("euler", 0.75, 1.25),
        ("heun", 1.7, 2.3),
        ("usf order=2 corrector=none", 1.7, 2.3),
        ("usf order=3 corrector=none", 2.6, 4.5),
        ("usf order=3 corrector=unic", 2.6, 5.0),
    ],
)
def test_measured_order_on_flow_gmm(plan, lo, hi):
    slope, errs = measured_order(plan, "flow")
    assert lo <= slope <= hi, f"{plan}: measured order {slope:.2f}, errors {errs}"


def test_unic_corrector_lowers_the_error_at_no_extra_cost():
    _, plain = measured_order("usf order=2 corrector=none", "eps")
    _, corrected = measured_order("usf order=2 corrector=unic", "eps")
    assert all(c < p for c, p in zip(corrected, plain, strict=True))


def test_written_out_denoiser_is_the_builtin_gmm():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 3
    s = torch.tensor([2.5, 0.3], dtype=torch.float64)
    assert torch.allclose(_denoise("eps")(x, s), GMM.denoise(x, s), atol=1e-12)
    assert torch.allclose(_denoise("flow")(x / 3, s / 3), GMM.denoise_flow(x / 3, s / 3), atol=1e-12)


def test_usf_is_exact_on_flow_where_t_minus_log_sigma_methods_are_not():
    """Same NFE on a flow model: usf (true lambda) beats ComfyUI's dpmpp_2m (lambda = -log sigma) at order 2."""
    _, usf = measured_order("usf order=2 corrector=none", "flow")
    _, dpm = measured_order("dpmpp_2m", "flow")
    assert usf[-1] < dpm[-1]


def _error(plan: str, kind: str, n: int) -> float:
    x0, ref = _case(kind)
    den = _denoise(kind)
    y = sample_plan(lambda x, s, **_: den(x, s), x0, _schedule(kind, n), plan=plan, model_kind=kind)
    return float((y - ref).abs().max())


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_usf_order_1_is_the_ddim_euler_step_for_both_predictions(kind):
    euler = _error("euler", kind, 16)
    for pred in ("data", "noise"):
        assert _error(f"usf order=1 pred={pred} corrector=none", kind, 16) == pytest.approx(euler, rel=1e-6)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_every_higher_order_usf_strategy_beats_euler(kind):
    euler = _error("euler", kind, 16)
    for order in (2, 3):
        for pred in ("data", "noise"):
            for deriv in ("full", "low"):
                for corrector in ("none", "unic"):
                    plan = f"usf order={order} pred={pred} deriv={deriv} corrector={corrector}"
                    err = _error(plan, kind, 16)
                    assert err < euler / 4, f"{plan}: error {err:.2e} vs euler {euler:.2e}"


# ---- flow model from sigma = 1 (lambda = -inf) to sigma = 0, as ComfyUI's beta / simple schedules on flow models


def _flow_full_schedule(n: int, shape: str = "cosine") -> torch.Tensor:
    """n steps 1 -> 0. cosine: s = (1 + cos(pi u)) / 2, clustered at both ends like ComfyUI's beta schedule.
    lambda: 1, then n - 2 uniform steps in lambda over [-L, L] with L = 2 log n (so every step shrinks as n
    grows and the first step's error from s = 1 is O(e^(-2L))), then 0."""
    if shape == "cosine":
        u = torch.arange(n + 1, dtype=torch.float64) / n
        s = 0.5 * (1.0 + torch.cos(math.pi * u))
    elif shape == "fixed_first":  # ComfyUI's shifted flow schedules: the first step 1 -> 0.969 whatever n is
        s = torch.cat([torch.ones(1, dtype=torch.float64),
                       torch.sigmoid(-torch.linspace(math.log(0.031 / 0.969), 4.0, n - 1, dtype=torch.float64)),
                       torch.zeros(1, dtype=torch.float64)])
    else:
        big_l = 2.0 * math.log(n)
        s = torch.cat([torch.ones(1, dtype=torch.float64),
                       torch.sigmoid(-torch.linspace(-big_l, big_l, n - 1, dtype=torch.float64)),
                       torch.zeros(1, dtype=torch.float64)])
    s[0], s[-1] = 1.0, 0.0
    return s


def _flow_full_error(plan: str, n: int, shape: str = "cosine", batch: int = 4) -> float:
    """Max abs error against D(x*(s_last), s_last), x* the DOP853 solution from pure noise at s = 1."""
    sig = _flow_full_schedule(n, shape)
    s_last = float(sig[-2])
    g = torch.Generator().manual_seed(11)
    x1 = torch.randn(batch, 2, 4, 4, generator=g, dtype=torch.float64)
    den = _denoise("flow")
    key = ("flow-full", n, shape, batch)
    if key not in _CASES:
        def rhs(s, y):
            x = torch.from_numpy(y).reshape(x1.shape)
            return ((x - den(x, torch.full((batch,), s, dtype=torch.float64))) / s).flatten().numpy()

        sol = solve_ivp(rhs, (1.0, s_last), x1.flatten().numpy(), method="DOP853", rtol=1e-10, atol=1e-10)
        assert sol.success
        xs = torch.from_numpy(sol.y[:, -1]).reshape(x1.shape)
        _CASES[key] = (x1, den(xs, torch.full((batch,), s_last, dtype=torch.float64)))
    _, ref = _CASES[key]
    y = sample_plan(lambda x, s, **_: den(x, s), x1.clone(), sig, plan=plan, model_kind="flow")
    return float((y - ref).abs().max())


def test_unic_corrector_helps_on_flow_from_sigma_1_to_0():
    """UniC on a flow model over the whole range 1 -> 0 (first step from lambda = -inf, last to lambda = +inf):
    the corrected run is more accurate than the uncorrected one at the same NFE, for order 2 and 3."""
    for order in (2, 3):
        for n in (24, 48):
            corrected = _flow_full_error(f"usf order={order} corrector=unic", n)
            plain = _flow_full_error(f"usf order={order} corrector=none", n)
            assert corrected < plain, f"order {order}, {n} steps: unic {corrected:.2e} vs none {plain:.2e}"


@pytest.mark.parametrize("plan, lo", [("usf order=3 corrector=unic", 2.5), ("usf order=3 corrector=none", 1.9),
                                      ("usf order=2 corrector=unic", 2.0), ("usf order=2 corrector=none", 1.6)])
def test_measured_order_on_flow_from_sigma_1_to_0(plan, lo):
    ns = (12, 24, 48)
    errs = [_flow_full_error(plan, n, "lambda") for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert slope >= lo, f"{plan}: measured order {slope:.2f}, errors {errs}"


def test_usf_converges_when_the_first_step_from_sigma_1_does_not_shrink():
    """A step from flow sigma 1 (lambda = -inf) is first order; its UniC correction (D linear in sigma there)
    makes it second order. With the first step fixed at 1 -> 0.969 (ComfyUI's shifted schedules) the error then
    keeps falling as steps are added instead of stopping at that one step's error, as euler's does."""
    ns = (16, 32, 64)
    usf = [_flow_full_error("usf", n, "fixed_first") for n in ns]
    euler = [_flow_full_error("euler", n, "fixed_first") for n in ns]
    plain = [_flow_full_error("usf corrector=none", n, "fixed_first") for n in ns]
    assert usf[2] < usf[0] / 8, usf
    assert usf[2] < euler[2] / 20 and usf[2] < plain[2] / 4, (usf, euler, plain)


# ---- lower_order_final (short runs)


def _karras_to_zero(n: int, hi: float, lo: float) -> torch.Tensor:
    """Karras rho = 7: n - 1 steps hi -> lo, then the final step to 0 (ComfyUI's karras scheduler shape)."""
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (hi ** (1 / 7) + r * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def test_lower_order_final_caps_the_order_by_the_steps_left():
    from sampler_core.methods._base import Schedule
    from sampler_core.methods.usf import USF

    to_zero = Schedule([5.0, 2.0, 1.0, 0.5, 0.1, 0.0], "eps")  # 5 steps, the last is the final denoise
    assert [USF.final_order_cap(to_zero, i, "true") for i in range(5)] == [4, 3, 2, 1, 1]
    assert [USF.final_order_cap(to_zero, i, "auto") for i in range(5)] == [4, 3, 2, 1, 1]
    assert [USF.final_order_cap(to_zero, i, "false") for i in range(5)] == [3] * 5
    open_end = Schedule([5.0, 2.0, 1.0, 0.5], "eps")
    assert [USF.final_order_cap(open_end, i, "true") for i in range(3)] == [3, 2, 1]
    long = Schedule([float(v) for v in _karras_to_zero(12, 20.0, 0.2)], "eps")
    assert {USF.final_order_cap(long, i, "auto") for i in range(12)} == {3}  # auto: only below 10 steps
    assert USF.final_order_cap(long, 10, "true") == 1


def _karras_error(plan: str, n: int) -> float:
    """Max abs error of a karras run 20 -> 0.2 -> 0 vs D(x*(0.2), 0.2), x* the DOP853 solution."""
    x0, ref_x = _case("eps")
    den = _denoise("eps")
    ref = den(ref_x, torch.full((x0.shape[0],), 0.2, dtype=torch.float64))
    y = sample_plan(lambda x, s, **_: den(x, s), x0, _karras_to_zero(n, 20.0, 0.2), plan=plan, model_kind="eps")
    return float((y - ref).abs().max())


def test_lower_order_final_auto_is_on_below_10_steps_and_off_above():
    assert _karras_error("usf", 6) == _karras_error("usf lower_order_final=true", 6)
    assert _karras_error("usf", 6) != _karras_error("usf lower_order_final=false", 6)
    assert _karras_error("usf", 12) == _karras_error("usf lower_order_final=false", 12)
    assert _karras_error("usf", 12) != _karras_error("usf lower_order_final=true", 12)


@pytest.mark.parametrize("n", [5, 6, 7])
def test_lower_order_final_lowers_the_error_of_short_karras_runs(n):
    capped = _karras_error("usf lower_order_final=true", n)
    full = _karras_error("usf lower_order_final=false", n)
    assert capped < full, f"{n} steps: lower_order_final {capped:.3e} vs full order {full:.3e}"


@pytest.mark.parametrize("kind", ["gmm-eps", "digits"])
def test_unic_correction_of_the_last_step_reaches_the_final_sample(kind):
    """The last step to sigma 0 returns D, evaluated at the predicted point; the UniC correction of that point
    must still reach the output (D + the correction, eps held fixed), or the corrector's last evaluation is wasted:
    on the built-in models `* usf` (UniC) is then more accurate than `* usf corrector=none` at every step count
    (RMSE to a 200-step reference). Discarding it lost at 20 steps on gmm-eps and at 12 on digits."""
    from sampler_core import search as S

    den, problem, shape = S.builtin_model(kind)
    noise = torch.randn((64, *shape), generator=torch.Generator().manual_seed(11))
    x0 = S.start_latents(problem, noise)
    ref = S.reference_run(den, x0, problem, 200, {})
    for n in (8, 12, 20):
        sig = S.schedule_sigmas(problem, n, (0.5, 0.0, 0.5, 0.0) + (0.5,) * n)
        err = {}
        for corrector in ("unic", "none"):
            x = sample_plan(lambda x, s, **_: den(x, s), x0.clone(), sig, plan=[("usf", {"corrector": corrector})] * n,
                            model_kind="eps")
            err[corrector] = S.rmse(x, ref)
        assert err["unic"] < 0.9 * err["none"], f"{kind}, {n} steps: {err}"


@pytest.mark.parametrize("kind", ["gmm-eps", "digits"])
def test_a_last_step_after_a_corrector_keeps_the_correction_whatever_its_method(kind, monkeypatch):
    """`uni_pc` leaves a corrector for the next step; when that step goes to sigma 0 with another method (euler,
    dpmpp_2m, deis, usf: each returns D there), D at the corrected point (D + correction, eps held fixed) must
    reach the output: all four give the same sample, closer to the reference than D at the uncorrected point
    (what they returned before; reproduced here by declaring euler's last step its own, ``own_final_step``)."""
    from sampler_core import search as S
    from sampler_core.registry import METHODS

    den, problem, shape = S.builtin_model(kind)
    noise = torch.randn((64, *shape), generator=torch.Generator().manual_seed(11))
    x0 = S.start_latents(problem, noise)
    ref = S.reference_run(den, x0, problem, 200, {})
    model = lambda x, s, **_: den(x, s)  # noqa: E731

    def run(n: int, last: str) -> torch.Tensor:
        sig = S.schedule_sigmas(problem, n, (0.5, 0.0, 0.5, 0.0) + (0.5,) * n)
        return sample_plan(model, x0.clone(), sig, plan=[("uni_pc", {})] * (n - 1) + [(last, {})], model_kind="eps")

    for n in (10, 16):
        outs = [run(n, last) for last in ("euler", "dpmpp_2m", "deis", "usf")]
        for o in outs[1:]:
            assert torch.allclose(o, outs[0], atol=1e-6)
        with monkeypatch.context() as m:
            m.setattr(METHODS["euler"], "own_final_step", True)
            uncorrected = run(n, "euler")
        assert S.rmse(outs[0], ref) < 0.8 * S.rmse(uncorrected, ref), (kind, n)
