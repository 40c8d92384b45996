"""Our nodes against ComfyUI's own nodes, in-process on real ComfyUI 0.3.75 and 0.9.2."""

from __future__ import annotations

import pytest
import torch

import comfy_helpers

ONE_METHOD = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral",
              "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "deis", "ipndm", "uni_pc", "uni_pc_bh2",
              "res_multistep", "ddim", "lcm"]


@pytest.fixture(scope="session")
def nodes_mod(pack):
    return pack.nodes


@pytest.fixture(scope="session")
def toy(comfy_root):
    return {k: comfy_helpers.make_toy_model(k) for k in ("gmm-eps", "gmm-flow")}


def latent(seed: int = 3, batch: int = 2, size: int = 8) -> dict:
    return {"samples": torch.zeros(batch, 4, size, size)}


def comfy_ksampler(model, seed, steps, cfg, sampler, scheduler, lat, denoise):
    import nodes as comfy_nodes  # ComfyUI's nodes.py (our package is only imported relatively)

    cond = comfy_helpers.empty_conditioning()
    return comfy_nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, cond, cond, lat,
                                       denoise=denoise)[0]["samples"]


def our_ksampler(nodes_mod, model, seed, steps, cfg, plan, scheduler, lat, denoise, sigmas=None):
    cond = comfy_helpers.empty_conditioning()
    out = nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, seed, steps, cfg, plan, scheduler, cond, cond,
                                                              lat, denoise, sigmas=sigmas)
    return out.result[0]["samples"]


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
@pytest.mark.parametrize("method", ONE_METHOD)
def test_ksampler_with_one_method_plan_equals_comfy_ksampler(nodes_mod, toy, kind, method):
    model = toy[kind]
    for scheduler, denoise, cfg in (("karras" if kind == "gmm-eps" else "simple", 1.0, 1.0), ("normal", 0.6, 2.5)):
        ref = comfy_ksampler(model, 11, 7, cfg, method, scheduler, latent(), denoise)
        ours = our_ksampler(nodes_mod, model, 11, 7, cfg, method, scheduler, latent(), denoise)
        assert torch.isfinite(ours).all()
        diff = (ours - ref).abs().max().item()
        assert diff <= 1e-4, f"{method} {kind} {scheduler} denoise={denoise}: max abs diff {diff}"


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
@pytest.mark.parametrize("method", ["euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "euler_ancestral"])
def test_solver_mix_in_sampler_custom_advanced_equals_ksampler_select(nodes_mod, toy, kind, method):
    from comfy_extras import nodes_custom_sampler as ncs

    model = toy[kind]
    sigmas = comfy_helpers.model_sigmas(model, "karras" if kind == "gmm-eps" else "simple", 8)
    noise = ncs.RandomNoise.execute(5).result[0]
    guider = ncs.BasicGuider.execute(model, comfy_helpers.empty_conditioning()).result[0]

    def run(sampler):
        return ncs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent()).result[0]["samples"]

    ref = run(ncs.KSamplerSelect.execute(method).result[0])
    ours = run(nodes_mod.solver_mix.SamplerSchedulerSolverMix.execute(method).result[0])
    assert (ours - ref).abs().max().item() <= 1e-4


def test_ksampler_inpainting_mask_matches_comfy_ksampler(nodes_mod, toy):
    model = toy["gmm-eps"]
    base = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    lat = {"samples": base, "noise_mask": mask}
    ref = comfy_ksampler(model, 4, 8, 1.0, "dpmpp_2m", "karras", dict(lat), 1.0)
    ours = our_ksampler(nodes_mod, model, 4, 8, 1.0, "dpmpp_2m", "karras", dict(lat), 1.0)
    assert (ours - ref).abs().max().item() <= 1e-4
    # outside the mask the original latent is kept
    assert (ours[..., 0, :] - base[..., 0, :]).abs().max().item() < 1e-4


def test_ksampler_sigmas_input_overrides_steps_scheduler_and_denoise(nodes_mod, toy):
    model = toy["gmm-eps"]
    sig = comfy_helpers.model_sigmas(model, "exponential", 6)
    a = our_ksampler(nodes_mod, model, 2, 20, 1.0, "dpmpp_2m", "karras", latent(), 0.3, sigmas=sig)
    b = our_ksampler(nodes_mod, model, 2, 6, 1.0, "dpmpp_2m", "exponential", latent(), 1.0)
    assert torch.equal(a, b)


def test_callback_step_index_covers_every_step_once_across_segments(nodes_mod, toy):
    """ComfyUI's progress bar and previews are driven by this callback: global i, once per step."""
    seen = []
    model = toy["gmm-eps"]
    plan = nodes_mod.schedule_logic.parse_user_plan("3 euler_ancestral eta=1\n30% heun\n* dpmpp_2m")
    sigmas = comfy_helpers.model_sigmas(model, "karras", 10)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    comfy_helpers.run_comfy_sampler(model, nodes_mod.comfy_sampler.plan_sampler(plan), sigmas, noise,
                                    callback=lambda i, x0, x, total: seen.append((i, total)))
    assert [i for i, _ in seen] == list(range(10))
    assert {t for _, t in seen} == {10}


def test_progress_bar_reaches_the_total_through_comfy_progress_hook(nodes_mod, toy):
    import comfy.utils

    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, *a, **k: seen.append((value, total)))
    try:
        our_ksampler(nodes_mod, toy["gmm-eps"], 1, 10, 1.0, "3 euler_ancestral eta=1\n30% heun\n* dpmpp_2m",
                     "karras", latent(), 1.0)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[0] == 1 and values[-1] == 10  # 0.9.2 throttles the middle ones
    assert {t for _, t in seen} == {10}


