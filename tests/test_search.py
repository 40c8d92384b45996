"""Solver-schedule search (S3): exact NFE budget, determinism, plan round trip, predictor, and the node in ComfyUI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sampler_core import search as S
from sampler_core.loop import plan_nfe, sample_plan
from sampler_core.models.gmm import for_latent_cached
from sampler_core.plan import Plan, parse_plan, resolve_plan

SHAPE = (4, 4, 4)


pytestmark = pytest.mark.usefixtures("one_thread")


class Counting:
    """A GMM denoiser that counts its calls."""

    def __init__(self, kind: str = "eps") -> None:
        self.gmm = for_latent_cached(SHAPE)
        self.kind = kind
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.gmm.denoise_flow(x, sigma) if self.kind == "flow" else self.gmm.denoise(x, sigma)


def problem(kind: str = "eps") -> S.Problem:
    return S.builtin_model("gmm-flow" if kind == "flow" else "gmm-eps")[1]


def small_search(kind: str = "eps", nfe: int = 4, evaluations: int = 30, seed: int = 0, batch: int = 4,
                 den: Counting | None = None, **cfg) -> tuple[S.SearchResult, Counting, torch.Tensor]:
    den = den or Counting(kind)
    prob = problem(kind)
    noise = torch.randn((batch, *SHAPE), generator=torch.Generator().manual_seed(7))
    x0 = S.start_latents(prob, noise)
    ref = S.reference_run(den, x0, prob, 40)
    den.calls = 0
    res = S.search_plan(den, model_kind=prob.model_kind, sigma_min=prob.sigma_min, sigma_max=prob.sigma_max,
                        nfe=nfe, x_start=x0, ref=ref, seed=seed,
                        config=S.SearchConfig(evaluations=evaluations, initial=12, **cfg))
    return res, den, x0


@pytest.mark.parametrize("kind,nfe", [("eps", 4), ("flow", 5), ("eps", 2)])
def test_search_meets_the_nfe_budget_exactly_in_reported_and_counted_model_calls(kind, nfe):
    res, den, x0 = small_search(kind, nfe)
    assert res.nfe == nfe
    assert plan_nfe(res.plan, res.sigmas, model_kind=kind) == nfe
    # every evaluated candidate used at most the budget
    assert den.calls == res.model_calls
    assert res.model_calls <= res.evaluations * nfe
    assert res.model_calls >= nfe * sum(1 for r in res.history if r["fitness"] is not None)
    den.calls = 0
    stats: dict = {}
    sample_plan(lambda x, s, **_: den(x, s), x0.clone(), res.sigmas, extra_args={"seed": 0}, plan=res.plan,
                model_kind=kind, stats=stats)
    assert den.calls == stats["nfe"] == nfe


def test_budget_repair_with_two_call_methods_keeps_every_candidate_on_budget():
    space = [S._choice("heun"), S._choice("usf", order=2), S._choice("dpmpp_2m")]
    prob = problem("eps")
    den = Counting()
    noise = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(1))
    x0 = S.start_latents(prob, noise)
    ref = S.reference_run(den, x0, prob, 30)
    seen = []

    def progress(row, total):
        seen.append(row)

    res = S.search_plan(den, model_kind="eps", sigma_min=prob.sigma_min, sigma_max=prob.sigma_max, nfe=7,
                        x_start=x0, ref=ref, space=space, config=S.SearchConfig(evaluations=25, initial=10),
                        progress=progress)
    assert len(seen) == 25
    assert all(r["fitness"] is not None for r in seen)  # none was rejected for its NFE
    assert res.nfe == 7
    n = len(res.sigmas) - 1
    two_call = sum(1 for name, _ in resolve_plan(res.plan, n)[:-1] if name == "heun")
    assert n + two_call == 7


def test_search_is_deterministic_for_a_seed_and_depends_on_it():
    a, _, _ = small_search(seed=3)
    b, _, _ = small_search(seed=3)
    c, _, _ = small_search(seed=4)
    assert a.plan.to_text() == b.plan.to_text()
    assert torch.equal(a.sigmas, b.sigmas)
    assert [r["fitness"] for r in a.history] == [r["fitness"] for r in b.history]
    assert [r["fitness"] for r in a.history] != [r["fitness"] for r in c.history]


def test_restarts_keep_the_independent_run_with_the_lowest_search_fitness_and_count_every_evaluation():
    # 45 evaluations: past the 20 seeded starting plans, so the runs differ (seeds 7, 8, 9: not the first is best)
    runs = [small_search(kind="flow", nfe=5, evaluations=45, seed=seed)[0] for seed in (7, 8, 9)]
    assert len({r.fitness for r in runs}) == 3
    best = min(runs, key=lambda r: r.fitness)
    res, den, _ = small_search(kind="flow", nfe=5, evaluations=45, seed=7, restarts=3)
    assert best is not runs[0] and res.fitness == best.fitness
    assert res.plan == best.plan and torch.equal(res.sigmas, best.sigmas)
    assert res.evaluations == len(res.history) == 135
    assert [r["eval"] for r in res.history] == list(range(1, 136))
    assert [r["fitness"] for r in res.history] == [r["fitness"] for run in runs for r in run.history]
    assert [r["restart"] for r in res.history] == [0] * 45 + [1] * 45 + [2] * 45
    bests = [r["best"] for r in res.history]
    assert bests[44] == runs[0].fitness and bests[89] == min(runs[0].fitness, runs[1].fitness)
    assert bests == sorted(bests, reverse=True) and bests[-1] == best.fitness  # best over every run so far
    assert res.model_calls == den.calls == sum(r.model_calls for r in runs)
    assert res.baselines == runs[0].baselines
    with pytest.raises(ValueError, match="restarts"):
        S.SearchConfig(restarts=0)


def test_restarts_run_the_reference_once():
    den = Counting("flow")
    prob = problem("flow")
    x0 = S.start_latents(prob, torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(7)))
    kw = dict(model_kind="flow", sigma_min=prob.sigma_min, sigma_max=prob.sigma_max, nfe=4, x_start=x0,
              reference_steps=30, seed=2)
    one = S.search_plan(den, config=S.SearchConfig(evaluations=30, initial=12), **kw)
    assert one.model_calls == den.calls
    den.calls = 0
    two = S.search_plan(den, config=S.SearchConfig(evaluations=30, initial=12, restarts=2), **kw)
    assert two.model_calls == den.calls
    ref = S.reference_run(Counting("flow"), x0, prob, 30)
    second = S.search_plan(den, config=S.SearchConfig(evaluations=30, initial=12), ref=ref, **{**kw, "seed": 3})
    assert two.model_calls == one.model_calls + second.model_calls  # the second run adds no reference calls


def test_searched_plan_round_trips_through_text_and_json_and_resolves_to_its_steps():
    res, _, _ = small_search(nfe=6, evaluations=40)
    plan = res.plan
    assert parse_plan(plan.to_text()) == plan
    assert Plan.from_json(plan.to_json()) == plan
    n = len(res.sigmas) - 1
    steps = resolve_plan(parse_plan(plan.to_text()), n)
    assert len(steps) == n
    # neighbours with equal choices are merged: consecutive segments differ
    segs = plan.segments
    assert all((segs[i].method, dict(segs[i].options)) != (segs[i + 1].method, dict(segs[i + 1].options))
               for i in range(len(segs) - 1))


def test_search_beats_its_seeded_single_method_karras_plans():
    res, _, _ = small_search(nfe=5, evaluations=60)
    assert res.baselines and all(math.isfinite(v) for v in res.baselines.values())
    assert res.fitness < 0.8 * min(res.baselines.values())
    assert res.history[-1]["best"] == res.fitness


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_schedule_knobs_give_decreasing_sigmas_in_the_model_range(kind):
    prob = problem(kind)
    rng = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 6, 9):
        for _ in range(20):
            knobs = torch.rand(S.N_FIXED_KNOBS + 9, generator=rng).tolist()
            sig = S.schedule_sigmas(prob, n, knobs)
            assert len(sig) == n + 1 and sig[-1] == 0
            assert sig[0] == torch.tensor(prob.sigma_max, dtype=torch.float32)
            assert bool(torch.all(sig[1:] < sig[:-1]))
            assert float(sig[-2]) >= prob.sigma_min * 0.999


@pytest.mark.parametrize("kl", [0.0, 1.0, 0.5])
def test_kl_knob_blends_karras_with_the_kl_optimal_spacing(kl):
    """kl = 0: Karras rho = 7; kl = 1: sigmas evenly spaced in atan(sigma) (ComfyUI's kl_optimal); between: the
    geometric blend. Knobs: rho -> 7, last -> sigma_min, offsets 0.5 (no move)."""
    prob = problem("eps")
    rho_u = (math.log(7.0) - math.log(S.RHO_RANGE[0])) / (math.log(S.RHO_RANGE[1]) - math.log(S.RHO_RANGE[0]))
    n = 8
    sig = S.schedule_sigmas(prob, n, [rho_u, 0.0, 0.5, kl] + [0.5] * n).double()[:-1]
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    hi, lo = prob.sigma_max, prob.sigma_min
    karras = (hi ** (1 / 7) + ramp * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    tan = torch.tan(math.atan(hi) + ramp * (math.atan(lo) - math.atan(hi)))
    want = torch.exp((1 - kl) * karras.log() + kl * tan.log())
    assert torch.allclose(sig, want, rtol=1e-5)


def test_predictor_reduces_real_evaluations_on_a_small_problem():
    """Same search with and without the predictor, six seeds: evaluations until each reaches the final
    fitness of the run without it (81 when never)."""
    with_p, without_p = [], []
    for seed in range(6):
        res_w, _, _ = small_search(nfe=4, evaluations=80, seed=seed, batch=8)
        res_o, _, _ = small_search(nfe=4, evaluations=80, seed=seed, batch=8, use_predictor=False)
        target = res_o.fitness
        with_p.append(S.evals_to_reach(res_w.history, target) or 81)
        without_p.append(S.evals_to_reach(res_o.history, target))
    assert sum(with_p) < sum(without_p), (with_p, without_p)


def test_candidates_with_the_same_choices_and_sigmas_cost_one_real_evaluation():
    """On an eps model the ``top`` knob does not shape the sigmas: two candidates differing only there run the
    same plan, so the second is answered from the cache (no evaluation row, no model calls)."""
    den = Counting("eps")
    prob = problem("eps")
    x0 = S.start_latents(prob, torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(3)))
    s = S._Searcher(den, prob, 4, x0, torch.zeros_like(x0), None, S.SearchConfig(evaluations=10), 0,
                    S.default_space(), {}, None, None)
    a = s.random_candidate()
    knobs = list(a.knobs)
    knobs[2] = 1.0 - knobs[2]
    b = S.Candidate(a.steps, tuple(knobs))
    assert a.key() != b.key() and torch.equal(s.sigmas(a), s.sigmas(b))
    fa = s.evaluate(a, 0)
    calls = den.calls
    assert s.evaluate(b, 0) == fa and den.calls == calls and len(s.order) == len(s.history) == 1
    knobs[4] = min(knobs[4] + 0.3, 1.0) if knobs[4] < 0.7 else knobs[4] - 0.3  # moves point 1: a new plan
    c = S.Candidate(a.steps, tuple(knobs))
    s.evaluate(c, 0)
    assert len(s.order) == 2 and den.calls > calls


def test_flow_reference_run_puts_every_sample_where_a_finer_float64_solve_does():
    """The search's reference on a flow model must resolve the high-noise end (s = 1 down to 0.99): a single
    first step there sends samples near a mixture-component boundary into another component, an error that
    comparing N with 2N steps of the same schedule cannot see. Checked per sample against an independent
    solve: float64, 600 log-uniform steps in VE sigma from 1e6 (s = 0.999999)."""
    den, prob, shape = S.builtin_model("gmm-flow")
    kw = {"flow_first_sigma": S.flow_first_sigma()}
    x0 = S.start_latents(prob, torch.randn((2048, *shape), generator=torch.Generator().manual_seed(1000)))
    lo, hi = math.log(prob.to_ve(prob.sigma_min)), math.log(1e6)
    ve = [math.exp(hi + i / 599 * (lo - hi)) for i in range(600)]
    fine_sig = torch.tensor([1.0] + [prob.from_ve(v) for v in ve] + [0.0], dtype=torch.float64)
    fine = sample_plan(S._k_model(den), x0.double(), fine_sig, extra_args={"seed": 0}, plan="usf",
                       model_kind="flow", **kw)
    ref = S.reference_run(den, x0, prob, 200, kw)
    per_sample = (ref.double() - fine).flatten(1).pow(2).mean(1).sqrt()
    assert float(per_sample.max()) < 1e-3
    sig = S.reference_sigmas(prob, 200)
    assert sig[0] == 1.0 and sig[-1] == 0.0 and bool((sig[1:] < sig[:-1]).all()) and sig.numel() == 201
    assert prob.to_ve(float(sig[1])) == pytest.approx(1e4, rel=1e-6)
    assert float(sig[-2]) == pytest.approx(prob.sigma_min, rel=1e-6)


@pytest.mark.parametrize("steps", [2, 3, 10, 100])
def test_reference_schedule_is_valid_for_flow_models_starting_below_one_and_for_few_steps(steps):
    from sampler_core.loop import check_schedule

    for prob in (S.Problem("flow", 0.003, 1.0), S.Problem("flow", 0.003, 0.9), S.Problem("eps", 0.03, 14.6)):
        sig = S.reference_sigmas(prob, steps)
        check_schedule(sig.tolist(), model_kind=prob.model_kind)
        assert sig.numel() == steps + 1 and float(sig[-1]) == 0.0
        assert float(sig[0]) == pytest.approx(prob.sigma_max, rel=1e-9)
        assert float(sig[-2]) == pytest.approx(prob.sigma_min, rel=1e-9)


def test_sliced_w2_is_zero_for_the_same_set_and_grows_with_a_shift():
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    assert S.sliced_w2(x, x) < 1e-9
    assert S.sliced_w2(x + 1.0, x) > S.sliced_w2(x + 0.1, x) > 0.01


def test_search_with_data_uses_a_distribution_distance():
    den = Counting()
    prob = problem("eps")
    data = den.gmm.sample(256, torch.Generator().manual_seed(0)).float()
    noise = torch.randn((16, *SHAPE), generator=torch.Generator().manual_seed(1))
    res = S.search_plan(den, model_kind="eps", sigma_min=prob.sigma_min, sigma_max=prob.sigma_max, nfe=4,
                        x_start=S.start_latents(prob, noise), data=data, config=S.SearchConfig(evaluations=16,
                                                                                                initial=10))
    x = sample_plan(lambda x, s, **_: den(x, s), S.start_latents(prob, noise), res.sigmas, extra_args={"seed": 0},
                    plan=res.plan, model_kind="eps")
    assert res.fitness == pytest.approx(S.sliced_w2(x, data, seed=0), rel=1e-6)


def test_restarts_of_a_data_search_score_the_same_plan_alike_so_their_best_compare():
    """With data the fitness depends on the SDE noise and the sliced-W2 directions: every restart uses the
    search's seed for both, so the seeded starting plans (the same in each run) score the same in each."""
    den = Counting()
    prob = problem("eps")
    data = den.gmm.sample(256, torch.Generator().manual_seed(0)).float()
    noise = torch.randn((16, *SHAPE), generator=torch.Generator().manual_seed(1))
    res = S.search_plan(den, model_kind="eps", sigma_min=prob.sigma_min, sigma_max=prob.sigma_max, nfe=4,
                        x_start=S.start_latents(prob, noise), data=data, seed=3,
                        config=S.SearchConfig(evaluations=24, initial=22, restarts=2))
    first = [r["fitness"] for r in res.history if r["restart"] == 0 and r["stage"] == 0][:len(res.baselines)]
    second = [r["fitness"] for r in res.history if r["restart"] == 1 and r["stage"] == 0][:len(res.baselines)]
    assert len(first) == len(res.baselines) >= 12 and first == second
    assert list(res.baselines.values()) == first


def test_command_writes_a_plan_file_for_a_builtin_model(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert S.main(["--model", "gmm-flow", "--nfe", "3", "--out", str(out), "--evaluations", "12", "--batch", "2",
                   "--reference-steps", "20"]) == 0
    data = json.loads(out.read_text())
    plan = parse_plan(data["plan"])
    assert Plan.from_dict(data["plan_json"]) == plan
    assert data["nfe"] == 3 and data["model_kind"] == "flow"
    assert plan_nfe(plan, torch.tensor(data["sigmas"]), model_kind="flow") == 3
    assert "searched gmm-flow at NFE 3" in capsys.readouterr().out


def test_command_rejects_fewer_than_one_restart(tmp_path, capsys):
    with pytest.raises(SystemExit):
        S.main(["--model", "gmm-eps", "--nfe", "3", "--out", str(tmp_path / "p.json"), "--restarts", "0"])
    assert "--restarts must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_command_rejects_an_unknown_predictor_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        S.main(["--model", "gmm-eps", "--nfe", "3", "--out", str(tmp_path / "p.json"), "--predictor", "boosting"])
    assert "boosting" in capsys.readouterr().err


# --------------------------------------------------------------------------- in ComfyUI


def _counted(model_patcher) -> dict:
    box = {"calls": 0}

    def hook(_module, _args, _kwargs):
        box["calls"] += 1

    model_patcher.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    return box


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_search_node_plan_and_sigmas_run_unchanged_in_ksampler_solver_mix_and_ays_sigmas(pack, user_dir, kind):
    import comfy_helpers

    nodes = pack.nodes
    model = comfy_helpers.make_toy_model(kind)
    box = _counted(model)
    cond = comfy_helpers.empty_conditioning()
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    out = nodes.search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0, lat, 4, 12, 0, "unit", batch=2,
                                                      reference_steps=20)
    plan_text, sigmas = out.result
    assert box["calls"] >= 4 * 12  # the search evaluated the real ComfyUI model
    plan = parse_plan(plan_text)
    n = len(sigmas) - 1
    assert sigmas[-1] == 0 and len(resolve_plan(plan, n)) == n
    # saved: plan preset and an AYS preset AYS Sigmas lists and reproduces
    saved = json.loads((user_dir / "sampler_scheduler" / "plans" / "unit.json").read_text())
    assert saved["plan"] == plan_text and saved["sigmas"] == [float(v) for v in sigmas.tolist()]
    assert "searched-unit" in nodes.ays_sigmas.preset_options()
    ays = nodes.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, "searched-unit", n, 1.0).result[0]
    assert torch.allclose(ays, sigmas, rtol=1e-6)
    # at other step counts (resampled as AYS tables are) it stays within the searched range, never below
    # the model's sigma_min (the search often ends there)
    ms = model.get_model_object("model_sampling")
    for k in (1, n - 1, n + 1, 2 * n, 3 * n, 50):
        other = nodes.ays_sigmas.SamplerSchedulerAYSSigmas.execute(model, "searched-unit", k, 1.0).result[0]
        assert len(other) == k + 1 and other[-1] == 0 and bool((other[1:] < other[:-1]).all())
        assert other[:-1].min().item() >= min(float(sigmas[-2]), float(ms.sigma_min)) * (1 - 1e-6), k
        assert other[0].item() == pytest.approx(float(sigmas[0]), rel=1e-6)
    # our KSampler: plan text + SIGMAS input
    box["calls"] = 0
    res = nodes.ksampler.SamplerSchedulerKSampler.execute(model, 5, 99, 1.0, plan_text, "karras", cond, cond,
                                                          {"samples": torch.zeros(2, 4, 8, 8)}, 1.0, sigmas=sigmas)
    assert torch.isfinite(res.result[0]["samples"]).all()
    assert box["calls"] == 4 and "NFE 4" in res.ui["text"][0]
    # Solver Mix in ComfyUI's sample_custom path, same noise: same result as the KSampler
    sampler = nodes.solver_mix.SamplerSchedulerSolverMix.execute(plan_text).result[0]
    import comfy.sample

    noise = comfy.sample.prepare_noise(torch.zeros(2, 4, 8, 8), 5)
    box["calls"] = 0
    mix = comfy_helpers.run_comfy_sampler(model, sampler, sigmas, noise, seed=5)
    assert box["calls"] == 4
    assert torch.allclose(mix, res.result[0]["samples"], atol=1e-5)


