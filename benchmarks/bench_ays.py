"""Align Your Steps benchmark: KLUB-optimised schedules vs ComfyUI's schedulers on the built-in models, 10 NFE.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_ays --out benchmarks/results [--quick]

Per built-in model (exact Gaussian mixture in epsilon/VE and rectified-flow form; the learned 8x8-digits
denoiser), 10-step schedules are optimised with the pack's optimiser (``schedules.optimize``, the same code
as ``python -m schedules.optimize``) on KLUB samples drawn with seed :data:`OPT_SEED`:

* ``AYS early-stopped + solver refinement``: the optimiser's default (node and command): the early-stopped
  KLUB schedule, then ``schedules.refine`` (coordinate sweeps lowering the worst relative error of euler and
  dpmpp_2m against the pack's 200-step reference run from the same noise, noise seed :data:`OPT_SEED`);
* ``AYS early-stopped``: the paper's method with the shipped stopping rule (``SearchConfig()``: a trust region
  of 2 sweeps whose candidates reach at most 25 % of the log-gap to each neighbour);
* ``AYS 5 sweeps (old default)``: the previous default, at most 5 sweeps with candidates over 90 % of the gap;
* ``AYS KLUB-optimal``: early stopping off, run until every point has converged (the full KLUB minimum).

Which stopping rule ships (early-stopped or KLUB-optimal) and whether the refinement is on by default are decided
on the validation seeds :data:`VAL_SEEDS` (every schedule runs there too), and every schedule is then reported on
the evaluation seeds.

They are compared with ComfyUI's karras, exponential, kl_optimal and beta schedulers and the published SD1
AYS table (on the flow model: the SD1 table's time spacing mapped onto the model's sigmas, the AYS node's
documented fallback), plus the optimiser's starting point (time-uniform), for ComfyUI's own euler,
dpmpp_2m and dpmpp_2m_sde samplers at 10 steps = 10 model calls (counted), run through
``comfy.sample.sample_custom`` in-process (``benchmarks.comfy_inproc``). Evaluation uses the initial-noise
and sampler seeds :data:`EVAL_SEEDS`, none of which the optimisation saw. Metric: distance to the exact target
distribution (``benchmarks.metrics``): sliced W2 to the exact mixture (GMM models), Frechet distance in 64-d
pixel space to scikit-learn's 1797 digits (digits); mean and standard deviation over the seeds.

Writes ``<out>/ays_results.json``, ``<out>/ays_klub_curve.png``, ``<out>/ays_schedules.png`` and
``benchmarks/AYS_RESULTS.md``. One worker process per model (one torch thread each), two at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workers import log, run_workers

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gmm-eps", "gmm-flow", "digits")
SAMPLERS = ("euler", "dpmpp_2m", "dpmpp_2m_sde")
BASELINES = ("karras", "exponential", "kl_optimal", "beta")
AYS_ES, AYS_OPT, SD1, START = "AYS early-stopped", "AYS KLUB-optimal", "SD1 AYS table", "start (time-uniform)"
AYS_OLD = "AYS 5 sweeps (old default)"
AYS_REF = "AYS early-stopped + solver refinement"
AYS_ROWS = (AYS_REF, AYS_ES, AYS_OLD, AYS_OPT)
SCHEDULES = (AYS_REF, AYS_ES, AYS_OLD, AYS_OPT, *BASELINES, SD1, START)
STEPS = 10
OPT_SEED = 0  # KLUB samples (data draws, noises, t uniforms) of the optimisation
EVAL_SEEDS = (1001, 1002, 1003)  # evaluation noise and sampler seeds: never used while optimising or choosing
VAL_SEEDS = (2001, 2002, 2003)  # validation seeds: the optimiser's defaults and the shipped rule are chosen on these
SHAPE = {"gmm-eps": (4, 8, 8), "gmm-flow": (4, 8, 8), "digits": (4, 4, 4)}


# --------------------------------------------------------------------------- optimisation (pure, no ComfyUI)


def search_config(label: str):
    """The optimiser settings of an AYS row: the shipped default, the old default, or no early stopping."""
    from schedules.optimize import SearchConfig

    if label in (AYS_ES, AYS_REF):
        return SearchConfig()
    if label == AYS_OLD:
        return SearchConfig(max_sweeps=5, trust_scale=None)
    return SearchConfig(early_stopping=False)


def optimise(kind: str, label: str, samples: int) -> dict[str, Any]:
    """Optimise a 10-step schedule for a built-in model; VE-space result, history, cost."""
    from schedules.klub import KLUBObjective, KLUBSamples
    from schedules.optimize import builtin_problem, coordinate_search

    t0 = time.perf_counter()
    denoiser, data, initial, _identity = builtin_problem(kind)
    klub_samples = KLUBSamples.draw(data, samples, torch.Generator().manual_seed(OPT_SEED))
    objective = KLUBObjective(denoiser, klub_samples)
    t1 = time.perf_counter()
    config = search_config(label)
    result = coordinate_search(initial, objective, None, config)
    t2 = time.perf_counter()
    out = {"sigmas_ve": result.sigmas.tolist(), "initial_ve": initial.tolist(), "history": result.history,
           "sweeps": result.sweeps, "stop_reason": result.stop_reason, "model_evals": objective.nfe,
           "seconds": t2 - t1, "setup_seconds": t1 - t0, "samples": samples}
    if label == AYS_REF:
        out.update(refine(kind, result.sigmas))
        out["seconds"] = time.perf_counter() - t1
    return out


REFINE_SAMPLES = 256  # the command's default (--refine-samples)


def refine(kind: str, sigmas_ve: torch.Tensor) -> dict[str, Any]:
    """The solver refinement of an early-stopped schedule, exactly as ``python -m schedules.optimize`` runs it:
    noise seed OPT_SEED, the pack's 200-step ODE reference from the same noise."""
    from schedules.optimize import refine_builtin

    t0 = time.perf_counter()
    res, calls, _score = refine_builtin(kind, sigmas_ve, REFINE_SAMPLES, OPT_SEED)
    return {"sigmas_ve": res.sigmas.tolist(), "refine_history": res.history, "refine_evals": res.evals,
            "refine_model_evals": calls, "refine_seconds": time.perf_counter() - t0,
            "refine_samples": REFINE_SAMPLES}