def test_interrupt_stops_sampling_within_one_step(nodes_mod, toy):
    import comfy.model_management as mm

    model = toy["gmm-eps"]
    plan = nodes_mod.schedule_logic.parse_user_plan("4 dpmpp_sde\n* dpmpp_2m")
    sigmas = comfy_helpers.model_sigmas(model, "karras", 12)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = []

    def cb(i, x0, x, total):
        seen.append(i)
        if i == 2:
            mm.interrupt_current_processing(True)  # what the UI's cancel button does

    try:
        with pytest.raises(mm.InterruptProcessingException):
            comfy_helpers.run_comfy_sampler(model, nodes_mod.comfy_sampler.plan_sampler(plan), sigmas, noise,
                                            callback=cb)
    finally:
        mm.interrupt_current_processing(False)
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(
    "plan, match",
    [("40% dpmpp_2m\n* nosuchsolver", "nosuchsolver"),
     ("5 euler\n5 dpmpp_2m", "10"),  # 10 fixed steps vs 8 in the schedule: impossible split
     ("* euler eta=zzz", "eta"),
     ("", "empty"),
     ("1 euler\n1 afs\n* dpmpp_2m", "afs .*first step")],
)
def test_bad_plan_raises_a_clear_error(nodes_mod, toy, plan, match):
    with pytest.raises(ValueError, match=match):
        our_ksampler(nodes_mod, toy["gmm-eps"], 1, 8, 1.0, plan, "karras", latent(), 1.0)


@pytest.mark.parametrize(
    "sigmas, match",
    [(torch.tensor([2.0]), "single value"), (torch.tensor([3.0, float("nan"), 0.0]), "NaN"),
     (torch.tensor([1.0, 2.0, 0.0]), "decreasing")],
)
def test_bad_sigmas_raise_a_clear_error(nodes_mod, toy, sigmas, match):
    with pytest.raises(ValueError, match=match):
        our_ksampler(nodes_mod, toy["gmm-eps"], 1, 8, 1.0, "euler", "karras", latent(), 1.0, sigmas=sigmas)


def test_a_scheduler_that_gives_an_unusable_schedule_names_itself(nodes_mod, toy):
    """ComfyUI's kl_optimal divides by steps - 1: at 1 step its sigmas are NaN. A clear error, not a NaN image."""
    with pytest.raises(ValueError, match="scheduler 'kl_optimal' with 1 step"):
        our_ksampler(nodes_mod, toy["gmm-eps"], 1, 1, 1.0, "euler", "kl_optimal", latent(), 1.0)