@pytest.mark.parametrize("kind", ["gmm-eps", "gmm-flow"])
def test_a_searched_schedule_ending_at_sigma_min_stays_in_range_at_other_step_counts(pack, user_dir, kind):
    """The search often puts its last positive sigma on the model's sigma_min (float32). The AYS preset it saves is
    resampled at other step counts (as AYS tables are): never below sigma_min, exact at the searched count."""
    import comfy_helpers

    nodes = pack.nodes
    model = comfy_helpers.make_toy_model(kind)
    ms = model.get_model_object("model_sampling")
    smin, smax = float(ms.sigma_min), float(ms.sigma_max)
    inner = torch.logspace(math.log10(smax * 0.9), math.log10(smin * 1.5), 4, dtype=torch.float64).tolist()
    sigmas = torch.tensor([smax, *inner, smin, 0.0], dtype=torch.float32)
    sigmas[-2] = ms.sigma_min.float()  # exactly the model's own float32 sigma_min
    result = S.SearchResult(plan=parse_plan("euler"), sigmas=sigmas, fitness=0.1, nfe=6,
                            history=[{"eval": 1, "fitness": 0.1, "best": 0.1}], evaluations=1, model_calls=6,
                            seconds=0.0)
    nodes.search.save_search_preset("edge", result, nodes.presets_store.model_identity(model), {}, smin)
    ays = nodes.ays_sigmas.SamplerSchedulerAYSSigmas
    assert torch.allclose(ays.execute(model, "searched-edge", 6, 1.0).result[0], sigmas, rtol=1e-6)
    for k in (2, 5, 7, 12, 18, 60, 1000):
        other = ays.execute(model, "searched-edge", k, 1.0).result[0]
        assert len(other) == k + 1 and other[-1] == 0 and bool((other[1:] < other[:-1]).all())
        assert other[:-1].min().item() >= smin * (1 - 1e-6), (k, other[:-1].min().item(), smin)