def to_model_space(ve: list[float], flow: bool) -> list[float]:
    """VE-space schedule -> the model's sigmas (flow: s = v / (1 + v), top s = 1)."""
    if not flow:
        return list(ve)
    out = [v / (1 + v) for v in ve]
    out[0] = 1.0
    return out


# --------------------------------------------------------------------------- one model (worker process)


class AYSBench:
    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        from . import comfy_inproc as ci

        self.ci = ci
        self.kind = kind
        self.args = args
        self.version = ci.load_comfy("cpu")
        self.model = ci.make_model(kind)
        self.flow = self.model.flow
        self.batch = args.batch_digits if kind == "digits" else args.batch_gmm
        self.seeds = EVAL_SEEDS[:1] if args.quick else EVAL_SEEDS
        self.info: dict[str, Any] = {"model": kind, "batch": self.batch, "latent": list(SHAPE[kind]),
                                     "comfyui": self.version, "eval_seeds": list(self.seeds), "opt_seed": OPT_SEED}

    def setup_metric(self) -> None:
        from . import metrics

        if self.kind == "digits":
            self.data = metrics.digits_data()
            floors = metrics.digits_floor(self.data, self.batch, 3)
            self.info["metric"] = "Frechet distance, 64-d pixels, to the 1797 scikit-learn digits"
        else:
            from sampler_core.models.gmm import for_latent_cached

            gmm = for_latent_cached(SHAPE[self.kind])
            self.sw = metrics.GMMSlicedW2(gmm.means, gmm.stds, gmm.weights, n_dirs=self.args.n_dirs)
            floors = [self.sw(gmm.sample(self.batch, torch.Generator().manual_seed(500 + s))) for s in range(3)]
            self.info["metric"] = f"sliced W2 to the exact mixture ({self.args.n_dirs} directions)"
        self.info["floor"] = statistics.mean(floors)

    def dist(self, x: torch.Tensor) -> float:
        from . import metrics

        return metrics.sample_distance(x, self.kind, getattr(self, "data", None), getattr(self, "sw", None))

    def schedules(self) -> dict[str, list[float]]:
        """Every 10-step schedule (11 sigmas, final 0) in the model's own sigma space."""
        from schedules.ays_tables import AYS_TABLES, ays_sigmas

        logic = self.ci.pack_module("nodes.schedule_logic")
        ms = self.model.model_sampling
        out: dict[str, list[float]] = {}
        for label in AYS_ROWS:
            run = optimise(self.kind, label, self.args.samples)
            self.info[label] = run
            log(f"[{self.kind}] {label}: {run['sweeps']} sweeps ({run['stop_reason']}), KLUB "
                f"{run['history'][0]:.4g} -> {run['history'][-1]:.4g}, {run['seconds']:.1f} s")
            out[label] = ays_sigmas(to_model_space(run["sigmas_ve"], self.flow), STEPS).tolist()
        out[START] = ays_sigmas(to_model_space(self.info[AYS_ES]["initial_ve"], self.flow), STEPS).tolist()
        for name in BASELINES:
            out[name] = self.ci.ksampler_sigmas(self.model, None, name, STEPS).tolist()
        sd1 = logic.fallback_table(ms) if self.flow else list(AYS_TABLES["SD1"])
        out[SD1] = ays_sigmas(sd1, STEPS).tolist()
        return out

    def klub_of_schedules(self, tables: dict[str, list[float]]) -> dict[str, float]:
        """KLUB (optimisation samples) of the schedules that share the optimiser's endpoints."""
        from schedules.klub import KLUBObjective, KLUBSamples
        from schedules.optimize import builtin_problem

        denoiser, data, _initial, _ = builtin_problem(self.kind)
        objective = KLUBObjective(denoiser, KLUBSamples.draw(data, self.args.samples,
                                                              torch.Generator().manual_seed(OPT_SEED)))
        out = {}
        for label in (*AYS_ROWS, START):
            src = self.info[AYS_ES]["initial_ve"] if label == START else self.info[label]["sigmas_ve"]
            s = torch.tensor(src, dtype=torch.float64)
            out[label] = float(objective(s[1:], s[:-1]).sum())
        return out

    def run_all(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.setup_metric()
        tables = self.schedules()
        self.info["klub"] = self.klub_of_schedules(tables)
        records = []
        shape = SHAPE[self.kind]
        val_seeds = VAL_SEEDS[:1] if self.args.quick else VAL_SEEDS
        self.info["val_seeds"] = list(val_seeds)
        passes = [("validation", val_seeds, tuple(tables)), ("evaluation", self.seeds, tuple(tables))]
        for (split, seeds, labels), sampler in ((p, s) for p in passes for s in SAMPLERS):
            for label in labels:
                sig = tables[label]
                dists, calls = [], set()
                for seed in seeds:
                    noise = torch.randn((self.batch, *shape), generator=torch.Generator().manual_seed(seed))
                    x, n_calls = self.ci.run(self.model, self.ci.comfy_sampler(sampler), torch.tensor(sig), noise,
                                             seed=seed)
                    dists.append(self.dist(x))
                    calls.add(n_calls)
                rec = {"split": split, "model": self.kind, "sampler": sampler, "schedule": label, "dists": dists,
                       "mean": statistics.mean(dists), "sd": statistics.stdev(dists) if len(dists) > 1 else 0.0,
                       "calls": sorted(calls)}
                records.append(rec)
            log(f"[{self.kind}] {split} {sampler} done")
        self.info["tables"] = tables
        self.info["seconds"] = time.perf_counter() - t0
        return {"info": self.info, "records": records}


def worker_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    result = AYSBench(args.worker, args).run_all()
    Path(args.part).write_text(json.dumps(result, allow_nan=True))


# --------------------------------------------------------------------------- report


def fmt(v: float) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.4f}" if v < 10 else f"{v:.2f}"