def test_solver_mix_rejects_flow_sigmas_above_one_with_a_clear_error(nodes_mod, toy):
    """Eps-style sigmas wired into a flow model (SamplerCustom: the sampler is the only check)."""
    from comfy_extras import nodes_custom_sampler as ncs

    cond = comfy_helpers.empty_conditioning()
    sampler = nodes_mod.solver_mix.SamplerSchedulerSolverMix.execute("* dpmpp_sde").result[0]
    sig = torch.tensor([14.6, 7.9, 4.0, 1.9, 0.83, 0.0])
    with pytest.raises(ValueError, match="flow model"):
        ncs.SamplerCustom.execute(toy["gmm-flow"], True, 1, 1.0, cond, cond, sampler, sig, latent())


def test_a_trailing_segment_with_no_steps_does_not_change_the_schedule(nodes_mod, toy):
    """'* uni_pc' after 5 euler steps of 5 gets 0 steps: ComfyUI's rule of dropping the penultimate sigma (for
    uni_pc, dpm_2, ...) follows the last method that runs, so the run equals plain euler."""
    model = toy["gmm-eps"]
    plain = our_ksampler(nodes_mod, model, 3, 5, 1.0, "euler", "karras", latent(), 1.0)
    mixed = our_ksampler(nodes_mod, model, 3, 5, 1.0, "5 euler\n* uni_pc", "karras", latent(), 1.0)
    assert torch.equal(plain, mixed)


def edm_like_model():
    """A real ComfyUI model with SVD-like continuous EDM sampling (sigma 0.002..700)."""
    import comfy.model_base
    import comfy.model_patcher

    pack = comfy_helpers.comfy_env.load_pack()
    tm = pack.nodes.toy_model
    config = tm.ToyConfig({"disable_unet_model_creation": True})
    config.sampling_settings = {"sigma_max": 700.0, "sigma_min": 0.002, "sigma_data": 1.0}
    base = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION_EDM)
    base.diffusion_model = tm.ToyNet("gmm-eps")
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def test_ays_node_equals_comfy_align_your_steps_scheduler(nodes_mod, toy):
    from comfy_extras.nodes_align_your_steps import AlignYourStepsScheduler

    ays = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas
    models = {"SD1": toy["gmm-eps"], "SDXL": toy["gmm-eps"], "SVD": edm_like_model()}
    for preset, model in models.items():
        for steps in range(1, 61):
            for denoise in (1.0, 0.75, 0.5, 0.0):
                ref = AlignYourStepsScheduler.execute(preset, steps, denoise).result[0]
                ours = ays.execute(model, preset, steps, denoise).result[0]
                assert ours.shape == ref.shape and torch.equal(ours.float(), ref.float()), (preset, steps, denoise)


def test_ays_node_rejects_a_preset_that_does_not_fit_the_model(nodes_mod, toy):
    ays = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas
    with pytest.raises(ValueError, match="another kind of model"):
        ays.execute(toy["gmm-eps"], "SVD", 10, 1.0)
    with pytest.raises(ValueError, match="another kind of model"):
        ays.execute(toy["gmm-flow"], "SD1", 10, 1.0)


def test_ays_auto_on_models_without_a_table_maps_the_fallback_onto_their_sigma_range(nodes_mod, toy):
    ays = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas
    for kind in ("gmm-flow", "gmm-eps"):
        ms = toy[kind].get_model_object("model_sampling")
        sig = ays.execute(toy[kind], "auto", 10, 1.0).result[0]
        assert len(sig) == 11 and sig[-1] == 0
        assert abs(float(sig[0]) - float(ms.sigma_max)) < 1e-5
        assert (sig[1:] < sig[:-1]).all()
        assert float(sig[-2]) >= float(ms.sigma_min) * 0.999


