"""Switching methods within one run: eta, history across segments, one noise stream, callback and NFE."""

from __future__ import annotations

import math

import pytest
import torch

from sampler_core.loop import plan_nfe, resolve_steps, sample_plan
from sampler_core.models.gmm import GaussianMixture
from sampler_core.noise import default_noise_factory
from sampler_core.registry import METHODS

GMM = GaussianMixture.for_latent((4, 8, 8), n_components=4, seed=2)
N = 10


class Counting:
    """GMM denoiser as a k-diffusion model (eps or flow), counting its calls."""

    def __init__(self, kind: str = "eps"):
        self.kind = kind
        self.calls = 0

    def __call__(self, x, sigma, **extra):
        self.calls += 1
        den = GMM.denoise if self.kind == "eps" else GMM.denoise_flow
        return den(x, sigma).to(x.dtype)


def sigmas_for(kind: str, n: int = N, top: float = 1.0) -> torch.Tensor:
    if kind == "eps":
        ramp = torch.linspace(0, 1, n)
        s = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    else:
        s = torch.linspace(top, 0.0, n + 1)[:-1]
    return torch.cat([s, s.new_zeros(1)])


def start_noise(kind: str, seed: int = 0) -> torch.Tensor:
    x = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    return x * 14.6 if kind == "eps" else x


def run(plan, kind="eps", seed=42, top=1.0, **kw):
    model = Counting(kind)
    trace: list[dict] = []
    stats: dict = {}
    out = sample_plan(model, start_noise(kind), sigmas_for(kind, top=top), {"seed": seed}, trace.append, plan=plan,
                      model_kind=kind, stats=stats, **kw)
    return out, trace, stats, model.calls


STOCHASTIC = sorted(n for n, c in METHODS.items() if c.stochastic)


# ---------------------------------------------------------------------------------------------- eta = 0


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("method", STOCHASTIC)
def test_eta_zero_is_deterministic_and_eta_one_is_not(method, kind):
    a, *_ = run(f"{method} eta=0", kind, seed=1)
    b, *_ = run(f"{method} eta=0", kind, seed=2)
    assert torch.equal(a, b), "eta = 0 must not use noise"
    c, *_ = run(f"{method} eta=1", kind, seed=1)
    d, *_ = run(f"{method} eta=1", kind, seed=2)
    assert not torch.allclose(c, d), "eta = 1 must depend on the seed"


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("sde, ode", [("euler_ancestral", "euler"), ("dpm_2_ancestral", "dpm_2")])
def test_ancestral_with_eta_zero_is_exactly_the_ode_method(sde, ode, kind):
    a, *_ = run(f"{sde} eta=0", kind)
    b, *_ = run(ode, kind)
    assert torch.equal(a, b)