def verdicts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (model, sampler) cell: the best schedule, and how the two AYS variants rank against the baselines."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    val: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        target = val if r.get("split") == "validation" else cells
        target.setdefault((r["model"], r["sampler"]), {})[r["schedule"]] = r["mean"]
    val_es_wins = sum(v[AYS_ES] < v[AYS_OPT] for v in val.values())
    val_ref_wins = sum(v.get(AYS_REF, math.inf) < v[AYS_ES] for v in val.values())
    stop = AYS_ES if 2 * val_es_wins >= len(val) else AYS_OPT
    out = {"cells": [], "es_beats_all_baselines": 0, "opt_beats_all_baselines": 0, "es_beats_opt": 0,
           "es_beats_kl_optimal": 0, "old_beats_all_baselines": 0, "ref_beats_all_baselines": 0, "ref_beats_es": 0,
           "n": len(cells),
           "validation": {"n": len(val), "es_beats_opt": val_es_wins, "ship": stop, "ref_beats_es": val_ref_wins,
                          "ship_refined": 2 * val_ref_wins > len(val)}}
    baselines = (*BASELINES, SD1)
    for (model, sampler), vals in cells.items():
        best_base = min(baselines, key=lambda b: vals[b])
        es, opt = vals[AYS_ES], vals[AYS_OPT]
        cell = {"model": model, "sampler": sampler, "best_baseline": best_base, "best_baseline_value": vals[best_base],
                "es": es, "opt": opt, "kl_optimal": vals["kl_optimal"],
                "es_vs_best_baseline": es / vals[best_base] - 1, "opt_vs_best_baseline": opt / vals[best_base] - 1,
                "old_vs_best_baseline": vals.get(AYS_OLD, math.nan) / vals[best_base] - 1,
                "ref_vs_best_baseline": vals.get(AYS_REF, math.nan) / vals[best_base] - 1}
        out["cells"].append(cell)
        out["es_beats_all_baselines"] += es < vals[best_base]
        out["old_beats_all_baselines"] += vals.get(AYS_OLD, math.inf) < vals[best_base]
        out["opt_beats_all_baselines"] += opt < vals[best_base]
        out["es_beats_opt"] += es < opt
        out["es_beats_kl_optimal"] += es < vals["kl_optimal"]
        out["ref_beats_all_baselines"] += vals.get(AYS_REF, math.inf) < vals[best_base]
        out["ref_beats_es"] += vals.get(AYS_REF, math.inf) < es
    return out


