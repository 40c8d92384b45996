"""Align Your Steps Optimiser node, in-process on real ComfyUI 0.3.75 and 0.9.2 (built-in models)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import comfy_helpers

SMALL = {"budget": 3000, "samples": 8, "reference_steps": 10, "max_batch": 1024}


@pytest.fixture(scope="module")
def nodes_mod(pack):
    return pack.nodes


def optimise(nodes_mod, model, name: str, steps: str = "10", data=None, cfg: float = 1.0, refine: bool = True,
             **kw):
    cond = comfy_helpers.empty_conditioning()
    args = dict(SMALL, **kw)
    node = nodes_mod.ays_optimize.SamplerSchedulerAYSOptimize
    out = node.execute(model, cond, cond, cfg, {"samples": torch.zeros(1, 4, 8, 8)}, steps, args["budget"], 7,
                       name, args["samples"], args["reference_steps"], args["max_batch"], data=data,
                       solver_refinement=refine)
    return out.result[0], out.ui


def ays_node(nodes_mod, model, preset: str, steps: int = 10) -> torch.Tensor:
    return nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, preset, steps, 1.0).result[0]


def combo_options(nodes_mod) -> list[str]:
    schema = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.define_schema()
    return next(i for i in schema.inputs if i.id == "preset").options


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_optimiser_saves_a_preset_that_the_ays_node_lists_and_uses(nodes_mod, user_dir, kind):
    from sampler_scheduler_pack.schedules.presets import load_preset

    model = comfy_helpers.make_toy_model(kind)
    ms = model.get_model_object("model_sampling")
    sigmas, ui = optimise(nodes_mod, model, f"toy {kind}")
    assert sigmas.shape == (11,) and sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    assert sigmas[0].item() == pytest.approx(float(ms.sigma_max), rel=1e-5)  # flow: s = 1; eps: 14.61
    path = user_dir / "sampler_scheduler" / "ays_schedules" / f"toy_{kind}.json"
    preset = load_preset(path)
    assert preset.name == f"toy {kind}" and preset.model["builtin"] == kind
    assert sorted(preset.sigmas) == [10, 20, 40]  # 10 optimised, 20 and 40 interpolated
    assert preset.conditioning["optimised_steps"] == [10] and preset.conditioning["interpolated_steps"] == [20, 40]
    assert preset.conditioning["model_evaluations"] <= SMALL["budget"]
    hist = preset.klub_history[10]
    assert all(b <= a for a, b in zip(hist[:-1], hist[1:], strict=True)) and hist[-1] < hist[0]
    assert preset.sigmas[10][-1] == pytest.approx(float(ms.sigma_min), rel=1e-4)
    assert "saved preset" in ui["text"][0]
    # the AYS Sigmas node offers it (options are computed when the schema is built) and uses it
    assert f"toy {kind}" in combo_options(nodes_mod)
    assert torch.equal(ays_node(nodes_mod, model, f"toy {kind}"), sigmas)
    assert torch.equal(ays_node(nodes_mod, model, "auto"), sigmas)  # auto: the saved schedule for this model


def test_optimiser_uses_real_data_and_subdivides_to_20_steps(nodes_mod, user_dir):
    from sampler_scheduler_pack.sampler_core.models.gmm import for_latent_cached
    from sampler_scheduler_pack.schedules.presets import load_preset

    model = comfy_helpers.make_toy_model("gmm-eps")
    data = for_latent_cached((4, 8, 8)).sample(32, torch.Generator().manual_seed(1)).float()
    sigmas, _ = optimise(nodes_mod, model, "real-data", steps="20", data={"samples": data}, budget=6000,
                         cfg=3.0, refine=False)  # cond and uncond batched through ComfyUI's CFG path
    assert sigmas.shape == (21,)
    preset = load_preset(user_dir / "sampler_scheduler" / "ays_schedules" / "real-data.json")
    assert preset.conditioning["optimised_steps"] == [10, 20]
    assert preset.conditioning["reference_evaluations"] == 0 and "encoded images" in preset.conditioning["data"]
    assert preset.conditioning["cfg"] == 3.0 and preset.conditioning["positive"][0]["shape"] == [1, 1, 8]
    # subdivision keeps every 10-step point and only moves the new ones
    assert preset.sigmas[20][0::2] == pytest.approx(preset.sigmas[10], rel=1e-12)


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_solver_refinement_lowers_the_solvers_error_and_keeps_the_klub_record(nodes_mod, user_dir, kind):
    """Refinement on (default) vs off, same seed: the KLUB search is the same, the refined 10-step schedule keeps
    its endpoints, and the worst relative solver error (the recorded score) went down from 0."""
    from sampler_scheduler_pack.schedules.presets import load_preset

    model = comfy_helpers.make_toy_model(kind)
    _, ui = optimise(nodes_mod, model, "refined")
    off, _ = optimise(nodes_mod, model, "klub-only", refine=False)
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    ref, plain = load_preset(folder / "refined.json"), load_preset(folder / "klub-only.json")
    assert ref.klub_history == plain.klub_history and plain.conditioning["solver_refinement"] is None
    rec = ref.conditioning["solver_refinement"]
    hist = rec["score_history"]
    assert hist[0] == 0 and all(b <= a for a, b in zip(hist, hist[1:], strict=False)) and hist[-1] < 0
    for start_err, end_err in rec["errors_start_end"].values():  # per method: the worst one improved by exp(hist[-1])
        assert end_err <= start_err * math.exp(hist[-1]) * (1 + 1e-9)
    assert rec["model_evaluations"] > 0 and "refinement" in ui["text"][0]
    a, b = ref.sigmas[10], plain.sigmas[10]
    assert a[0] == b[0] and a[-1] == b[-1] and a != b


def test_refinement_with_real_data_runs_its_own_reference(nodes_mod, user_dir):
    from sampler_scheduler_pack.sampler_core.models.gmm import for_latent_cached
    from sampler_scheduler_pack.schedules.presets import load_preset

    model = comfy_helpers.make_toy_model("gmm-eps")
    data = for_latent_cached((4, 8, 8)).sample(32, torch.Generator().manual_seed(1)).float()
    optimise(nodes_mod, model, "real-refined", data={"samples": data})
    preset = load_preset(user_dir / "sampler_scheduler" / "ays_schedules" / "real-refined.json")
    cond = preset.conditioning
    assert "encoded images" in cond["data"]
    assert cond["reference_evaluations"] == SMALL["samples"] * SMALL["reference_steps"]
    assert cond["solver_refinement"]["score_history"][-1] <= 0


@pytest.mark.parametrize("data, message", [
    (torch.zeros(0, 4, 8, 8), "holds no images"),
    (torch.full((2, 4, 8, 8), float("nan")), "NaN or infinite"),
    (torch.zeros(2, 16, 8, 8), "encode the images with this model's VAE"),
    (torch.zeros(2, 4, 8), "encode the images with this model's VAE"),
    (torch.zeros(2, 4, 6, 6), "data latents are 6x6 but 'latent' is 8x8"),
])
def test_bad_data_latents_fail_with_a_message_naming_them_and_save_nothing(nodes_mod, user_dir, data, message):
    model = comfy_helpers.make_toy_model("gmm-eps")
    calls = {"n": 0}
    model.model.diffusion_model.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    with pytest.raises(ValueError, match=message):
        optimise(nodes_mod, model, "bad-data", data={"samples": data})
    assert calls["n"] == 0  # rejected before any model call
    assert not (user_dir / "sampler_scheduler" / "ays_schedules" / "bad-data.json").exists()


def test_cancel_stops_the_optimiser_within_one_model_call_and_saves_nothing(nodes_mod, user_dir):
    import comfy.model_management

    model = comfy_helpers.make_toy_model("gmm-eps")
    calls = {"n": 0, "after": 0}

    def hook(_module, _args, _kwargs):
        calls["n"] += 1
        if calls["n"] == 20:  # in the KLUB search (the reference run takes 10 calls)
            comfy.model_management.interrupt_current_processing(True)
        elif calls["n"] > 20:
            calls["after"] += 1

    handle = model.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            optimise(nodes_mod, model, "cancelled", max_batch=64)
    finally:
        handle.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert calls["after"] == 0
    assert not (user_dir / "sampler_scheduler" / "ays_schedules" / "cancelled.json").exists()


def test_corrupt_or_hand_edited_preset_gives_a_clear_error_and_keeps_the_list(nodes_mod, user_dir):
    model = comfy_helpers.make_toy_model("gmm-eps")
    optimise(nodes_mod, model, "good", budget=2000)
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    (folder / "broken.json").write_text('{"format": "sampler-scheduler-ays-schedule", "version": 1,')
    edited = json.loads((folder / "good.json").read_text())
    edited["name"] = "edited"
    edited["sigmas"]["10"][3] = edited["sigmas"]["10"][2] * 2  # no longer decreasing
    (folder / "edited.json").write_text(json.dumps(edited))
    options = combo_options(nodes_mod)
    assert {"auto", "SD1", "good", "broken", "edited"} <= set(options)
    with pytest.raises(ValueError, match=r"broken\.json: is not valid JSON"):
        ays_node(nodes_mod, model, "broken")
    with pytest.raises(ValueError, match=r"edited\.json: .*not strictly decreasing"):
        ays_node(nodes_mod, model, "edited")
    assert ays_node(nodes_mod, model, "good").shape == (11,)  # the good preset still works


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "auto", "SDXL", "trailing ", "x" * 65, "con",
                                  "NUL", "com1.backup", "Lpt9", "aux .x", "searched-mine", "Searched-x"])
def test_optimiser_rejects_unsafe_or_reserved_preset_names_before_any_work(nodes_mod, user_dir, name):
    model = comfy_helpers.make_toy_model("gmm-eps")
    with pytest.raises(ValueError, match="preset name"):
        optimise(nodes_mod, model, name)
    assert not (user_dir / "sampler_scheduler").exists()


def test_optimiser_rejects_a_budget_below_one_evaluation_of_the_start(nodes_mod, user_dir):
    model = comfy_helpers.make_toy_model("gmm-eps")
    with pytest.raises(ValueError, match="budget 1000 is too small"):
        optimise(nodes_mod, model, "tiny", steps="40", budget=1000, samples=16)


def test_optimiser_spends_a_budget_smaller_than_one_batch_of_points_on_moving_points(nodes_mod, user_dir):
    from sampler_scheduler_pack.schedules.presets import load_preset

    # 10000 evaluations at 64 samples: the start costs 1280, one point of the search 64 * 31 = 1984, a batch of
    # the five odd points 9920; the budget covers four of them (it used to stop before any, KLUB unchanged)
    _, ui = optimise(nodes_mod, comfy_helpers.make_toy_model("gmm-eps"), "partial", budget=10000, samples=64,
                     refine=False)
    preset = load_preset(user_dir / "sampler_scheduler" / "ays_schedules" / "partial.json")
    assert 1280 < preset.conditioning["model_evaluations"] <= 10000
    hist = preset.klub_history[10]
    assert hist[-1] < hist[0]
    assert f"10 steps {hist[0]:.4g} -> {hist[-1]:.4g} (budget)" in ui["text"][0]


def test_optimiser_progress_bar_advances_to_its_total(nodes_mod, user_dir):
    import comfy.utils

    seen: list[tuple[int, int]] = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview=None, node_id=None: seen.append((value,
                                                                                                           total)))
    try:
        optimise(nodes_mod, comfy_helpers.make_toy_model("gmm-eps"), "progress")
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    refine = nodes_mod.ays_optimize.refine_evaluations(SMALL["samples"])  # 193 schedules x 2 solvers x 10 calls
    assert refine == (1 + 2 * (9 + 8 + 7) * 2 * 2) * 2 * 10 * SMALL["samples"]
    total = SMALL["samples"] * SMALL["reference_steps"] + SMALL["budget"] + refine  # reference + search + refine
    assert len(seen) >= 2 and all(t == total for _, t in seen)
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[-1] == total and values[0] < total


def test_a_name_whose_file_holds_another_preset_is_refused_before_optimising(nodes_mod, user_dir):
    """'a b' and 'a_b' share the file a_b.json: the second is refused up front, the first preset kept."""
    model = comfy_helpers.make_toy_model("gmm-eps")
    optimise(nodes_mod, model, "shared name", refine=False)
    path = user_dir / "sampler_scheduler" / "ays_schedules" / "shared_name.json"
    assert json.loads(path.read_text())["name"] == "shared name"
    calls = {"n": 0}
    model.set_model_unet_function_wrapper(lambda f, a: (calls.__setitem__("n", calls["n"] + 1),
                                                        f(a["input"], a["timestep"], **a["c"]))[1])
    with pytest.raises(ValueError, match="shared_name.json already holds the preset 'shared name'"):
        optimise(nodes_mod, model, "shared_name", refine=False)
    assert calls["n"] == 0
    assert json.loads(path.read_text())["name"] == "shared name"
    optimise(nodes_mod, model, "shared name", refine=False)  # the same name updates its own preset
    assert calls["n"] > 0  # (the counter sees the optimiser's model calls)


@pytest.mark.parametrize("name", ["a/b", "../../evil", "x" * 300])
def test_search_checks_its_preset_name_before_searching(nodes_mod, user_dir, name):
    model = comfy_helpers.make_toy_model("gmm-eps")
    calls = {"n": 0}
    model.set_model_unet_function_wrapper(lambda f, a: (calls.__setitem__("n", calls["n"] + 1),
                                                        f(a["input"], a["timestep"], **a["c"]))[1])
    cond = comfy_helpers.empty_conditioning()
    node = nodes_mod.search.SamplerSchedulerSearch
    with pytest.raises(ValueError, match="not allowed"):
        node.execute(model, cond, cond, 1.0, {"samples": torch.zeros(1, 4, 8, 8)}, 4, 8, 0, name, batch=2,
                     reference_steps=10)
    assert calls["n"] == 0
    assert not (user_dir / "sampler_scheduler" / "plans").exists() or not any(
        (user_dir / "sampler_scheduler" / "plans").iterdir())


@pytest.mark.parametrize("cfg", [float("nan"), float("inf")])
def test_optimiser_search_and_ksampler_name_a_cfg_that_is_not_a_number(nodes_mod, user_dir, cfg):
    """NaN passes ComfyUI's min/max checks (and its JSON reader accepts it): each node names cfg before any
    model call instead of failing later on NaN samples."""
    model = comfy_helpers.make_toy_model("gmm-eps")
    calls = {"n": 0}
    model.model.diffusion_model.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    cond = comfy_helpers.empty_conditioning()
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match="cfg must be a finite number"):
        optimise(nodes_mod, model, "nan-cfg", cfg=cfg)
    with pytest.raises(ValueError, match="cfg must be a finite number"):
        nodes_mod.search.SamplerSchedulerSearch.execute(model, cond, cond, cfg, lat, 4, 8, 0, "", batch=2,
                                                        reference_steps=10)
    with pytest.raises(ValueError, match="cfg must be a finite number"):
        nodes_mod.ksampler.SamplerSchedulerKSampler.execute(model, 0, 4, cfg, "* euler", "karras", cond, cond, lat,
                                                            1.0)
    assert calls["n"] == 0
    assert not (user_dir / "sampler_scheduler" / "ays_schedules" / "nan-cfg.json").exists()


def test_search_with_nfe_1_evaluates_every_distinct_plan_and_returns(nodes_mod, user_dir):
    """With one model call the sigmas are fixed (sigma_max -> 0) and only ~20 plans exist: the search must stop
    when they are used up (it used to draw repeats forever, deaf to cancel) and say so."""
    import threading

    model = comfy_helpers.make_toy_model("gmm-eps")
    cond = comfy_helpers.empty_conditioning()
    box: dict = {}

    def run() -> None:  # in a daemon thread: a regression fails this test instead of hanging the suite
        box["out"] = nodes_mod.search.SamplerSchedulerSearch.execute(
            model, cond, cond, 1.0, {"samples": torch.zeros(1, 4, 8, 8)}, 1, 200, 0, "", batch=2, reference_steps=10)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert "out" in box, "the NFE 1 search did not return within 120 s"
    text = box["out"].ui["text"][0]
    assert text.startswith("NFE 1,") and "every distinct plan for NFE 1 was evaluated" in text, text
    n = int(text.split(" evaluations")[0].rsplit(" ", 1)[1])
    assert 10 <= n < 200


def test_search_cancel_during_its_reference_run_stops_within_one_model_call(nodes_mod, user_dir):
    import comfy.model_management

    model = comfy_helpers.make_toy_model("gmm-eps")
    calls = {"n": 0, "after": 0}

    def hook(_module, _args, _kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the 50-step reference run
            comfy.model_management.interrupt_current_processing(True)
        elif calls["n"] > 5:
            calls["after"] += 1

    handle = model.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    cond = comfy_helpers.empty_conditioning()
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            nodes_mod.search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0,
                                                            {"samples": torch.zeros(1, 4, 8, 8)}, 4, 8, 0, "",
                                                            batch=2, reference_steps=50)
    finally:
        handle.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert calls["after"] == 0


def test_search_and_optimiser_name_an_input_below_its_lowest_value(nodes_mod, user_dir):
    """Direct calls (scripts, other nodes) skip ComfyUI's schema checks: the node names the input."""
    model = comfy_helpers.make_toy_model("gmm-eps")
    cond = comfy_helpers.empty_conditioning()
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match="batch must be at least 1, got 0"):
        nodes_mod.search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0, lat, 4, 8, 0, "", batch=0,
                                                        reference_steps=10)
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        optimise(nodes_mod, model, "low-input", max_batch=0)


