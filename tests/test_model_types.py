"""The optimiser and the search on other ComfyUI model types: V-prediction (SD2-like), continuous EDM (Karras et al.),
continuous V-prediction EDM (SVD-like) and Flux's flow sampling (resolution shift, sigma 1..3e-4).

The test networks return what ComfyUI's V_PREDICTION / EDM model sampling expects from the exact Gaussian-mixture
denoiser D (sigma_data s_d, ComfyUI's input scaling x = x_in sqrt(sigma^2 + s_d^2)):
V: v = (x s_d^2 / (sigma^2 + s_d^2) - D) sqrt(sigma^2 + s_d^2) / (sigma s_d); EDM: the negative of that.
So ComfyUI's own ``calculate_denoised`` gives back D, and a V model with the SD1 sigmas is the same model as the
built-in EPS one: the optimiser and the search must give it the same results.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_ays_optimize_node import optimise

import comfy_helpers


def model_of_type(pack, kind: str):
    """A real ComfyUI model (ModelPatcher) around the exact Gaussian-mixture denoiser: "v" (V_PREDICTION, discrete
    SD1 sigmas, sigma_data 1), "edm" (EDM, continuous sigma 0.002..80, sigma_data 0.5) or "vedm" (V_PREDICTION_EDM
    as SVD: continuous sigma 0.002..700, sigma_data 1) or "flux" (FLUX model sampling, shift 1.15, around the flow
    form of the mixture, as the built-in flow model)."""
    import comfy.model_base
    import comfy.model_patcher

    tm = pack.nodes.toy_model

    class Net(tm.ToyNet):
        def __init__(self, sigma_data: float, sign: float) -> None:
            super().__init__("gmm-eps")
            self.sigma_data, self.sign = sigma_data, sign

        def forward(self, xc, t, context=None, control=None, transformer_options={}, **kwargs):
            sigma = self.batch_sigmas(xc, transformer_options)
            s = sigma.reshape(-1, *([1] * (xc.ndim - 1)))
            sd2 = self.sigma_data**2
            x = xc.float() * (s**2 + sd2).sqrt()
            d = self.ve_denoise(x, sigma).float()
            return self.sign * (x * sd2 / (s**2 + sd2) - d) * (s**2 + sd2).sqrt() / (s * self.sigma_data)

    config = tm.ToyConfig({"disable_unet_model_creation": True})
    if kind == "flux":
        config.sampling_settings = {"shift": 1.15}
        net, model_type = tm.ToyNet("gmm-flow"), comfy.model_base.ModelType.FLUX
    elif kind == "v":
        net, model_type = Net(1.0, 1.0), comfy.model_base.ModelType.V_PREDICTION
    elif kind == "vedm":
        config.sampling_settings = {"sigma_max": 700.0, "sigma_min": 0.002, "sigma_data": 1.0}
        net, model_type = Net(1.0, 1.0), comfy.model_base.ModelType.V_PREDICTION_EDM
    else:
        config.sampling_settings = {"sigma_max": 80.0, "sigma_min": 0.002, "sigma_data": 0.5}
        net, model_type = Net(0.5, -1.0), comfy.model_base.ModelType.EDM
    base = comfy.model_base.BaseModel(config, model_type=model_type, device=torch.device("cpu"))
    base.diffusion_model = net
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def search(pack, model, name: str):
    cond = comfy_helpers.empty_conditioning()
    node = pack.nodes.search.SamplerSchedulerSearch
    return node.execute(model, cond, cond, 1.0, {"samples": torch.zeros(1, 4, 8, 8)}, 4, 12, 0, name, batch=2,
                        reference_steps=20)


def test_test_networks_give_back_the_exact_denoiser_through_comfyui(pack):
    """ComfyUI's own V_PREDICTION and EDM ``calculate_denoised`` of the test networks is D itself."""
    from sampler_scheduler_pack.sampler_core.models.gmm import for_latent_cached

    gmm = for_latent_cached((4, 8, 8))
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    for kind in ("v", "edm", "vedm"):
        model = model_of_type(pack, kind)
        sigma = torch.tensor([0.5, 3.0, 20.0])
        out = model.model.apply_model(x, sigma, transformer_options={"sigmas": sigma})
        assert torch.allclose(out.float(), gmm.denoise(x, sigma).float(), atol=1e-4), kind


