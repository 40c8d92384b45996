"""Latent dtypes and devices: fp16 / bf16 are sampled in float32 and returned in their own dtype.

Runs on the CPU always and on CUDA when this machine has it (then also: no host syncs per step).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from sampler_core.loop import sample_plan
from sampler_core.models.gmm import GaussianMixture

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PLANS = ["euler", "dpmpp_2m_sde", "uni_pc", "usf", "30% dpmpp_sde\n30% euler_ancestral\n* dpmpp_3m_sde eta=0"]
GMM = GaussianMixture.for_latent((4, 8, 8), n_components=3, seed=4)


class Spy:
    def __init__(self, device):
        self.gmm = GMM.to(device)
        self.dtypes: set[torch.dtype] = set()

    def __call__(self, x, sigma, **extra):
        self.dtypes.add(x.dtype)
        return self.gmm.denoise(x, sigma).to(x.dtype)


def _inputs(device, dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn((2, 4, 8, 8), generator=g) * 14.6).to(device=device, dtype=dtype)
    ramp = torch.linspace(0, 1, 7)
    s = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    return x, torch.cat([s, s.new_zeros(1)]).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("plan", PLANS)
def test_half_latents_run_in_float32_and_come_back_in_their_dtype(plan, dtype, device):
    x, sigmas = _inputs(device, dtype)
    spy = Spy(device)
    out = sample_plan(spy, x, sigmas, {"seed": 5}, plan=plan)
    assert out.dtype == dtype and out.device == x.device
    assert spy.dtypes == {torch.float32}
    assert torch.isfinite(out.float()).all()
    # identical to a float32 run from the same (rounded) latent, rounded at the end
    ref = sample_plan(Spy(device), x.float(), sigmas, {"seed": 5}, plan=plan)
    assert torch.equal(out, ref.to(dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_float64_latents_stay_float64(device):
    x, sigmas = _inputs(device, torch.float64)
    spy = Spy(device)
    out = sample_plan(spy, x, sigmas, plan="usf")
    assert out.dtype == torch.float64 and spy.dtypes == {torch.float64}


@pytest.mark.parametrize("device", DEVICES)
def test_input_latent_and_sigmas_are_not_modified(device):
    x, sigmas = _inputs(device)
    x0, s0 = x.clone(), sigmas.clone()
    for plan in PLANS:
        sample_plan(Spy(device), x, sigmas, {"seed": 1}, plan=plan)
    assert torch.equal(x, x0) and torch.equal(sigmas, s0)


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"] or ["cpu"])
@pytest.mark.parametrize("plan", ["euler", "dpmpp_2m", "uni_pc", "usf", "heun", "euler_ancestral", "lms", "deis",
                                  "dpmpp_2m_sde", "dpmpp_sde"])
def test_the_loop_does_not_synchronise_with_the_device(plan, device):
    """At most the one sigmas.tolist() up front (on CPU this only checks the run completes)."""
    x, sigmas = _inputs(device)

    def model(x, sigma, **extra):  # exact denoiser of N(0, I) data: no host syncs of its own
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    if device == "cpu":
        assert torch.isfinite(sample_plan(model, x, sigmas, {"seed": 1}, plan=plan)).all()
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = sample_plan(model, x, sigmas, {"seed": 1}, plan=plan)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "called a synchronizing" in str(w.message)]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]
    assert torch.isfinite(out).all()