def test_solver_mix_reports_the_nfe_of_its_run_in_the_console(nodes_mod, toy, caplog):
    import logging

    model = toy["gmm-eps"]
    plan = nodes_mod.schedule_logic.parse_user_plan("2 heun\n* dpmpp_2m")
    sigmas = comfy_helpers.model_sigmas(model, "karras", 6)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO, logger="sampler_scheduler"):
        comfy_helpers.run_comfy_sampler(model, nodes_mod.comfy_sampler.plan_sampler(plan), sigmas, noise)
    # 2 heun steps (2 calls each) + 4 dpmpp_2m steps
    assert any("6 steps, NFE 8" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_analytic_first_step_runs_in_comfy_with_one_model_call_less(nodes_mod, toy, kind, caplog):
    import logging

    model = toy[kind]
    sigmas = comfy_helpers.model_sigmas(model, "karras" if kind == "gmm-eps" else "simple", 6)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = {}
    seen = []
    for plan in ("1 afs pred=noise\n* usf", "usf"):
        sampler = nodes_mod.comfy_sampler.plan_sampler(nodes_mod.schedule_logic.parse_user_plan(plan))
        with caplog.at_level(logging.INFO, logger="sampler_scheduler"):
            out[plan] = comfy_helpers.run_comfy_sampler(model, sampler, sigmas, noise,
                                                        callback=lambda i, x0, x, total: seen.append(i))
    messages = [r.getMessage() for r in caplog.records]
    assert any("6 steps, NFE 5" in m for m in messages) and any("6 steps, NFE 6" in m for m in messages), messages
    assert seen == list(range(6)) * 2  # progress and previews still see every step
    a, b = out["1 afs pred=noise\n* usf"], out["usf"]
    assert torch.isfinite(a).all() and not torch.equal(a, b)


def ksampler_run(nodes_mod, model, plan: str, denoise: float, lat: dict, steps: int = 8):
    cond = comfy_helpers.empty_conditioning()
    out = nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, 5, steps, 1.0, plan, "karras", cond, cond, lat,
                                                              denoise)
    return out.result[0]["samples"], out.ui["text"][0]


def test_afs_below_the_top_sigma_evaluates_the_model_instead(nodes_mod, toy):
    """afs takes D = 0 (pure noise); from a noised image (denoise < 1) that estimate would discard the image, so
    the run takes the same first-order step with a real model call: usf order=1 with afs's options."""
    model = toy["gmm-eps"]
    image = {"samples": 0.8 * torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    afs, msg = ksampler_run(nodes_mod, model, "1 afs pred=noise\n* usf", 0.4, dict(image))
    usf, msg_usf = ksampler_run(nodes_mod, model, "1 usf order=1 pred=noise\n* usf", 0.4, dict(image))
    assert torch.equal(afs, usf)
    assert msg == msg_usf and "8 steps, NFE 8" in msg  # the extra call is counted
    # from the top (denoise 1) afs stays the analytical step, one model call fewer
    top, msg_top = ksampler_run(nodes_mod, model, "1 afs pred=noise\n* usf", 1.0, {"samples": torch.zeros(2, 4, 8, 8)})
    top_usf, _ = ksampler_run(nodes_mod, model, "1 usf order=1 pred=noise\n* usf", 1.0,
                              {"samples": torch.zeros(2, 4, 8, 8)})
    assert "8 steps, NFE 7" in msg_top and not torch.equal(top, top_usf)


def test_afs_on_the_second_part_of_split_sigmas_evaluates_the_model(nodes_mod, toy):
    from comfy_extras import nodes_custom_sampler as ncs

    model = toy["gmm-flow"]
    sigmas = comfy_helpers.model_sigmas(model, "simple", 10)[4:]  # the low-noise part of a split schedule
    start = {"samples": 0.5 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
    noise = ncs.RandomNoise.execute(3).result[0]
    guider = ncs.BasicGuider.execute(model, comfy_helpers.empty_conditioning()).result[0]

    def run(plan: str):
        sampler = nodes_mod.solver_mix.SamplerSchedulerSolverMix.execute(plan).result[0]
        return ncs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, dict(start)).result[0]["samples"]

    assert torch.equal(run("1 afs\n* dpmpp_2m"), run("1 usf order=1\n* dpmpp_2m"))


def test_preview_shows_the_model_call_of_afs_below_the_top(nodes_mod):
    logic = nodes_mod.schedule_logic
    kw = {"plan_text": "1 afs\n* usf", "steps": 8, "scheduler": "karras", "preset": None, "model_type": "sd1"}
    full = logic.preview_schedule(denoise=1.0, **kw)
    part = logic.preview_schedule(denoise=0.5, **kw)
    assert full["methods"][0] == "afs" and full["nfe"] == 7
    assert part["methods"][0] == "usf" and part["nfe"] == 8
    assert part["plan_text"] == full["plan_text"]  # the user's plan text is not rewritten


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_ksampler_drops_the_repeated_sigmas_of_a_comfy_schedule_past_its_table(nodes_mod, toy, kind):
    """ComfyUI's simple scheduler repeats sigmas when steps / denoise passes the model's 1000-entry table; those
    zero-length steps are dropped (multistep solvers would divide by zero), and the run says so."""
    import comfy.samplers

    model = toy[kind]
    cond = comfy_helpers.empty_conditioning()
    lat = {"samples": 0.5 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))}
    out = nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, 1, 20, 1.0, "* dpmpp_2m", "simple", cond, cond,
                                                              dict(lat), 0.01)
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 2000).cpu()[-21:]
    unique = torch.unique_consecutive(full)
    assert len(unique) < len(full)  # the premise: ComfyUI's schedule repeats sigmas here
    msg = out.ui["text"][0]
    assert f"{len(unique) - 1} steps" in msg and f"{len(full) - len(unique)} repeated sigma(s) dropped" in msg
    x = out.result[0]["samples"]
    assert torch.isfinite(x).all()
    same = our_ksampler(nodes_mod, model, 1, 20, 1.0, "* dpmpp_2m", "simple", dict(lat), 1.0, sigmas=unique)
    assert torch.equal(x, same)


