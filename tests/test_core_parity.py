"""Parity: a one-method plan with default options == ComfyUI's built-in sampler of that name.

Both run through ComfyUI's own ``sample_custom`` on a real ComfyUI model (the built-in exact
Gaussian-mixture denoiser, epsilon and flow/CONST), same sigmas, noise and seed, float32;
tolerance 1e-4 (max abs). Run against every ComfyUI tree of the ``comfy_root`` fixture.
Our loop gets ComfyUI's differences either as its own noise samplers (``noise_sampler_factory``)
or as ``**compat`` flags with our own noise (both ways are tested).
"""

from __future__ import annotations

import importlib

import pytest
import torch

import comfy_env
from comfy_helpers import comfy_sampler, make_toy_model, model_sigmas, run_comfy_sampler
from sampler_core.loop import plan_nfe, sample_plan

TOL = 1e-4
# ComfyUI sampler name -> (our method, options that select the same variant)
PARITY = {
    "euler": ("euler", {}),
    "euler_ancestral": ("euler_ancestral", {}),
    "heun": ("heun", {}),
    "dpm_2": ("dpm_2", {}),
    "dpm_2_ancestral": ("dpm_2_ancestral", {}),
    "lms": ("lms", {}),
    "dpmpp_2s_ancestral": ("dpmpp_2s_ancestral", {}),
    "dpmpp_sde": ("dpmpp_sde", {}),
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "dpmpp_2m_sde_heun": ("dpmpp_2m_sde", {"solver_type": "heun"}),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", {}),
    "deis": ("deis", {}),
    "ipndm": ("ipndm", {}),
    "uni_pc": ("uni_pc", {}),
    "uni_pc_bh2": ("uni_pc_bh2", {}),
    "res_multistep": ("res_multistep", {}),
    "res_multistep_ancestral": ("res_multistep", {"eta": 1.0}),
    "ddim": ("ddim", {}),
    "lcm": ("lcm", {}),
}
FIRST = ("euler", "heun", "dpmpp_2m", "euler_ancestral")  # delivered first; also run with two step counts
SEED = 1234


def comfy_noise_factory(kind, x, sigmas, seed):
    """ComfyUI's own noise helpers, as the node layer passes them in."""
    import comfy.k_diffusion.sampling as kds

    if kind == "brownian":
        pos = sigmas[sigmas > 0]
        return kds.BrownianTreeNoiseSampler(x, pos.min(), sigmas.max(), seed=seed, cpu=True)
    return kds.default_noise_sampler(x, seed=seed)


def compat_for(model_patcher, comfy_version: str, own_noise: bool) -> dict:
    """The keyword flags the node layer derives from the model and the ComfyUI version."""
    import comfy.model_sampling

    ms = model_patcher.get_model_object("model_sampling")
    flow = isinstance(ms, comfy.model_sampling.CONST)
    out = {"model_kind": "flow" if flow else "eps"}
    if flow:
        out["flow_first_sigma"] = float(ms.percent_to_sigma(1e-4))
    if own_noise:
        major, minor = (int(v) for v in comfy_version.split(".")[:2])
        out["gaussian_cpu_seed_offset"] = 1 if (major, minor) >= (0, 4) else 0
    else:
        out["noise_sampler_factory"] = comfy_noise_factory
    return out


@pytest.fixture(scope="module", params=["gmm-eps", "gmm-flow"])
def toy(request, comfy_root):
    kind = request.param
    comfy_env.load_pack()
    importlib.import_module(comfy_env.PACK_MODULE + ".nodes.toy_model")
    mp = make_toy_model(kind)
    # flow: ComfyUI's "simple" schedule starts at sigma = 1 (exercises the RF / SNR special cases)
    scheduler = "simple" if kind == "gmm-flow" else "karras"
    return kind, mp, scheduler


class _CallCounter:
    """Counts the network evaluations of a toy model (one per denoiser call at cfg 1)."""

    def __init__(self, mp):
        self.net = mp.model.diffusion_model
        self.calls = 0

    def __enter__(self):
        inner = self.net.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return inner(*args, **kwargs)

        self.net.forward = counted
        return self

    def __exit__(self, *exc):
        del self.net.forward


def _run_pair(toy, comfy_version, name, steps, own_noise):
    from comfy.samplers import KSAMPLER

    kind, mp, scheduler = toy
    sigmas = model_sigmas(mp, scheduler, steps)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    with _CallCounter(mp) as theirs:
        ref = run_comfy_sampler(mp, comfy_sampler(name), sigmas.clone(), noise, seed=SEED)
    method, opts = PARITY[name]
    stats: dict = {"comfy_nfe": theirs.calls}
    extra = dict(plan=[(method, opts)] * steps, stats=stats, **compat_for(mp, comfy_version, own_noise))
    with _CallCounter(mp) as mine:
        ours = run_comfy_sampler(mp, KSAMPLER(sample_plan, extra_options=extra), sigmas.clone(), noise, seed=SEED)
    stats["counted"] = mine.calls
    return ref, ours, stats, sigmas