def build_markdown(res: dict[str, Any]) -> str:
    infos, records = res["infos"], res["records"]
    v = res["verdict"]
    lines = [
        "# Align Your Steps: optimised schedules vs ComfyUI's schedulers (10 NFE)",
        "",
        f"Generated by `.venv/bin/python -m benchmarks.bench_ays --out benchmarks/results"
        f"{' --quick' if res['quick'] else ''}` on {res['device']}, ComfyUI {res['comfyui']}, torch "
        f"{res['torch']}; total {res['seconds']:.0f} s.",
        "",
        "Schedules optimised by the pack's KLUB optimiser for each built-in model (10 steps, "
        f"{res['samples']} KLUB samples, optimisation seed {OPT_SEED}, time-uniform start as the paper does for "
        "discrete-time models); compared on evaluation seeds "
        f"{', '.join(map(str, res['eval_seeds']))} (initial noise and SDE noise), never used while optimising or "
        "while choosing the optimiser's defaults (those were chosen on validation seeds "
        f"{', '.join(map(str, VAL_SEEDS))}). `AYS early-stopped` is the paper's method with the shipped stopping rule "
        "(`SearchConfig()`: 2 sweeps, candidates within 25 % of the log-gap to each neighbour); "
        f"`{AYS_REF}` adds this pack's solver refinement after it (`schedules.refine`: 2 coordinate sweeps that "
        "lower the worst relative error (RMSE and median per-sample error) of euler and dpmpp_2m to a 200-step "
        "reference run from the same noise, "
        f"{REFINE_SAMPLES} noise samples of seed {OPT_SEED}; the optimiser node's and command's default); "
        "`AYS 5 sweeps (old default)` is the previous "
        "rule (5 sweeps, candidates over 90 % of the gap); `AYS KLUB-optimal` runs to convergence. "
        "ComfyUI's own samplers, 10 steps = 10 counted model calls each, through `comfy.sample.sample_custom`. "
        "Values: distance to the exact target distribution, mean ± sd over the seeds (lower is better; "
        "**bold** = best in the column). GMM: sliced W2 to the exact mixture; digits: Frechet distance in "
        "pixel space to the 1797 scikit-learn digits. `SD1 AYS table` on gmm-flow is the SD1 table's time "
        "spacing mapped onto the flow model's sigmas (the AYS node's fallback); `start` is the optimiser's "
        "starting point.",
        "",
    ]
    for model in res["models"]:
        info = infos[model]
        lines += [f"## {model}", "", f"Batch {info['batch']}, latent {'x'.join(map(str, info['latent']))}; "
                  f"metric floor (exact/data samples of the same size): {fmt(info['floor'])}.", ""]
        header = "| schedule | " + " | ".join(SAMPLERS) + " | KLUB |"
        lines += [header, "|---" * (len(SAMPLERS) + 2) + "|"]
        recs = {(r["sampler"], r["schedule"]): r for r in records
                if r["model"] == model and r.get("split", "evaluation") == "evaluation"}
        best = {s: min((recs[(s, sch)]["mean"] for sch in SCHEDULES if (s, sch) in recs), default=None)
                for s in SAMPLERS}
        for sch in SCHEDULES:
            cells = []
            for s in SAMPLERS:
                r = recs.get((s, sch))
                if r is None:
                    cells.append("-")
                    continue
                txt = f"{fmt(r['mean'])} ± {fmt(r['sd'])}"
                cells.append(f"**{txt}**" if r["mean"] == best[s] else txt)
            klub = info["klub"].get(sch)
            lines.append(f"| {sch} | " + " | ".join(cells) + f" | {fmt(klub) if klub is not None else ''} |")
        es, opt, old, ref = info[AYS_ES], info[AYS_OPT], info.get(AYS_OLD), info.get(AYS_REF)
        lines += ["", "Optimisation on this CPU (1 thread): "
                  + (f"early-stopped + solver refinement {ref['seconds']:.1f} s (refinement "
                     f"{ref['refine_seconds']:.1f} s, {ref['refine_evals']} schedules, {ref['refine_model_evals']} "
                     f"model evaluations, worst relative error x{math.exp(ref['refine_history'][-1]):.3f}); "
                     if ref else "")
                  + f"early-stopped {es['seconds']:.1f} s ({es['sweeps']} "
                  f"sweeps, {es['stop_reason']}, {es['model_evals']} model evaluations); "
                  + (f"old default {old['seconds']:.1f} s ({old['sweeps']} sweeps); " if old else "")
                  + "KLUB-optimal "
                  f"{opt['seconds']:.1f} s ({opt['sweeps']} sweeps, {opt['stop_reason']}, {opt['model_evals']} "
                  "model evaluations).", ""]
        for label in (AYS_REF, AYS_ES, AYS_OLD, AYS_OPT, "kl_optimal", "karras", START):
            if label not in info["tables"]:
                continue
            lines.append(f"- {label}: " + ", ".join(f"{x:.4g}" for x in info["tables"][label]))
        lines.append("")
    n = v["n"]
    vv = v.get("validation") or {"n": 0, "es_beats_opt": 0, "ship": AYS_ES}
    shipped = AYS_REF if vv.get("ship_refined") else vv["ship"]
    shipped_wins = v["ref_beats_all_baselines"] if shipped == AYS_REF else v["es_beats_all_baselines"]
    lines += [
        "## Summary",
        "",
        f"- The shipped default ({shipped}) beats every baseline (karras, exponential, kl_optimal, beta, SD1 "
        f"table) in {shipped_wins}/{n} (model, sampler) cells on the evaluation seeds.",
        f"- Solver refinement, decided on the validation seeds {', '.join(map(str, VAL_SEEDS))}: it beats the "
        f"early-stopped KLUB schedule there in {vv.get('ref_beats_es', 0)}/{vv['n']} cells, so it is "
        + ("on by default (node input `solver_refinement`, command `--no-refine` to skip it)."
           if vv.get("ship_refined") else "NOT better: the default should be revisited.")
        + f" On the evaluation seeds it beats early-stopped in {v['ref_beats_es']}/{n} cells and every baseline in "
        f"{v['ref_beats_all_baselines']}/{n}.",
        f"- AYS early-stopped beats every baseline (karras, exponential, kl_optimal, beta, SD1 table) in "
        f"{v['es_beats_all_baselines']}/{n} (model, sampler) cells; the old default (5 sweeps) in "
        f"{v.get('old_beats_all_baselines', 0)}/{n}; AYS KLUB-optimal in {v['opt_beats_all_baselines']}/{n}.",
        f"- Early-stopped beats KLUB-optimal in {v['es_beats_opt']}/{n} cells and kl_optimal in "
        f"{v['es_beats_kl_optimal']}/{n}.",
        f"- Stopping rule, decided on the validation seeds {', '.join(map(str, VAL_SEEDS))}: early-stopped beats "
        f"KLUB-optimal there in {vv['es_beats_opt']}/{vv['n']} cells, so the default "
        "(`schedules.optimize.SearchConfig`) ships "
        + ("early stopping (2 sweeps, trust region 0.25, from the time-uniform start)." if vv["ship"] == AYS_ES else
           "... the KLUB-optimal schedule would be favoured: the default should be revisited."),
        "",
        "| model | sampler | best baseline | AYS + refinement vs it | AYS early-stopped vs it | old default vs it "
        "| AYS KLUB-optimal vs it |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in v["cells"]:
        lines.append(f"| {c['model']} | {c['sampler']} | {c['best_baseline']} ({fmt(c['best_baseline_value'])}) | "
                     f"{100 * c.get('ref_vs_best_baseline', math.nan):+.1f} % | "
                     f"{100 * c['es_vs_best_baseline']:+.1f} % | "
                     f"{100 * c.get('old_vs_best_baseline', math.nan):+.1f} % | "
                     f"{100 * c['opt_vs_best_baseline']:+.1f} % |")
    if shipped_wins < n:
        lines += ["", "The optimised schedules do not beat the best of the hand-made schedules in every cell: the "
                  "numbers above are reported as measured (the optimiser never saw the evaluation seeds, and nothing "
                  "was tuned on them; the defaults were chosen on separate validation seeds). KLUB is an upper bound "
                  "on the KL of the stochastic sampler; its full minimum "
                  "(the KLUB-optimal row) packs the steps at low noise and leaves one huge high-noise step; stopping "
                  "early keeps most of the KLUB reduction of the first sweeps without that collapse."]
    digits = infos.get("digits", {}).get(shipped)
    lines += ["", f"Time to optimise a 10-step schedule ({shipped}, the default; 1 torch thread): " + ", ".join(
        f"{m} {infos[m][shipped]['seconds']:.1f} s" for m in res["models"]) + "."
        + (f" Target for digits (< 120 s): {'met' if digits['seconds'] < 120 else 'NOT met'}." if digits else ""),
        "",
        "KLUB per sweep: `results/ays_klub_curve.png`; the schedules: `results/ays_schedules.png`.", ""]
    return "\n".join(lines)


def make_plots(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = res["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for label, style in ((AYS_OPT, "-"), (AYS_OLD, "s-"), (AYS_ES, "o-")):
            if label not in res["infos"][m]:
                continue
            h = res["infos"][m][label]["history"]
            ax.plot(range(len(h)), h, style, label=label, markersize=4)
        ax.set_yscale("log")
        ax.set_xlabel("sweep")
        ax.set_ylabel("KLUB (10 steps)")
        ax.set_title(m)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ays_klub_curve.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for label in (AYS_REF, AYS_ES, AYS_OPT, "karras", "kl_optimal", SD1):
            if label not in res["infos"][m]["tables"]:
                continue
            sig = res["infos"][m]["tables"][label][:-1]
            ax.plot(range(len(sig)), sig, marker=".", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("sigma (model space)")
        ax.set_title(m)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ays_schedules.png", dpi=110)
    plt.close(fig)
    return ["ays_klub_curve.png", "ays_schedules.png"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="output folder (JSON, PNG)")
    ap.add_argument("--quick", action="store_true", help="one evaluation seed, smaller batches (smoke check)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    ap.add_argument("--jobs", type=int, default=2, help="models run in parallel (worker processes)")
    ap.add_argument("--samples", type=int, default=None, help="KLUB samples per interval (default 128; quick 64)")
    ap.add_argument("--batch-gmm", type=int, default=None, help="evaluation batch, GMM models (default 4000)")
    ap.add_argument("--batch-digits", type=int, default=None, help="evaluation batch, digits (default 1000)")
    ap.add_argument("--n-dirs", type=int, default=128, help="sliced-W2 directions")
    ap.add_argument("--md", default=str(REPO / "benchmarks" / "AYS_RESULTS.md"), help="markdown report to write")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from <out>/ays_results.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.samples = args.samples or (64 if args.quick else 128)
    args.batch_gmm = args.batch_gmm or (500 if args.quick else 4000)
    args.batch_digits = args.batch_digits or (300 if args.quick else 1000)
    if args.worker:
        worker_main(args)
        return
    if args.report_only:  # rebuild the report and plots from a previous run's JSON
        res = json.loads((Path(args.out) / "ays_results.json").read_text())
        make_plots(res, Path(args.out))
        md = build_markdown(res)
        Path(args.md).write_text(md)
        print(md)
        return
    t0 = time.perf_counter()
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(MODELS)}")
    passthrough = ["--samples", str(args.samples), "--batch-gmm", str(args.batch_gmm), "--batch-digits",
                   str(args.batch_digits), "--n-dirs", str(args.n_dirs)] + (["--quick"] if args.quick else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    order = sorted(models, key=lambda m: m != "digits")  # the slowest first
    parts, failures = run_workers("benchmarks.bench_ays", order, out, passthrough, env, args.jobs, prefix="ays_")
    if failures:
        raise SystemExit("; ".join(f"{m}: {msg}" for m, msg in failures.items()))
    infos, records = {}, []
    for m in models:
        part = json.loads(parts[m].read_text())
        parts[m].unlink()
        infos[m] = part["info"]
        records += part["records"]
    res = {"models": models, "infos": infos, "records": records, "quick": args.quick, "samples": args.samples,
           "eval_seeds": infos[models[0]]["eval_seeds"], "comfyui": infos[models[0]]["comfyui"],
           "torch": torch.__version__, "seconds": time.perf_counter() - t0,
           "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                     f"1 torch thread per worker, {args.jobs} workers"}
    res["verdict"] = verdicts(records)
    (out / "ays_results.json").write_text(json.dumps(res, indent=1, allow_nan=True))
    make_plots(res, out)
    md = build_markdown(res)
    Path(args.md).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