def test_a_denoise_that_is_not_a_number_gets_a_clear_error(nodes_mod, toy):
    model = toy["gmm-eps"]
    with pytest.raises(ValueError, match="denoise must be a number from 0 to 1, got nan"):
        our_ksampler(nodes_mod, model, 1, 8, 1.0, "* euler", "karras", latent(), float("nan"))
    with pytest.raises(ValueError, match="denoise must be a number from 0 to 1, got nan"):
        nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, "SD1", 10, float("nan"))


@pytest.mark.parametrize("shape", [(1, 16, 2, 4, 4), (1, 8, 16)])
def test_builtin_models_reject_video_and_audio_latents_with_a_clear_error(nodes_mod, toy, shape):
    """The built-in models are image models: a 5-D video or 3-D audio latent is refused by name, not with an
    unpacking error from deep inside the mixture."""
    with pytest.raises(ValueError, match=r"takes image latents \[batch, channels, height, width\], got a \d-D"):
        our_ksampler(nodes_mod, toy["gmm-eps"], 1, 4, 1.0, "* euler", "karras", {"samples": torch.zeros(shape)}, 1.0)


def test_pure_ddim_plan_with_the_largest_seed_gives_a_clear_error(nodes_mod, toy):
    """ComfyUI's ddim re-noises with seed + 1, past torch's 64-bit seeds at the largest seed (a raw overflow error,
    in ComfyUI's own ddim too): the plan says why. The largest seed with other methods, and ddim one below, run."""
    top = 0xFFFFFFFFFFFFFFFF
    with pytest.raises(ValueError, match="only ddim steps re-noises with seed \\+ 1.*largest seed"):
        our_ksampler(nodes_mod, toy["gmm-eps"], top, 4, 1.0, "* ddim", "karras", latent(), 1.0)
    for seed, plan in ((top, "* euler"), (top - 1, "* ddim")):
        out = our_ksampler(nodes_mod, toy["gmm-eps"], seed, 4, 1.0, plan, "karras", latent(), 1.0)
        assert torch.isfinite(out).all()


def _count_calls(model) -> dict:
    calls = {"n": 0}
    model.set_model_unet_function_wrapper(lambda f, a: (calls.__setitem__("n", calls["n"] + 1),
                                                        f(a["input"], a["timestep"], **a["c"]))[1])
    return calls


@pytest.mark.parametrize("plan", ["dpmpp_2s_ancestral eta=2", "dpm_2_ancestral eta=2", "dpmpp_2s_ancestral"])
def test_ksampler_nfe_on_a_flow_model_equals_its_model_calls(nodes_mod, toy, plan):
    """The NFE shown after a run counts a flow model's ancestral steps as a flow model runs them (eta = 2 on the
    uniform 'simple' schedule of a shift-1 flow model reaches sigma_down = 0 on one step: one call there)."""
    from comfy_extras import nodes_model_advanced as nma

    model = nma.ModelSamplingSD3().patch(toy["gmm-flow"], 1.0)[0]
    calls = _count_calls(model)
    cond = comfy_helpers.empty_conditioning()
    out = nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, 1, 6, 1.0, plan, "simple", cond, cond,
                                                              latent(batch=1), 1.0)
    assert torch.isfinite(out.result[0]["samples"]).all()
    assert f"NFE {calls['n']} " in out.ui["text"][0], (out.ui["text"][0], calls["n"])