@pytest.mark.parametrize("name", FIRST)
@pytest.mark.parametrize("steps", [3, 9])
def test_first_methods_match_comfyui(toy, comfy_version, name, steps):
    ref, ours, _, _ = _run_pair(toy, comfy_version, name, steps, own_noise=False)
    assert ref.dtype == ours.dtype == torch.float32
    assert torch.isfinite(ref).all()
    diff = (ref - ours).abs().max().item()
    assert diff <= TOL, f"{name}: max abs diff {diff:.3g} vs ComfyUI ({toy[0]}, {steps} steps)"


@pytest.mark.parametrize("steps", [2, 3, 8, 25])
@pytest.mark.parametrize("name", sorted(PARITY))
def test_method_matches_comfyui_with_comfy_noise(toy, comfy_version, name, steps):
    ref, ours, stats, sigmas = _run_pair(toy, comfy_version, name, steps, own_noise=False)
    diff = (ref - ours).abs().max().item()
    assert diff <= TOL, f"{name}: max abs diff {diff:.3g} vs ComfyUI ({toy[0]}, {steps} steps)"
    method, opts = PARITY[name]
    kind = "flow" if toy[0] == "gmm-flow" else "eps"
    # the NFE we report == the evaluations we made == what ComfyUI's sampler makes == plan_nfe's prediction
    assert stats["nfe"] == stats["counted"] == stats["comfy_nfe"] == plan_nfe([(method, opts)] * steps, sigmas,
                                                                              model_kind=kind)


@pytest.mark.parametrize("name", sorted(PARITY))
def test_method_matches_comfyui_with_own_noise(toy, comfy_version, name):
    ref, ours, _, _ = _run_pair(toy, comfy_version, name, 8, own_noise=True)
    diff = (ref - ours).abs().max().item()
    assert diff <= TOL, f"{name}: max abs diff {diff:.3g} vs ComfyUI ({toy[0]}, our noise samplers)"


def _karras(hi: float, lo: float, n: int, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def _plan_run(mp, kind: str, method: str, sigmas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    from comfy.samplers import KSAMPLER

    extra = dict(plan=[(method, {})] * (len(sigmas) - 1), model_kind=kind)
    return run_comfy_sampler(mp, KSAMPLER(sample_plan, extra_options=extra), sigmas.clone(), noise, seed=SEED)


@pytest.mark.parametrize("method", ["uni_pc", "uni_pc_bh2"])
def test_uni_pc_last_step_below_comfyuis_final_sigma_keeps_the_corrector(toy, method):
    """ComfyUI's uni_pc ends its last step at sigma 0.001; a last sigma just below that must give nearly the
    result of one just above (the corrected x, then a small step up to 0.001), as in ComfyUI. Was: the
    corrector was dropped below 0.001 and the result jumped by ~0.5."""
    kind, mp, _ = toy
    k = "flow" if kind == "gmm-flow" else "eps"
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    top = 1.0 if k == "flow" else 14.6
    outs, refs = [], []
    for last in (0.00101, 0.00099):
        sig = torch.tensor([top, 0.3, 0.05, 0.005, last, 0.0])
        outs.append(_plan_run(mp, k, method, sig, noise))
        refs.append(run_comfy_sampler(mp, comfy_sampler(method), sig.clone(), noise, seed=SEED))
    jump, comfy_jump = (outs[0] - outs[1]).abs().max().item(), (refs[0] - refs[1]).abs().max().item()
    assert jump <= 2 * comfy_jump + 1e-3, f"{method}: result jumps by {jump:.3g} (ComfyUI {comfy_jump:.3g})"
    for o, r in zip(outs, refs, strict=True):
        assert (o - r).abs().max().item() <= 0.02


def _tiny_end(k: str, n: int) -> torch.Tensor:
    """Sigmas down to 2e-4 (Flux at 512 px ends near 1.9e-4): karras for eps, linear in sigma from 1 for flow."""
    if k == "flow":
        return torch.cat([torch.linspace(1.0, 2e-4, n), torch.zeros(1)])
    return _karras(14.6, 2e-4, n)


@pytest.mark.parametrize("method", ["uni_pc", "uni_pc_bh2"])
def test_uni_pc_on_sigmas_below_float32_resolution_is_finite_and_accurate(toy, method):
    """Flux-like schedules reach sigma ~2e-4, where ComfyUI's float32 noise levels of UniPC collapse (two sigmas,
    one lambda; below 2.4e-4 an infinite one): ZeroDivisionError, a singular solve or NaN. Our uni_pc then uses
    the exact float64 levels: finite at every step count, converging, as accurate as dpmpp_2m at 20 steps."""
    kind, mp, _ = toy
    k = "flow" if kind == "gmm-flow" else "eps"
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    truth = _plan_run(mp, k, "dpmpp_2m", _tiny_end(k, 400), noise)
    errs = []
    for n in (6, 10, 20):
        sig = _tiny_end(k, n)
        ours = _plan_run(mp, k, method, sig, noise)
        assert torch.isfinite(ours).all(), f"{method}, {n} steps: not finite"
        errs.append((ours - truth).pow(2).mean().sqrt().item())
    err_2m = (_plan_run(mp, k, "dpmpp_2m", _tiny_end(k, 20), noise) - truth).pow(2).mean().sqrt().item()
    assert errs[2] < errs[0] and errs[2] <= 1.2 * err_2m, f"{method}: RMSE {errs} (6/10/20), dpmpp_2m {err_2m:.3g}"