def _write_preset(folder, name: str, model_identity: dict, table: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({
        "format": "sampler-scheduler-ays-schedule", "version": 1, "name": name, "model": model_identity,
        "sigmas": {str(len(table) - 1): table}, "created": "2026-11-24T10:00:00+00:00"}))


def _ays_text(nodes_mod, model, preset: str = "auto", steps: int = 10) -> str:
    return nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, preset, steps, 1.0).ui["text"][0]


def test_auto_preset_of_a_built_in_model_follows_its_model_sampling_patch(nodes_mod, user_dir):
    """A ModelSampling patch (here zsnr: sigma_max 4519 instead of 14.6) makes another model: 'auto' must not hand
    a schedule made for one to the other. A preset with the old identity ({"builtin": kind}, as the command writes)
    is still auto-picked by the unpatched model whose sigma range it spans."""
    from comfy_extras import nodes_model_advanced as nma

    plain = comfy_helpers.make_toy_model("gmm-eps")
    zsnr = nma.ModelSamplingDiscrete().patch(plain, "eps", True)[0]
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    ident = nodes_mod.presets_store.model_identity(zsnr)
    ms_z = zsnr.get_model_object("model_sampling")
    table_z = torch.logspace(math.log10(float(ms_z.sigma_max)), math.log10(float(ms_z.sigma_min)), 11).tolist()
    _write_preset(folder, "for-zsnr", ident, table_z)
    assert "for-zsnr" in _ays_text(nodes_mod, zsnr)
    assert "fallback" in _ays_text(nodes_mod, plain)
    sig = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(plain, "auto", 10, 1.0).result[0]
    assert sig[0].item() == pytest.approx(14.6146, rel=1e-4)
    ms = plain.get_model_object("model_sampling")
    table = torch.logspace(math.log10(float(ms.sigma_max)), math.log10(float(ms.sigma_min)), 11).tolist()
    _write_preset(folder, "legacy", {"builtin": "gmm-eps"}, table)
    assert "legacy" in _ays_text(nodes_mod, plain)
    assert "for-zsnr" in _ays_text(nodes_mod, zsnr)  # the legacy one spans another range: not the zsnr model's
    # v-prediction over the very same sigma range is another model too
    vpred = nma.ModelSamplingDiscrete().patch(plain, "v_prediction", False)[0]
    assert nodes_mod.presets_store.model_identity(vpred)["sampling_patch"] == "V_PREDICTION"
    assert "fallback" in _ays_text(nodes_mod, vpred)
    _write_preset(folder, "for-vpred", nodes_mod.presets_store.model_identity(vpred), table)
    assert "for-vpred" in _ays_text(nodes_mod, vpred) and "legacy" in _ays_text(nodes_mod, plain)