def test_dpmpp_2m_sde_with_eta_zero_is_dpmpp_2m():
    a, *_ = run("dpmpp_2m_sde eta=0")
    b, *_ = run("dpmpp_2m")
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_usf_order_2_is_the_dpmpp_2m_sde_heun_step_in_true_log_snr(kind, eta):
    """Same formula (2M, heun correction) and the same Brownian noise stream, on both model kinds.

    (Flow from sigma < 1: from sigma = 1 dpmpp_2m_sde starts at ComfyUI's offset sigma, usf exactly at 1.)
    """
    a, *_ = run(f"dpmpp_2m_sde solver_type=heun eta={eta}", kind, top=0.95)
    b, *_ = run(f"usf order=2 corrector=none eta={eta}", kind, top=0.95)
    assert torch.allclose(a, b, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------ segment boundaries


@pytest.mark.parametrize("first", ["heun", "euler", "dpmpp_2m_sde eta=1", "euler_ancestral"])
def test_dpmpp_2m_takes_its_first_step_after_a_boundary_at_second_order(first):
    k = 4
    _, trace, _, _ = run(f"{k} {first}\n* dpmpp_2m")
    sig = sigmas_for("eps").tolist()
    x_k, x_k1 = trace[k]["x"], trace[k + 1]["x"]
    d_prev, d_k = trace[k - 1]["denoised"], trace[k]["denoised"]
    h, h_last = math.log(sig[k] / sig[k + 1]), math.log(sig[k - 1] / sig[k])
    r = h_last / h
    second = (sig[k + 1] / sig[k]) * x_k - math.expm1(-h) * ((1 + 1 / (2 * r)) * d_k - d_prev / (2 * r))
    first_order = (sig[k + 1] / sig[k]) * x_k - math.expm1(-h) * d_k
    assert torch.allclose(x_k1, second, atol=1e-4, rtol=0)
    assert not torch.allclose(x_k1, first_order, atol=1e-2, rtol=0)


def test_two_ode_segments_equal_one_segment_run():
    """dpmpp_2m_sde (eta 0) then dpmpp_2m is the same solver: splitting it changes nothing."""
    a, *_ = run("40% dpmpp_2m_sde eta=0\n* dpmpp_2m")
    b, *_ = run("dpmpp_2m")
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sde, kind", [("dpmpp_2m_sde eta=1", "brownian"), ("euler_ancestral", "gaussian")])
def test_sde_then_ode_plan_uses_one_noise_stream(sde, kind):
    plan = f"40% {sde}\n* dpmpp_2m"
    a, trace_a, *_ = run(plan)
    b, *_ = run(plan)
    assert torch.equal(a, b), "same seed, same result"
    c, *_ = run(plan, seed=43)
    assert not torch.allclose(a, c)
    # the noise at the SDE steps is what a one-segment run of the SDE method draws
    _, trace_sde, *_ = run(sde)
    k = 4
    for i in range(k + 1):
        assert torch.equal(trace_a[i]["x"], trace_sde[i]["x"])


def test_noise_source_is_created_once_and_a_later_segment_sees_the_one_segment_noise():
    created = []
    drawn: dict[str, list] = {"multi": [], "single": []}
    base = default_noise_factory(1)

    def factory_for(tag):
        def factory(kind, x, sigmas, seed):
            created.append((tag, kind, seed))
            ns = base(kind, x, sigmas, seed)
            return lambda s, s1: drawn[tag].append(((s, s1), ns(s, s1))) or drawn[tag][-1][1]

        return factory

    run("3 dpmpp_2m_sde\n3 dpmpp_2m\n* dpmpp_2m_sde", noise_sampler_factory=factory_for("multi"))
    run("dpmpp_2m_sde", noise_sampler_factory=factory_for("single"))
    assert [c[0] for c in created] == ["multi", "single"], "one Brownian tree per run"
    single = dict(drawn["single"])
    assert len(drawn["multi"]) == N - 3 - 1  # SDE steps, none on the final denoising step
    for interval, z in drawn["multi"]:
        assert torch.equal(z, single[interval])


# ------------------------------------------------------------------------------------- callback and NFE

MIXED = "2 dpmpp_sde\n2 heun\n2 uni_pc\n1 dpm_2_ancestral\n1 usf\n* dpm_2"


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_callback_reports_every_global_step_once(kind):
    _, trace, stats, _ = run(MIXED, kind)
    assert [t["i"] for t in trace] == list(range(N))
    assert stats["steps"] == N
    sig = sigmas_for(kind)  # (on flow, step 0 reports dpmpp_sde's offset first sigma, as ComfyUI)
    assert all(float(t["sigma"]) == pytest.approx(float(sig[t["i"]]), abs=1e-3) for t in trace)


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("plan", [MIXED, "heun", "dpm_2", "dpmpp_sde", "dpmpp_2s_ancestral", "dpm_2_ancestral",
                                  "uni_pc", "usf", "60% heun\n* dpmpp_2m", "1 afs\n* usf", "1 afs\n* heun"])
def test_nfe_is_counted_exactly_and_predicted(plan, kind):
    _, _, stats, calls = run(plan, kind)
    assert stats["nfe"] == calls == plan_nfe(plan, sigmas_for(kind), model_kind=kind)


@pytest.mark.parametrize("method", ["heun", "dpm_2", "dpmpp_sde", "dpmpp_2s_ancestral", "dpm_2_ancestral"])
def test_two_evaluation_methods_do_not_waste_the_last_step(method):
    _, _, stats, calls = run(method)
    assert calls == stats["nfe"] == 2 * N - 1


def test_plan_text_and_resolved_list_give_the_same_run():
    text = "40% dpmpp_2m_sde eta=1\n* dpmpp_2m"
    a, *_ = run(text)
    b, *_ = run(resolve_steps(text, N))
    c, *_ = run([("dpmpp_2m_sde", {"eta": 1.0})] * 4 + [("dpmpp_2m", {})] * 6)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_bad_per_step_lists_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="euler"):
        run([("eulr", {})] * N)
    with pytest.raises(ValueError, match="eta"):
        run([("euler", {"eta": 1.0})] * N)
    with pytest.raises(ValueError, match="one entry per step"):
        run([("euler", {})] * (N - 1))
    with pytest.raises(ValueError, match="pred=data"):
        run("usf pred=noise eta=1")
    with pytest.raises(TypeError, match="unknown option"):
        run("euler", not_a_flag=1)