def test_search_node_restarts_spend_every_run_and_record_them_in_the_preset(pack, user_dir):
    import comfy_helpers

    model = comfy_helpers.make_toy_model("gmm-eps")
    box = _counted(model)
    cond = comfy_helpers.empty_conditioning()
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    node = pack.nodes.search.SamplerSchedulerSearch
    one = node.execute(model, cond, cond, 1.0, lat, 3, 10, 0, "", batch=1, reference_steps=10)
    calls_one = box["calls"]
    box["calls"] = 0
    out = node.execute(model, cond, cond, 1.0, lat, 3, 10, 0, "two", batch=1, reference_steps=10, restarts=2)
    assert "20 evaluations in 2 runs (the best kept)" in out.ui["text"][0]
    assert "10 evaluations," in one.ui["text"][0]
    assert calls_one < box["calls"] < 2 * calls_one  # two searches, one shared reference run
    saved = json.loads((user_dir / "sampler_scheduler" / "plans" / "two.json").read_text())
    assert saved["search"]["restarts"] == 2 and saved["plan"] == out.result[0]
    # the file keeps the best-so-far curve (rows where it changed, and the last), not every evaluation: a search of
    # 100000 evaluations x 16 restarts must still give a plan file the import dialog reads (at most 2 MB)
    rows = saved["history"]
    assert rows[0]["eval"] == 1 and rows[-1]["eval"] == 20 and len(rows) < 20
    assert all(a["best"] != b["best"] for a, b in zip(rows[:-2], rows[1:-1], strict=True))
    err_one = float(one.ui["text"][0].split("RMSE to the reference ")[1].split(" ")[0])
    err_two = float(out.ui["text"][0].split("RMSE to the reference ")[1].split(" ")[0])
    assert err_two <= err_one  # the first run is the single run of the same seed; the best of both is kept