def test_flow_ancestral_step_at_the_largest_eta_denoises_and_renoises_instead_of_a_nan(nodes_mod, toy):
    """At eta = 1 / (1 - s1/s) the flow ancestral split steps to sigma_down = 0: the step is x0 renoised to s1
    ((1 - s1) x0 + s1 z), one model call, a finite image; one eta more is a clear error."""
    from comfy_extras import nodes_model_advanced as nma

    model = nma.ModelSamplingSD3().patch(toy["gmm-flow"], 1.0)[0]
    cond = comfy_helpers.empty_conditioning()
    ks = nodes_mod.ksampler.SamplerSchedulerKSampler
    # dpm_2_ancestral runs on 7 sigmas with the penultimate dropped (as ComfyUI): its boundary is the step 3/7 -> 2/7
    for method, boundary in (("dpmpp_2s_ancestral", 2), ("dpm_2_ancestral", 3)):
        calls = _count_calls(model)
        out = ks.execute(model, 3, 6, 1.0, f"{method} eta={boundary}", "simple", cond, cond, latent(batch=1), 1.0)
        assert torch.isfinite(out.result[0]["samples"]).all()
        assert f"NFE {calls['n']} " in out.ui["text"][0] and calls["n"] == 10  # 4 steps x 2, 1 at the boundary, 1
        with pytest.raises(ValueError, match=f"eta={boundary + 1} is too large"):
            ks.execute(model, 3, 6, 1.0, f"{method} eta={boundary + 1}", "simple", cond, cond, latent(batch=1), 1.0)


def test_fixed_counts_after_dropped_repeats_name_the_dropped_sigmas(nodes_mod, toy):
    """A tiny denoise leaves one distinct sigma pair out of 40 steps: a plan with 10 fixed steps cannot run, and the
    error says why (the repeats were dropped), not only 'use more steps'."""
    cond = comfy_helpers.empty_conditioning()
    with pytest.raises(ValueError, match=r"repeats 39 sigma\(s\), which were dropped: 1 distinct step"):
        nodes_mod.ksampler.SamplerSchedulerKSampler.execute(toy["gmm-eps"], 1, 40, 1.0, "10 euler\n* dpmpp_2m",
                                                            "simple", cond, cond, latent(batch=1), 0.001)


@pytest.mark.parametrize("sigmas", [torch.tensor([]), torch.tensor([0.0])])
def test_sigmas_with_no_step_return_the_latent_unchanged_as_comfyui_does(nodes_mod, toy, sigmas):
    """AYS Sigmas gives [] at denoise 0 and [0] when round(steps x denoise) is 0: no step to run (ComfyUI's own
    samplers return the latent); the KSampler says so instead of failing, and calls no model."""
    model = toy["gmm-eps"].clone()
    calls = _count_calls(model)
    lat = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
    cond = comfy_helpers.empty_conditioning()
    out = nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, 1, 8, 1.0, "* euler", "karras", cond, cond, lat,
                                                              1.0, sigmas=sigmas)
    assert torch.equal(out.result[0]["samples"], lat["samples"]) and calls["n"] == 0
    assert "0 steps, NFE 0" in out.ui["text"][0]


def test_dpm_2_ancestral_at_eta_0_is_the_ode_on_flow_models_too(nodes_mod, toy):
    """eta = 0 turns an ancestral method into its ODE: float32 leaves a renoise coefficient of ~2e-4 on shifted flow
    schedules, which must not draw noise (the result would depend on the seed)."""
    model = toy["gmm-flow"]
    cond = comfy_helpers.empty_conditioning()
    ks = nodes_mod.ksampler.SamplerSchedulerKSampler
    anc = ks.execute(model, 1, 20, 1.0, "dpm_2_ancestral eta=0", "simple", cond, cond,
                     {"samples": torch.zeros(1, 4, 8, 8)}, 1.0).result[0]["samples"]
    ode = ks.execute(model, 1, 20, 1.0, "dpm_2", "simple", cond, cond, {"samples": torch.zeros(1, 4, 8, 8)},
                     1.0).result[0]["samples"]
    assert torch.allclose(anc, ode, atol=1e-6), (anc - ode).abs().max()