def test_auto_picks_the_newest_preset_by_its_creation_time_in_utc(nodes_mod, user_dir):
    model = comfy_helpers.make_toy_model("gmm-eps")
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    ms = model.get_model_object("model_sampling")
    table = torch.logspace(math.log10(float(ms.sigma_max)), math.log10(float(ms.sigma_min)), 11).tolist()
    ident = nodes_mod.presets_store.model_identity(model)
    for name, created in (("later", "2026-11-24T09:30:00-01:00"), ("earlier", "2026-11-24T10:00:00+00:00")):
        _write_preset(folder, name, ident, table)
        data = json.loads((folder / f"{name}.json").read_text())
        data["created"] = created  # 10:30 UTC and 10:00 UTC: as strings the earlier one sorts last
        (folder / f"{name}.json").write_text(json.dumps(data))
    assert "'later'" in _ays_text(nodes_mod, model)


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow", "digits"])
def test_command_presets_carry_the_nodes_identity_of_the_built_in_model(nodes_mod, kind):
    """The command writes the model type and sigma range the node's identity has, so 'auto' picks its presets
    by identity (not only through the rule for presets without a sigma range)."""
    from sampler_scheduler_pack.schedules.optimize import builtin_problem

    ident = nodes_mod.presets_store.model_identity(comfy_helpers.make_toy_model(kind))
    written = builtin_problem(kind)[3]
    assert {k: written[k] for k in ident} == ident