def test_search_node_stops_when_comfyui_is_interrupted(pack, user_dir):
    import comfy.model_management

    import comfy_helpers

    model = comfy_helpers.make_toy_model("gmm-flow")
    cond = comfy_helpers.empty_conditioning()
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            pack.nodes.search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0,
                                                             {"samples": torch.zeros(1, 4, 8, 8)}, 4, 12, 0, "",
                                                             batch=1, reference_steps=10)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert not (user_dir / "sampler_scheduler" / "plans").exists()


@pytest.mark.parametrize("name", ["nul", "COM3.plan", "searched-x", "../up"])
def test_search_node_rejects_a_preset_name_that_cannot_be_a_file_before_any_work(pack, user_dir, name):
    import comfy_helpers

    model = comfy_helpers.make_toy_model("gmm-eps")
    cond = comfy_helpers.empty_conditioning()
    with pytest.raises(ValueError, match="preset name"):
        pack.nodes.search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0, {"samples": torch.zeros(1, 4, 8, 8)},
                                                         4, 12, 0, name, batch=1, reference_steps=10)
    assert not (user_dir / "sampler_scheduler").exists()


def test_server_search_node_feeds_plan_and_sigmas_to_ksampler_and_solver_mix(comfy_server):
    from comfy_server import execution_error

    prompt = {
        "1": {"class_type": "SamplerSchedulerToyModel",
              "inputs": {"model": "gmm-eps", "width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "SamplerSchedulerSearch",
              "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "cfg": 1.0,
                         "latent": ["1", 2], "nfe": 4, "evaluations": 12, "seed": 0, "preset_name": "server-test",
                         "batch": 2, "reference_steps": 20}},
        "2": {"class_type": "SamplerSchedulerKSampler",
              "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 1], "latent_image": ["1", 2],
                         "seed": 1, "steps": 20, "cfg": 1.0, "plan": ["5", 0], "scheduler": "karras",
                         "denoise": 1.0, "sigmas": ["5", 1]}},
        "6": {"class_type": "SamplerSchedulerSolverMix", "inputs": {"plan": ["5", 0]}},
        "7": {"class_type": "SamplerCustom",
              "inputs": {"model": ["1", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0, "positive": ["1", 1],
                         "negative": ["1", 1], "sampler": ["6", 0], "sigmas": ["5", 1], "latent_image": ["1", 2]}},
        "3": {"class_type": "SamplerSchedulerToyDecode", "inputs": {"samples": ["2", 0], "model": "gmm-eps"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        "8": {"class_type": "SamplerSchedulerToyDecode", "inputs": {"samples": ["7", 0], "model": "gmm-eps"}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    entry = comfy_server.run(prompt)
    assert execution_error(entry) is None, execution_error(entry)
    outputs = entry["outputs"]
    search_text = outputs["5"]["text"][0]
    plan_text = search_text.split("\n", 1)[1]
    plan = parse_plan(plan_text)
    assert "NFE 4" in search_text and "server-test" in search_text
    assert "NFE 4" in outputs["2"]["text"][0] and "SIGMAS input" in outputs["2"]["text"][0]
    assert plan.to_text() == plan_text
    assert outputs["4"]["images"] and outputs["9"]["images"]
    # the import dialog's list of saved plans (GET route) has it
    saved = {p["name"]: p for p in comfy_server.get("/sampler_scheduler/plans")["plans"]}
    assert saved["server-test"]["plan"] == plan_text and saved["server-test"]["nfe"] == 4


def test_saved_plans_list_the_search_nodes_presets_and_name_every_unusable_file(pack, user_dir):
    import comfy_helpers

    search = pack.nodes.search
    assert search.saved_plans() == {"plans": [], "errors": []}  # no folder yet
    model = comfy_helpers.make_toy_model("gmm-eps")
    cond = comfy_helpers.empty_conditioning()
    plan_text, _ = search.SamplerSchedulerSearch.execute(model, cond, cond, 1.0, {"samples": torch.zeros(1, 4, 8, 8)},
                                                         3, 8, 0, "kept", batch=1, reference_steps=10).result
    folder = user_dir / "sampler_scheduler" / "plans"
    good = json.loads((folder / "kept.json").read_text())
    (folder / "a-corrupt.json").write_bytes(b"\xff\x00 not json")
    (folder / "b-nan.json").write_text(json.dumps({**good, "name": "nan"}).replace('"nfe": 3', '"nfe": NaN'))
    (folder / "c-bad-plan.json").write_text(json.dumps({**good, "name": "bad", "plan": "* no_such_method"}))
    (folder / "d-other.json").write_text(json.dumps({"format": "something else", "plan": "* euler"}))
    (folder / "e-no-name.json").write_text(json.dumps({**good, "name": ""}))
    (folder / "f-deep.json").write_text("[" * 100_000 + "]" * 100_000)  # nested too deeply for the parser
    out = search.saved_plans()
    assert [(p["name"], p["plan"], p["nfe"]) for p in out["plans"]] == [("kept", plan_text, 3)]
    problems = {e["file"]: e["error"] for e in out["errors"]}
    assert "not UTF-8" in problems["a-corrupt.json"] and "NaN" in problems["b-nan.json"]
    assert "does not parse" in problems["c-bad-plan.json"] and "no_such_method" in problems["c-bad-plan.json"]
    assert "is not a saved plan" in problems["d-other.json"] and "no name" in problems["e-no-name.json"]
    assert "nested too deeply" in problems["f-deep.json"]
    for file, msg in problems.items():  # the file's name only: the list goes to any HTTP client of the server
        assert msg.startswith(f"saved plan {file}: ") and str(folder) not in msg


def test_one_hot_predictor_features_cover_plans_with_an_analytical_first_step():
    """A plan of nfe + 1 steps (``afs`` first, no model call) has a one-hot slot for every step."""
    prob = problem("eps")
    space = S.default_space()
    x0 = S.start_latents(prob, torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(0)))
    s = S._Searcher(Counting("eps"), prob, 3, x0, torch.zeros_like(x0), None, S.SearchConfig(one_hot=True), 0, space,
                    {}, None, None)
    afs = space.index(S._choice("afs", pred="noise"))
    c = S.Candidate(s.repair([afs, s.single[0], s.single[0], s.single[0]]), tuple([0.5] * s.n_knobs))
    assert len(c.steps) == 4 and S.steps_nfe(space, c.steps) == 3
    f = s.features(c)
    assert sum(f[-4 * len(space):]) == 4.0


def _searcher_with_history(predictor: str, n: int = 40) -> S._Searcher:
    """A searcher whose history holds ``n`` real evaluations of random candidates (small GMM problem)."""
    prob = problem("eps")
    x0 = S.start_latents(prob, torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(3)))
    den = Counting("eps")
    ref = S.reference_run(den, x0, prob, 40)
    s = S._Searcher(den, prob, 4, x0, ref, None, S.SearchConfig(predictor=predictor), 0, S.default_space(), {},
                    None, None)
    while len(s.order) < n:
        c = s.random_candidate()
        if s.key(c) not in s.evaluated:
            s.evaluate(c, 0)
    return s


def test_auto_predictor_uses_the_model_with_the_lower_leave_one_out_error_on_the_log_fitness_scale():
    s = _searcher_with_history("auto")
    predict = s.fit_predictor()
    xs_lin = np.array([s.features(c, True) for c, _ in s.order])
    xs_raw = np.array([s.features(c, False) for c, _ in s.order])
    ys = np.log(np.array([f for _, f in s.order]))
    ridge, kernel = S.Ridge().fit(xs_lin, ys), S.KernelRidge().fit(xs_raw, ys)
    errors = {"Ridge": ridge.loo, "KernelRidge": kernel.loo * kernel.y_sd**2}
    chosen = min(errors, key=errors.get)
    assert list(s.predictor_log[-1]["loo"]) == [chosen]
    assert s.predictor_log[-1]["loo"][chosen] == pytest.approx(errors[chosen])
    new = [s.random_candidate() for _ in range(5)]
    model, feats = (ridge, True) if chosen == "Ridge" else (kernel, False)
    expected = model.predict(np.array([s.features(c, feats) for c in new]))
    assert np.allclose(predict(new), expected)
    # the leave-one-out error is an honest error estimate: above the in-sample error of the same fit
    assert errors["Ridge"] > float(np.mean((ridge.predict(xs_lin) - ys) ** 2))


def test_forest_learns_an_interaction_that_a_linear_model_cannot():
    """y = x0 if x1 > 0.5 else -x0 (plus noise), 40 more features of noise: the forest's held-out error is far below
    the linear ridge's, its out-of-bag error estimates that held-out error, and it is deterministic for a seed."""
    rng = np.random.default_rng(0)
    x, xt = rng.random((200, 42)), rng.random((300, 42))

    def truth(v: np.ndarray) -> np.ndarray:
        return np.where(v[:, 1] > 0.5, v[:, 0], -v[:, 0])

    y = truth(x) + 0.05 * rng.standard_normal(200)
    forest = S.Forest(seed=1).fit(x, y)
    err_forest = float(np.mean((forest.predict(xt) - truth(xt)) ** 2))
    err_ridge = float(np.mean((S.Ridge().fit(x, y).predict(xt) - truth(xt)) ** 2))
    assert err_forest < 0.5 * err_ridge
    assert 0.3 * err_forest < forest.loo < 3 * err_forest + 0.01
    assert np.array_equal(S.Forest(seed=1).fit(x, y).predict(xt), forest.predict(xt))
    assert not np.array_equal(S.Forest(seed=2).fit(x, y).predict(xt), forest.predict(xt))


def test_forest_predictor_screens_with_a_forest_fitted_on_every_evaluation():
    s = _searcher_with_history("forest")
    predict = s.fit_predictor()
    assert list(s.predictor_log[-1]["loo"]) == ["Forest"] and s.predictor_log[-1]["stage_evals"] == 40
    new = [s.random_candidate() for _ in range(5)]
    out = predict(new)
    assert out.shape == (5,) and np.isfinite(out).all()
    ys = np.log(np.array([f for _, f in s.order]))
    assert ys.min() - 1e-9 <= out.min() and out.max() <= ys.max() + 1e-9  # means of leaves: within the data


def test_mean_predictor_averages_the_linear_and_kernel_predictions():
    s = _searcher_with_history("mean")
    predict = s.fit_predictor()
    ys = np.log(np.array([f for _, f in s.order]))
    ridge = S.Ridge().fit(np.array([s.features(c, True) for c, _ in s.order]), ys)
    kernel = S.KernelRidge().fit(np.array([s.features(c, False) for c, _ in s.order]), ys)
    new = [s.random_candidate() for _ in range(5)]
    both = (ridge.predict(np.array([s.features(c, True) for c in new]))
            + kernel.predict(np.array([s.features(c, False) for c in new]))) / 2
    assert set(s.predictor_log[-1]["loo"]) == {"Ridge", "KernelRidge"}
    assert np.allclose(predict(new), both)


def test_unknown_predictor_name_or_a_too_small_window_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown predictor 'boosting'"):
        S.SearchConfig(predictor="boosting")
    with pytest.raises(ValueError, match="predictor_window"):
        S.SearchConfig(predictor_window=1)


def test_kernel_predictors_fit_only_the_latest_window_of_evaluations():
    s = _searcher_with_history("auto", n=30)
    s.cfg = S.SearchConfig(predictor="auto", predictor_window=12)
    s.fit_predictor()
    assert s.predictor_log[-1]["stage_evals"] == 12
    s.cfg = S.SearchConfig(predictor="ridge", predictor_window=12)  # the linear default keeps every evaluation
    s.fit_predictor()
    assert s.predictor_log[-1]["stage_evals"] == 30
