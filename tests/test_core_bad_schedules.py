"""The solver core refuses schedules and options it cannot run with a message naming the problem (never NaN)."""

from __future__ import annotations

import math

import pytest
import torch

from sampler_core.loop import plan_nfe, sample_plan
from sampler_core.models.gmm import GaussianMixture

GMM = GaussianMixture.for_latent((4, 8, 8), n_components=4, seed=2)


def model_for(kind: str):
    den = GMM.denoise if kind == "eps" else GMM.denoise_flow
    return lambda x, sigma, **extra: den(x, sigma).to(x.dtype)


def noise(kind: str, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    return x * (14.6 if kind == "eps" else 1.0) * scale


@pytest.mark.parametrize("sigmas, match", [
    ([14.6, 7.9, 4.0, 1.9, 0.83, 0.0], "flow model .* starts at sigma 14.6 > 1"),
    ([1.0, 0.5, float("nan"), 0.0], r"sigmas\[2\] is nan"),
    ([1.0, 0.5, 0.5, 0.0], "strictly decreasing"),
    ([1.0, 0.2, 0.4, 0.0], "strictly decreasing"),
    ([1.0, 0.5, -0.1], "negative"),
])
@pytest.mark.parametrize("method", ["euler", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2s_ancestral"])
def test_a_schedule_no_solver_can_run_is_rejected_before_any_model_call(sigmas, match, method):
    calls = []

    def model(x, sigma, **extra):
        calls.append(1)
        return GMM.denoise_flow(x, sigma).to(x.dtype)

    with pytest.raises(ValueError, match=match):
        sample_plan(model, noise("flow"), torch.tensor(sigmas), {"seed": 0}, plan=method, model_kind="flow")
    with pytest.raises(ValueError, match=match):
        plan_nfe(method, torch.tensor(sigmas), model_kind="flow")
    assert not calls


def test_eps_models_take_large_sigmas_and_flow_models_their_full_range():
    eps = sample_plan(model_for("eps"), noise("eps", 1000 / 14.6), torch.tensor([1000.0, 14.6, 1.0, 0.0]),
                      {"seed": 0}, plan="dpmpp_2m", model_kind="eps")
    flow = sample_plan(model_for("flow"), noise("flow"), torch.tensor([1.0, 0.6, 0.2, 0.0]), {"seed": 0},
                       plan="dpmpp_2m_sde", model_kind="flow")
    assert torch.isfinite(eps).all() and torch.isfinite(flow).all()


@pytest.mark.parametrize("method", ["dpm_2_ancestral", "dpmpp_2s_ancestral"])
def test_flow_ancestral_eta_that_would_step_below_zero_names_the_largest_valid_eta(method):
    sig = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    # sigma 0.5 -> 0.25: sigma_down = 0.25 (1 - 0.5 eta) < 0 for eta > 2
    with pytest.raises(ValueError, match=rf"{method}: eta=3 is too large .* eta <= 2"):
        sample_plan(model_for("flow"), noise("flow"), sig, {"seed": 0}, plan=f"{method} eta=3", model_kind="flow")
    for eta in (0.0, 1.0, 1.2, 1.9):  # valid on every step of this schedule: finite
        x = sample_plan(model_for("flow"), noise("flow"), sig, {"seed": 0}, plan=f"{method} eta={eta}",
                        model_kind="flow")
        assert torch.isfinite(x).all(), eta


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("method", ["uni_pc", "uni_pc_bh2"])
def test_unipc_last_step_from_below_its_final_sigma_denoises_instead_of_nan(kind, method):
    """ComfyUI's UniPC stops its last step at sigma 0.001; from a sigma already below that it denoises."""
    x = noise(kind, 1e-6 / (14.6 if kind == "eps" else 1.0))
    sig = torch.tensor([1e-6, 0.0])
    out = sample_plan(model_for(kind), x.clone(), sig, {"seed": 0}, plan=method, model_kind=kind)
    den = model_for(kind)(x, sig[:1].expand(x.shape[0]))
    assert torch.isfinite(out).all()
    assert math.isclose(float((out - den).abs().max()), 0.0, abs_tol=1e-6)


@pytest.mark.parametrize("method", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_sde_first_step_offset_above_the_next_flow_sigma_is_a_clear_error(method):
    """ComfyUI's SDE samplers start a flow model's first step from sigma 1 at 1 - 1e-4; a schedule whose second
    sigma is above that would run upward (NaN, or a bare math domain error): refused before any model call."""
    calls = []
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    sig = torch.tensor([1.0, 0.99999, 0.5, 0.0])
    with pytest.raises(ValueError, match="next sigma 0.99999 is not below"):
        sample_plan(lambda x, s, **_: calls.append(1) or 0.5 * x, x, sig, plan=method, model_kind="flow",
                    extra_args={"seed": 1})
    assert calls == []
    assert plan_nfe([(method, {})] * 3, [1.0, 0.9, 0.5, 0.0], model_kind="flow") > 0  # a usual schedule runs


@pytest.mark.parametrize("opts, problem", [({"deriv": "Full"}, "deriv"), ({"corrector": "UniC"}, "corrector"),
                                           ({"pred": "Noise", "eta": 1.0}, "pred"), ({"order": 7}, "order"),
                                           ({"eta": -1.0}, "eta"), ({"order": 2.5}, "order")])
def test_per_step_list_plans_check_option_values_as_plan_text_does(opts, problem):
    """The Python API's per-step list form: a value the plan text would refuse is refused (before, 'Full' silently
    ran 'low', order 7 ran order 3, eta -1 divided by zero)."""
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=f"bad value .* for option '{problem}'"):
        sample_plan(lambda x, s, **_: 0.5 * x, x, torch.tensor([14.6, 3.0, 1.0, 0.3, 0.0]),
                    plan=[("usf", opts)] * 4, model_kind="eps")


def test_a_step_below_the_brownian_trees_resolution_is_a_clear_error():
    """usf eta=1 draws Brownian-tree noise; a step of 1e-7 in sigma lies below the tree's float32 resolution
    (torchsde recursed until RecursionError): a clear error naming the step."""
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="below the noise tree's resolution"):
        sample_plan(lambda x, s, **_: 0.5 * x, x, torch.tensor([1.0, 1.0 - 1e-7, 0.5, 0.0]), {"seed": 1},
                    plan="usf eta=1", model_kind="flow")


def test_per_step_list_plans_take_numpy_numbers():
    import numpy as np

    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    sig = torch.tensor([14.6, 3.0, 1.0, 0.3, 0.0])
    model = lambda x, s, **_: 0.5 * x  # noqa: E731
    a = sample_plan(model, x.clone(), sig, plan=[("usf", {"order": np.int64(2), "eta": np.float32(0.0)})] * 4)
    b = sample_plan(model, x.clone(), sig, plan=[("usf", {"order": 2, "eta": 0.0})] * 4)
    assert torch.equal(a, b)