def test_optimiser_gives_a_v_prediction_model_the_schedule_of_its_eps_twin(pack, user_dir):
    eps, _ = optimise(pack.nodes, comfy_helpers.make_toy_model("gmm-eps"), "eps twin")
    v, _ = optimise(pack.nodes, model_of_type(pack, "v"), "v twin")
    assert torch.allclose(v, eps, rtol=1e-4), (v, eps)


def sigma_range(model) -> tuple[float, float]:
    ms = model.get_model_object("model_sampling")
    return float(ms.sigma_min), float(ms.sigma_max)


@pytest.mark.parametrize("kind", ["edm", "vedm", "flux"])
def test_optimiser_on_a_continuous_model_spans_its_sigma_range(pack, user_dir, kind):
    from sampler_scheduler_pack.schedules.presets import load_preset

    model = model_of_type(pack, kind)
    sigma_min, sigma_max = sigma_range(model)
    sigmas, _ = optimise(pack.nodes, model, "cont")
    assert sigmas.shape == (11,) and sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    assert sigmas[0].item() == pytest.approx(sigma_max, rel=1e-5)
    preset = load_preset(user_dir / "sampler_scheduler" / "ays_schedules" / "cont.json")
    assert preset.sigmas[10][-1] == pytest.approx(sigma_min, rel=1e-4)
    hist = preset.klub_history[10]
    assert hist[-1] < hist[0]
    # the AYS Sigmas node uses the saved schedule for this model, by name and as "auto"
    ays = pack.nodes.ays_sigmas.SamplerSchedulerAYSSigmas
    assert torch.equal(ays.execute(model, "cont", 10, 1.0).result[0], sigmas)
    assert torch.equal(ays.execute(model, "auto", 10, 1.0).result[0], sigmas)


def test_search_gives_a_v_prediction_model_the_plan_of_its_eps_twin(pack, user_dir):
    plan_eps, sig_eps = search(pack, comfy_helpers.make_toy_model("gmm-eps"), "").result
    plan_v, sig_v = search(pack, model_of_type(pack, "v"), "").result
    assert plan_v == plan_eps
    assert torch.allclose(sig_v, sig_eps, rtol=1e-5)


@pytest.mark.parametrize("kind", ["edm", "vedm", "flux"])
def test_search_on_a_continuous_model_keeps_the_budget_and_the_sigma_range(pack, user_dir, kind):
    model = model_of_type(pack, kind)
    sigma_min, sigma_max = sigma_range(model)
    out = search(pack, model, "cont plan")
    plan_text, sigmas = out.result
    assert sigmas[0].item() == pytest.approx(sigma_max, rel=1e-5) and sigmas[-1] == 0
    assert float(sigmas[-2]) >= sigma_min * 0.999 and bool((sigmas[1:] < sigmas[:-1]).all())
    saved = json.loads((user_dir / "sampler_scheduler" / "plans" / "cont_plan.json").read_text())
    assert saved["plan"] == plan_text
    res = pack.nodes.ksampler.SamplerSchedulerKSampler.execute(model, 5, 99, 1.0, plan_text, "karras",
                                                               comfy_helpers.empty_conditioning(),
                                                               comfy_helpers.empty_conditioning(),
                                                               {"samples": torch.zeros(2, 4, 8, 8)}, 1.0,
                                                               sigmas=sigmas)
    assert torch.isfinite(res.result[0]["samples"]).all() and "NFE 4" in res.ui["text"][0]
