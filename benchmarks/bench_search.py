"""Solver-schedule search (S3) benchmark: searched plans vs the best ComfyUI sampler x scheduler, on held-out noise.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_search [--quick] [--out benchmarks/search_results]

For each built-in model (gmm-eps, gmm-flow, digits) and NFE 5 and 8:

1. ComfyUI's built-in samplers x schedulers run on EVALUATION noise (seed ``EVAL_NOISE_SEED``) through real
   ComfyUI, with bench_solvers' machinery (:class:`benchmarks.bench_solvers.ModelBench`: the float64
   reference ODE solution from the same noise, the step count with counted model calls <= the NFE); the
   best deterministic pair by RMSE to the reference is the baseline.
2. ``sampler_core.search.search_plan`` searches on SEARCH noise (seed ``SEARCH_NOISE_SEED``, its own
   reference run), never seeing the evaluation noise.
3. The searched plan text + sigmas run unchanged as our Solver Mix sampler through ComfyUI on the evaluation
   noise (model calls counted); its RMSE to the same reference is compared: ratio = searched / best ComfyUI.

Predictor: the same search with and without the learned predictor (same seeds, same proposal mechanism),
real evaluations until each run first reaches the final fitness of the run without the predictor.
Torch runs on one thread. Writes ``<out>/results.json`` and ``benchmarks/SEARCH_RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workers import log

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gmm-eps", "gmm-flow", "digits")
NFES = (5, 8)
SEARCH_NOISE_SEED = 0  # noise the search measures fitness on (and the search's own seed)
EVAL_NOISE_SEED = 1000  # held-out noise of the comparison (never seen by the search)
TARGET_RATIO = 0.6
PREDICTOR_SEED0 = 200  # search seeds of the predictor comparison (100-119 chose SearchConfig.screen_share)


def bench_args(quick: bool, batch_gmm: int | None = None, batch_digits: int | None = None) -> argparse.Namespace:
    """Settings bench_solvers' ModelBench reads. Evaluation batches are large (4096 GMM, 1024 digits): at low NFE
    the RMSE is dominated by rare samples that end in another mixture component (digit), so small batches
    make both sides' numbers depend on how many such samples the batch happens to hold."""
    return argparse.Namespace(device="cpu", quick=quick, batch_gmm=batch_gmm or (128 if quick else 4096),
                              batch_digits=batch_digits or (128 if quick else 1024), n_dirs=64, ref_steps=0,
                              ode_only=True,  # the baseline is the best deterministic pair: SDE samplers not run
                              ref_check_steps=50 if quick else 200)


