"""The pack loads in real ComfyUI (both versions) and its built-in models sample correctly there."""

from __future__ import annotations

import asyncio

import torch

import comfy_helpers


def test_entrypoint_registers_every_node_without_comfy_warnings(pack, caplog):
    ext = asyncio.run(pack.comfy_entrypoint())
    nodes = asyncio.run(ext.get_node_list())
    ids = {n.GET_SCHEMA().node_id for n in nodes}
    assert {"SamplerSchedulerToyModel", "SamplerSchedulerToyDecode"} <= ids
    for n in nodes:
        schema = n.GET_SCHEMA()
        assert schema.category.startswith("sampling/custom_sampling/")
        assert schema.display_name
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_builtin_gmm_model_is_a_real_modelpatcher_with_the_right_sampling(comfy_root):
    import comfy.model_patcher
    import comfy.model_sampling

    eps = comfy_helpers.make_toy_model("gmm-eps")
    flow = comfy_helpers.make_toy_model("gmm-flow")
    assert isinstance(eps, comfy.model_patcher.ModelPatcher)
    ms_eps = eps.get_model_object("model_sampling")
    ms_flow = flow.get_model_object("model_sampling")
    assert isinstance(ms_eps, comfy.model_sampling.EPS)
    assert isinstance(ms_flow, comfy.model_sampling.CONST)
    assert abs(float(ms_eps.sigma_min) - 0.0292) < 1e-3 and abs(float(ms_eps.sigma_max) - 14.6146) < 1e-3
    assert float(ms_flow.sigma_max) <= 1.0


def test_comfy_model_call_returns_the_exact_gmm_posterior_mean(comfy_root):
    """ComfyUI's own wrapper (input scaling, eps/v conversion) around our net gives the exact denoiser."""
    import comfy.samplers

    from sampler_core.models.gmm import for_latent_cached

    g = for_latent_cached((4, 8, 8))
    torch.manual_seed(0)
    for kind in ("gmm-eps", "gmm-flow"):
        mp = comfy_helpers.make_toy_model(kind)
        sigma = torch.tensor([0.5, 0.5])
        x = torch.randn(2, 4, 8, 8)
        guider = comfy.samplers.CFGGuider(mp)
        guider.set_conds(comfy_helpers.empty_conditioning(), comfy_helpers.empty_conditioning())
        guider.set_cfg(1.0)
        comfy_model = mp.model
        out = comfy_model.apply_model(x, sigma, c_crossattn=torch.zeros(2, 1, 8),
                                      transformer_options={"sigmas": sigma})
        ref = g.denoise(x.double(), sigma.double()) if kind == "gmm-eps" else g.denoise_flow(x.double(), sigma.double())
        assert (out - ref.float()).abs().max() < 1e-4


def test_comfy_ksampler_on_builtin_model_lands_near_the_data(comfy_root):
    """ComfyUI's own euler sampler on the built-in GMM gives samples close to mixture means."""
    from sampler_core.models.gmm import for_latent_cached

    g = for_latent_cached((4, 8, 8))
    for kind in ("gmm-eps", "gmm-flow"):
        mp = comfy_helpers.make_toy_model(kind)
        sigmas = comfy_helpers.model_sigmas(mp, "karras" if kind == "gmm-eps" else "simple", 30)
        noise = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        out = comfy_helpers.run_comfy_sampler(mp, comfy_helpers.comfy_sampler("euler"), sigmas, noise)
        d = ((out.double()[:, None] - g.means[None]) ** 2).flatten(2).sum(-1).sqrt().min(1).values
        # distance to the nearest mean ~ std * sqrt(D) (D = 256, std <= 0.5) vs ~16 for pure noise
        assert torch.isfinite(out).all() and (d < 9.0).all(), d