def test_a_preset_file_named_like_a_built_in_preset_is_skipped_not_listed_twice(nodes_mod, user_dir):
    model = comfy_helpers.make_toy_model("gmm-eps")
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    ms = model.get_model_object("model_sampling")
    table = torch.logspace(math.log10(float(ms.sigma_max)), math.log10(float(ms.sigma_min)), 11).tolist()
    for name in ("SD1", "auto", "mine"):
        _write_preset(folder, name, {"builtin": "gmm-eps"}, table)
    _write_preset(folder, "sdxl", {"builtin": "gmm-eps"}, table)  # another name than SDXL: still selectable
    options = combo_options(nodes_mod)
    assert options.count("SD1") == 1 and options.count("auto") == 1 and "mine" in options and "sdxl" in options
    sd1 = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, "SD1", 10, 1.0).result[0]
    assert sd1[1].item() != pytest.approx(table[1], rel=1e-3)  # the published table, not the file's
    own = nodes_mod.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, "sdxl", 10, 1.0).result[0]
    assert own[1].item() == pytest.approx(table[1], rel=1e-5)
    assert "'mine'" in _ays_text(nodes_mod, model) or "'sdxl'" in _ays_text(nodes_mod, model)


def test_ksampler_with_the_ays_scheduler_runs_again_after_a_preset_changes(nodes_mod, user_dir):
    """ComfyUI reuses a node's cached output unless an input or its fingerprint changed: with scheduler 'ays' the
    KSampler's sigmas depend on the saved presets, so its fingerprint follows the preset folder."""
    ks = nodes_mod.ksampler.SamplerSchedulerKSampler
    before = ks.fingerprint_inputs(scheduler="ays", steps=10)
    assert ks.fingerprint_inputs(scheduler="karras", steps=10) == ()  # presets never read: cached as usual
    model = comfy_helpers.make_toy_model("gmm-eps")
    ms = model.get_model_object("model_sampling")
    table = torch.logspace(math.log10(float(ms.sigma_max)), math.log10(float(ms.sigma_min)), 11).tolist()
    folder = user_dir / "sampler_scheduler" / "ays_schedules"
    _write_preset(folder, "new", {"builtin": "gmm-eps"}, table)
    after_save = ks.fingerprint_inputs(scheduler="ays", steps=10)
    assert after_save != before
    table[3] = float(f"{table[3] * 1.01:.4f}")  # a rewrite of the same preset (the file's size changes: file times
    # may not, within one clock tick)
    _write_preset(folder, "new", {"builtin": "gmm-eps"}, table)
    assert ks.fingerprint_inputs(scheduler="ays", steps=10) != after_save
    # ComfyUI passes only widget values: with the scheduler from a link the fingerprint still follows the folder
    assert ks.fingerprint_inputs(steps=10) == ks.fingerprint_inputs(scheduler="ays", steps=10)


def test_every_node_input_has_a_tooltip_and_every_seed_its_control_widget(nodes_mod):
    """Tooltips everywhere; every 'seed' has its 'control after generate' widget."""
    node_classes = nodes_mod.node_list()
    seeds = {}
    for cls in node_classes:
        schema = cls.define_schema()
        for inp in schema.inputs:
            assert getattr(inp, "tooltip", None), f"{schema.node_id}.{inp.id} has no tooltip"
            if inp.id == "seed":
                seeds[schema.node_id] = inp.as_dict().get("control_after_generate")
    # every seed keeps its control widget, so saved workflows keep their widget layout (the frontend extension
    # starts the Search's and the Optimiser's at 'fixed': test_browser)
    assert seeds == {"SamplerSchedulerKSampler": True, "SamplerSchedulerSearch": True,
                     "SamplerSchedulerAYSOptimize": True}