# ------------------------------------------------------------------------------ analytical first step


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_analytic_first_step_saves_one_call_and_is_ddim_with_zero_data_prediction(kind):
    plan = "1 afs corrector=none\n* dpmpp_2m"
    out, trace, stats, calls = run(plan, kind)
    assert calls == stats["nfe"] == N - 1 == plan_nfe(plan, sigmas_for(kind), model_kind=kind)
    sig = sigmas_for(kind)
    x1 = start_noise(kind) * (float(sig[1]) / float(sig[0]))  # D = 0: x' = (sigma'/sigma) x
    _, trace_euler, _, _ = run([("euler", {})] + [("dpmpp_2m", {})] * (N - 1), kind)
    assert torch.count_nonzero(trace[0]["denoised"]) == 0
    assert torch.allclose(trace[1]["x"], x1, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(trace[1]["x"], trace_euler[1]["x"])  # the real first evaluation differs
    assert torch.isfinite(out).all()


def test_analytic_first_step_is_close_to_the_exact_ode_at_high_noise():
    """From sigma 14.6 the zero-mean estimate costs little: the whole run stays near the 200-step solution."""
    ramp = torch.linspace(0, 1, 200)
    fine = torch.cat([(14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7, torch.zeros(1)])
    ref = sample_plan(Counting(), start_noise("eps"), fine, {"seed": 0}, plan="usf")
    sig = sigmas_for("eps")
    afs = sample_plan(Counting(), start_noise("eps"), sig, {"seed": 0}, plan="1 afs\n* usf")
    crude = sample_plan(Counting(), start_noise("eps"), sig[1:], {"seed": 0}, plan="usf")  # skip step 0 instead
    err = float((afs - ref).pow(2).mean().sqrt())
    assert err < 0.5 * float((crude - ref).pow(2).mean().sqrt())
    assert err < 0.1


@pytest.mark.parametrize("plan, match", [("2 afs\n* usf", "afs can only run on the first step"),
                                         ("1 usf\n1 afs\n* euler", "afs can only run on the first step"),
                                         ("afs", "first step"),
                                         ([("usf", {}), ("afs", {})] + [("euler", {})] * (N - 2), "step 2: afs")])
def test_analytic_first_step_anywhere_but_first_is_rejected(plan, match):
    """Plan text fails when parsed; a per-step list (what the search builds) when the run is resolved."""
    with pytest.raises(ValueError, match=match):
        plan_nfe(plan, sigmas_for("eps", 1 if plan == "afs" else N))


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_analytic_first_step_corrector_uses_the_next_evaluation(kind):
    """The corrected first step lands nearer the exact ODE solution at sigma_1 than x' = (sigma'/sigma) x.
    Flow models from s = 1: x' = s' x + (1 - s') D(x', s'); eps models: usf's UniC correction."""
    x = torch.randn((64, 4, 8, 8), generator=torch.Generator().manual_seed(5)) * (14.6 if kind == "eps" else 1.0)
    sig = torch.tensor([14.6, 3.0, 1.0, 0.3, 0.0]) if kind == "eps" else torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])
    if kind == "eps":
        fine = torch.exp(torch.linspace(math.log(14.6), math.log(3.0), 401))
    else:
        fine = torch.linspace(1.0, 0.8, 401)
    exact = sample_plan(Counting(kind), x, fine, {"seed": 0}, plan="usf", model_kind=kind)  # x at sigma_1
    err = {}
    for corr in ("unic", "none"):
        model = Counting(kind)
        trace: list[dict] = []
        sample_plan(model, x, sig, {"seed": 0}, trace.append, plan=f"1 afs pred=noise corrector={corr}\n* usf",
                    model_kind=kind)
        assert model.calls == len(sig) - 2
        err[corr] = float((trace[1]["x"] - exact).pow(2).mean().sqrt())  # step 1 sees the corrected x
    # flow: D(x, 1) carries no information about x, the corrected step takes it from D(x', s'): far better
    assert err["unic"] < (0.5 if kind == "flow" else 0.95) * err["none"], err