def run_model(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from sampler_core import search as S

    from .bench_solvers import ModelBench
    from .metrics import rmse

    bench = ModelBench(kind, bench_args(args.quick, args.eval_batch_gmm, args.eval_batch_digits))
    shape = tuple(bench.noise.shape[1:])
    bench.noise = torch.randn((bench.batch, *shape), generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    bench.probe_noise = bench.noise[:1].clone()
    bench.nfes = args.nfes
    bench.setup_metrics()
    bench.setup_reference()
    t0 = time.perf_counter()
    bench.run_comfy_grid()
    grid_s = time.perf_counter() - t0
    ms = bench.model.model_sampling
    denoiser, _, _ = S.builtin_model(kind)
    problem = S.Problem("flow" if bench.flow else "eps", bench.sigma_min, bench.sigma_max)
    kw = {"flow_first_sigma": float(ms.percent_to_sigma(1e-4))} if bench.flow else {}
    search_batch = args.search_batch_digits if kind == "digits" else args.search_batch
    search_noise = torch.randn((search_batch, *shape), generator=torch.Generator().manual_seed(SEARCH_NOISE_SEED))
    x_start = S.start_latents(problem, search_noise)
    t0 = time.perf_counter()
    ref = S.reference_run(denoiser, x_start, problem, args.search_ref_steps, kw)
    ref_s = time.perf_counter() - t0
    out: dict[str, Any] = {"info": bench.info, "grid_seconds": grid_s, "search_reference_seconds": ref_s, "nfe": {}}
    for nfe in args.nfes:
        det = [r for r in bench.records if r["family"] == "comfy" and r["nfe_target"] == nfe and not r["stochastic"]
               and r.get("rmse") is not None and math.isfinite(r["rmse"]) and r.get("calls") is not None
               and r["calls"] <= nfe]
        best = min(det, key=lambda r: r["rmse"])
        top5 = sorted(det, key=lambda r: r["rmse"])[:5]
        cfg = S.SearchConfig(evaluations=args.evaluations, restarts=args.restarts)
        t0 = time.perf_counter()
        res = S.search_plan(denoiser, model_kind=problem.model_kind, sigma_min=problem.sigma_min,
                            sigma_max=problem.sigma_max, nfe=nfe, x_start=x_start, ref=ref, config=cfg,
                            seed=SEARCH_NOISE_SEED, sample_kwargs=kw)
        search_s = time.perf_counter() - t0 + ref_s
        text = res.plan.to_text()
        sampler, _ = bench.ci.plan_sampler(text)
        x, calls = bench.ci.run(bench.model, sampler, res.sigmas, bench.noise, seed=42)
        ours = rmse(x, bench.ref)
        rec = {
            "plan": text, "sigmas": [float(v) for v in res.sigmas.tolist()], "nfe_plan": res.nfe,
            "comfy_calls": calls, "rmse_eval": ours, "rmse_search_noise": res.fitness,
            "dist_eval": bench.dist(x), "search_seconds": search_s, "evaluations": res.evaluations,
            "best_comfy": {k: best[k] for k in ("name", "scheduler", "steps", "calls", "rmse", "dist")},
            "top_comfy": [{k: r[k] for k in ("name", "scheduler", "steps", "calls", "rmse")} for r in top5],
            "ratio": ours / best["rmse"], "baselines_search_noise": res.baselines,
            "search_batch": int(search_batch), "eval_batch": int(bench.batch), "search_predictor": cfg.predictor,
            "restarts": cfg.restarts,
        }
        log(f"[{kind}] NFE {nfe}: searched RMSE {ours:.4g} (calls {calls}) vs best ComfyUI {best['name']}/"
            f"{best['scheduler']} {best['rmse']:.4g}: ratio {rec['ratio']:.3f}; search {search_s:.1f}s")
        if args.predictor_seeds == 0:
            rec["predictor"] = {"runs": [], "reached_with": 0, "n": 0, "median_evals_with": None,
                                "median_evals_without": None}
            out["nfe"][str(nfe)] = rec
            continue
        pb = args.predictor_batch  # the reference is per sample: its first rows belong to the first noise rows
        rec["predictor"] = predictor_comparison(S, denoiser, problem, nfe, x_start[:pb], ref[:pb], kw, args)
        out["nfe"][str(nfe)] = rec
    return out


def predictor_comparison(S, denoiser, problem, nfe, x_start, ref, kw, args) -> dict[str, Any]:
    """The same search with and without the predictor over several seeds (same proposal mechanism). Target: the
    median final fitness of the runs without it; per run, the real evaluations until its best fitness first
    reaches that target (None: never, within the budget)."""
    runs: dict[bool, list] = {True: [], False: []}
    configs = {use: S.SearchConfig(evaluations=args.predictor_evaluations, use_predictor=use) for use in (True, False)}
    for seed in range(args.predictor_seeds):
        for use, cfg in configs.items():
            t0 = time.perf_counter()
            r = S.search_plan(denoiser, model_kind=problem.model_kind, sigma_min=problem.sigma_min,
                              sigma_max=problem.sigma_max, nfe=nfe, x_start=x_start, ref=ref, config=cfg,
                              seed=PREDICTOR_SEED0 + seed, sample_kwargs=kw)
            runs[use].append((r, time.perf_counter() - t0))
    target = statistics.median(r.fitness for r, _ in runs[False])
    rows = []
    for seed in range(args.predictor_seeds):
        (rw, tw), (ro, to) = runs[True][seed], runs[False][seed]
        rows.append({"seed": PREDICTOR_SEED0 + seed, "final_with": rw.fitness, "final_without": ro.fitness,
                     "evals_with": S.evals_to_reach(rw.history, target),
                     "evals_without": S.evals_to_reach(ro.history, target), "seconds_with": tw, "seconds_without": to})
    never = args.predictor_evaluations + 1

    def med(key: str) -> float:
        return statistics.median(r[key] if r[key] is not None else never for r in rows)

    return {"runs": rows, "target": target, "n": len(rows), "predictor": configs[True].predictor,
            "curve": predictor_curve(S, [r for r, _ in runs[True]], [r for r, _ in runs[False]], never),
            "reached_with": sum(r["evals_with"] is not None for r in rows),
            "reached_without": sum(r["evals_without"] is not None for r in rows),
            "median_evals_with": med("evals_with"), "median_evals_without": med("evals_without"),
            "median_final_with": statistics.median(r["final_with"] for r in rows),
            "median_final_without": statistics.median(r["final_without"] for r in rows)}


CURVE_MARKS = (50, 100, 150, 200, 250, 300)  # evaluation counts of the best-so-far curve (24 initial candidates)


def predictor_curve(S, with_runs: list, without_runs: list, never: int) -> list[dict[str, Any]]:
    """The whole best-so-far curve, not only its end: per mark k (real evaluations), the median over seeds of the
    best fitness after k evaluations with and without the predictor, and the median evaluations each takes to
    reach the level the runs without the predictor have at k (``never`` when a run does not reach it)."""

    def best_at(r: Any, k: int) -> float:
        vals = [row["best"] for row in r.history[:k] if row["best"] is not None]
        return vals[-1] if vals else math.inf

    out = []
    for k in CURVE_MARKS:
        if k > min(len(r.history) for r in with_runs + without_runs):
            break
        level = statistics.median(best_at(r, k) for r in without_runs)
        reach = [statistics.median(S.evals_to_reach(r.history, level) or never for r in runs)
                 for runs in (with_runs, without_runs)]
        out.append({"evals": k, "level": level, "median_best_with": statistics.median(best_at(r, k) for r in with_runs),
                    "median_evals_with": reach[0], "median_evals_without": reach[1]})
    return out


def predictor_only(args: argparse.Namespace) -> int:
    """Recompute the predictor comparison of ``--models`` from the same search noise and reference as the full
    run, keep everything else of ``<out>/results.json``, and write back only those models."""
    from sampler_core import search as S

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    path = Path(args.out) / "results.json"
    res = json.loads(path.read_text())
    kinds = args.models.split(",")
    for kind in kinds:
        denoiser, problem, shape = S.builtin_model(kind)
        kw = {"flow_first_sigma": S.flow_first_sigma()} if problem.model_kind == "flow" else {}
        batch = args.search_batch_digits if kind == "digits" else args.search_batch
        noise = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(SEARCH_NOISE_SEED))
        x_start = S.start_latents(problem, noise)
        ref = S.reference_run(denoiser, x_start, problem, args.search_ref_steps, kw)
        pb = args.predictor_batch
        for nfe in args.nfes:
            rec = res["models"][kind]["nfe"][str(nfe)]
            rec["predictor"] = predictor_comparison(S, denoiser, problem, nfe, x_start[:pb], ref[:pb], kw, args)
            log(f"[{kind}] NFE {nfe}: predictor comparison done")
    res["models"] = {k: res["models"][k] for k in kinds}
    res["meta"].update(predictor_seeds=args.predictor_seeds, predictor_evaluations=args.predictor_evaluations,
                       predictor_batch=args.predictor_batch,
                       predictor_wall_s=time.perf_counter() - t0)
    path.write_text(json.dumps(res, indent=1, allow_nan=True))
    return 0


def fmt(v: float | None, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{d}g}"


def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    default_search = {k: meta.get("search_batch_digits", meta["search_batch"]) if k == "digits"
                      else meta["search_batch"] for k in res["models"]}
    lines = ["## Solver-schedule search (S3) results", "",
             f"Measured by `{meta['command']}` on {meta['date']} ({meta['cpu']}, torch {meta['torch']}, "
             f"{meta['threads']} torch thread; ComfyUI {meta['comfyui']}); wall time {meta['wall_s'] / 60:.1f} min. "
             "Search: the real evaluations (sampling runs) given per row, on the 'search' batch of noise samples "
             f"(seed {SEARCH_NOISE_SEED}); evaluation: held-out noise (seed {EVAL_NOISE_SEED}), the 'eval' batch, "
             "RMSE to bench_solvers' float64 reference ODE solution from the same noise. The searched plan runs "
             "unchanged as our Solver Mix sampler through ComfyUI; 'calls' are counted model calls there.", "",
             "| model | NFE | searched plan (segments) | RMSE searched | calls | best ComfyUI pair | RMSE best | "
             f"ratio (target <= {TARGET_RATIO}) | search time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind, m in res["models"].items():
        for nfe, r in m["nfe"].items():
            b = r["best_comfy"]
            plan = " / ".join(r["plan"].splitlines())
            ok = "yes" if r["ratio"] <= TARGET_RATIO else "NO"
            runs = r.get("restarts", 1)
            evals = r.get("evaluations", meta["evaluations"])
            budget = (f"best of {runs} runs by search fitness, {evals // runs} evaluations each" if runs > 1
                      else f"{evals} evaluations")
            batches = (f"search {r.get('search_batch', default_search[kind])} / "
                       f"eval {r.get('eval_batch', m['info']['batch'])}, {budget}, "
                       f"{r.get('search_predictor', 'ridge')} predictor")
            lines.append(f"| {kind} ({batches}) | {nfe} | `{plan}` | {fmt(r['rmse_eval'])} | "
                         f"{r['comfy_calls']} | `{b['name']}` / {b['scheduler']} ({b['steps']} steps) | "
                         f"{fmt(b['rmse'])} | {r['ratio']:.3f} ({ok}) | {r['search_seconds']:.1f} s |")
    ratios = [r["ratio"] for m in res["models"].values() for r in m["nfe"].values()]
    lines += ["", f"Ratio <= {TARGET_RATIO} in {sum(v <= TARGET_RATIO for v in ratios)} of {len(ratios)} cases "
                  f"(median ratio {statistics.median(ratios):.3f})."]
    lines += ["", "Searched sigmas:", ""]
    for kind, m in res["models"].items():
        for nfe, r in m["nfe"].items():
            lines.append(f"- {kind}, NFE {nfe}: " + ", ".join(f"{v:.4g}" for v in r["sigmas"]))
    lines += ["", "### Search with vs without the learned predictor", "",
              f"The same search (same seeds {PREDICTOR_SEED0}..{PREDICTOR_SEED0 + meta['predictor_seeds'] - 1}, same "
              "proposal mechanism) with "
              "and without the learned fitness predictor, "
              f"{meta['predictor_evaluations']} real evaluations per run, fitness on the first "
              f"{meta['predictor_batch']} search-noise samples. Target: the median final fitness of the runs "
              "without the predictor; 'evals to reach' = real evaluations until a run's best fitness first reaches "
              f"it ({meta['predictor_evaluations'] + 1} when never: half of the runs without the predictor reach "
              "their own median by construction).", "",
              "| model | NFE | predictor | target RMSE | runs reaching it: with / without | median evals to reach: "
              "with / without | median final RMSE: with / without |",
              "|---|---|---|---|---|---|---|"]
    cut = []
    for kind, m in res["models"].items():
        for nfe, r in m["nfe"].items():
            p = r["predictor"]
            if not p["n"]:
                continue
            cut.append(p["median_evals_with"] < p["median_evals_without"])
            lines.append(f"| {kind} | {nfe} | {p.get('predictor', 'ridge')} | {fmt(p['target'])} | "
                         f"{p['reached_with']}/{p['n']} / "
                         f"{p['reached_without']}/{p['n']} | {p['median_evals_with']:g} / "
                         f"{p['median_evals_without']:g} | {fmt(p['median_final_with'])} / "
                         f"{fmt(p['median_final_without'])} |")
    lines += ["", f"The predictor cut the median real evaluations to reach the target in {sum(cut)} of {len(cut)} "
                  "cases."]
    curves = [(kind, nfe, r["predictor"]["curve"]) for kind, m in res["models"].items()
              for nfe, r in m["nfe"].items() if r["predictor"].get("curve")]
    if curves:
        marks = list(CURVE_MARKS)
        lines += ["", "The whole best-so-far curve (same runs): per number of real evaluations k, the level is the "
                      "median over the seeds of the best RMSE after k evaluations without the predictor; each cell "
                      "gives that level, then the median real evaluations to reach it with / without the predictor "
                      f"({meta['predictor_evaluations'] + 1} when more than half of the runs never do). The last "
                      "column is the target above.", "",
                  "| model | NFE | " + " | ".join(f"k = {k}" for k in marks) + " |",
                  "|---|---|" + "---|" * len(marks)]
        faster = 0
        for kind, nfe, curve in curves:
            cells = {c["evals"]: c for c in curve}
            faster += sum(cells[k]["median_evals_with"] < cells[k]["median_evals_without"] for k in marks
                          if k in cells)
            lines.append(f"| {kind} | {nfe} | " + " | ".join(
                f"{fmt(cells[k]['level'])}: {cells[k]['median_evals_with']:g} / {cells[k]['median_evals_without']:g}"
                if k in cells else "n/a" for k in marks) + " |")
        lines += ["", f"With the predictor the median run reached the level sooner in {faster} of "
                      f"{len(curves) * len(marks)} (case, k) cells."]
    d = res["models"].get("digits", {}).get("nfe", {}).get("5")
    if d:
        lines += ["", f"Search time for digits at NFE 5 on this CPU (one thread, reference run included): "
                      f"{d['search_seconds']:.1f} s (target: under 10 minutes)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_search", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/search_results")
    ap.add_argument("--quick", action="store_true", help="smaller batches, fewer evaluations and seeds")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--evaluations", type=int, default=None, help="real evaluations per search (1500; quick 150)")
    ap.add_argument("--restarts", type=int, default=1,
                    help="independent search runs per row (search seeds 0, 1, ...), each with --evaluations; the "
                         "plan with the lowest search fitness is kept")
    ap.add_argument("--search-batch", type=int, default=None,
                    help="noise samples the GMM searches measure on (4096; quick 256): rare mode flips dominate the "
                         "RMSE at low NFE, and a small batch lets the search overfit to its own noise")
    ap.add_argument("--eval-batch-gmm", type=int, default=None, help="held-out noise samples, GMM models (4096)")
    ap.add_argument("--eval-batch-digits", type=int, default=None, help="held-out noise samples, digits (1024)")
    ap.add_argument("--nfes", default=",".join(map(str, NFES)), help="NFE budgets, comma separated")
    ap.add_argument("--search-batch-digits", type=int, default=None, help="search noise samples, digits (1024)")
    ap.add_argument("--predictor-batch", type=int, default=128, help="noise samples of the predictor comparison")
    ap.add_argument("--search-ref-steps", type=int, default=200, help="steps of the search's own reference run")
    ap.add_argument("--predictor-seeds", type=int, default=None,
                    help="seeds of the predictor comparison (20; quick 2; 0: skip it)")
    ap.add_argument("--predictor-evaluations", type=int, default=None,
                    help="real evaluations per search of the predictor comparison (300; quick 100)")
    ap.add_argument("--results-md", default=str(REPO / "benchmarks" / "SEARCH_RESULTS.md"))
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the markdown from <out>/results.json")
    ap.add_argument("--predictor-only", action="store_true",
                    help="redo only the predictor comparison of --models in <out>/results.json (the searches and "
                         "the grid are deterministic and kept); writes those models back")
    ap.add_argument("--merge", default=None,
                    help="comma-separated result folders of per-model runs (--models X --out DIR each, run side by "
                         "side): merge them into <out>/results.json and the markdown")
    args = ap.parse_args(argv)
    if args.restarts < 1:
        ap.error(f"--restarts must be at least 1, got {args.restarts}")
    args.evaluations = args.evaluations or (150 if args.quick else 1500)
    args.search_batch = args.search_batch or (256 if args.quick else 4096)
    args.search_batch_digits = args.search_batch_digits or (128 if args.quick else 1024)
    args.nfes = tuple(int(v) for v in args.nfes.split(","))
    args.predictor_seeds = (2 if args.quick else 20) if args.predictor_seeds is None else args.predictor_seeds
    args.predictor_evaluations = args.predictor_evaluations or (100 if args.quick else 300)
    if args.predictor_only:
        return predictor_only(args)
    if args.merge:
        parts = [json.loads((Path(d) / "results.json").read_text()) for d in args.merge.split(",")]
        meta = dict(parts[0]["meta"])
        models = merge_models(parts)  # first: it fills in each row's batches, which the command line shows
        meta["parts"] = [c for p in parts for c in merged_commands(p)]
        meta["command"] = MERGED + "; ".join(meta["parts"]) + ")"
        meta["wall_s"] = max(p["meta"]["wall_s"] for p in parts)
        meta["date"] = max(p["meta"]["date"] for p in parts)  # the latest part ("YYYY-MM-DD HH:MM UTC")
        res = {"meta": meta, "models": models}
        return write_results(res, args)
    if args.markdown_only:
        md = markdown(json.loads((Path(args.out) / "results.json").read_text()))
        Path(args.results_md).write_text(md)
        print(md)
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from . import comfy_inproc as ci

    version = ci.load_comfy("cpu")
    models = {}
    for kind in args.models.split(","):
        models[kind] = run_model(kind, args)
    res = {"meta": {"command": "python -m benchmarks.bench_search" + (" --quick" if args.quick else ""),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": platform.processor() or
                    platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "comfyui": version, "wall_s": time.perf_counter() - t0, "evaluations": args.evaluations,
                    "restarts": args.restarts,
                    "search_batch": args.search_batch, "search_batch_digits": args.search_batch_digits,
                    "predictor_evaluations": args.predictor_evaluations, "predictor_seeds": args.predictor_seeds,
                    "predictor_batch": args.predictor_batch},
           "models": models}
    return write_results(res, args)


MERGED = "python -m benchmarks.bench_search (runs merged with --merge, later ones replacing the rows they hold: "


def merged_commands(part: dict[str, Any]) -> list[str]:
    """The runs of one merged part, each as its models, NFEs and batches (an earlier merge: its own parts)."""
    meta = part.get("meta", {})
    if meta.get("parts"):
        return list(meta["parts"])
    if meta.get("command", "").startswith(MERGED):  # an earlier merge written before "parts" was recorded
        return meta["command"][len(MERGED):-1].split("; ")
    rows = [(k, n, r) for k, m in part["models"].items() for n, r in m["nfe"].items()]
    batches = sorted({(k, r.get("search_batch"), r.get("eval_batch")) for k, _, r in rows}, key=str)
    evals, restarts = meta.get("evaluations"), meta.get("restarts", 1)
    return [f"--models {','.join(part['models'])} --nfes {','.join(sorted({n for _, n, _ in rows}))}"
            + (f" --evaluations {evals}" if evals else "") + (f" --restarts {restarts}" if restarts > 1 else "")
            + " (" + ", ".join(f"{k}: search {sb} / eval {eb}" for k, sb, eb in batches) + ")"]


def merge_models(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model, the NFE rows of every part; a later part replaces the rows it holds (e.g. a rerun of one NFE
    with larger batches), and a replacing row without a predictor comparison keeps the earlier row's one. Rows
    without their batches get them from their own run's settings (in place)."""
    models: dict[str, Any] = {}
    for part in parts:
        meta = part.get("meta", {})
        for kind, m in part["models"].items():
            for row in m["nfe"].values():  # the batches each row was measured with, from its own run
                search = meta.get("search_batch_digits") if kind == "digits" else meta.get("search_batch")
                if search is not None:
                    row.setdefault("search_batch", search)
                if m.get("info", {}).get("batch") is not None:
                    row.setdefault("eval_batch", m["info"]["batch"])
            if kind not in models:
                models[kind] = json.loads(json.dumps(m))
                continue
            for nfe, row in m["nfe"].items():
                old = models[kind]["nfe"].get(nfe)
                row = dict(row)
                if old is not None and not row["predictor"].get("n") and old["predictor"].get("n"):
                    row["predictor"] = old["predictor"]
                models[kind]["nfe"][nfe] = row
    return models


def write_results(res: dict[str, Any], args: argparse.Namespace) -> int:
    """Write ``<out>/results.json`` and the markdown report; print the report."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1, allow_nan=True))
    md = markdown(res)
    Path(args.results_md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
