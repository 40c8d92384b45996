"""Solver benchmark on the built-in models, through real ComfyUI: ComfyUI's samplers x schedulers vs our plans.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_solvers --out benchmarks/results [--quick] [--device cuda]

For each built-in model (exact Gaussian mixture, epsilon/VE and rectified-flow forms; the learned
8x8-digits denoiser) and each NFE target (6, 10, 24), every ComfyUI built-in sampler (less the
adaptive dpm_fast / dpm_adaptive) runs with every ComfyUI scheduler, and each of our plans (the
pack's Solver Mix sampler, ``sampler_core.loop.sample_plan``) runs with every scheduler. The step
count is the largest whose COUNTED diffusion-model calls are <= the target. Everything starts from
the same initial noise and seed. Metrics:

* RMSE to a high-accuracy reference solution of the probability-flow ODE from the same noise
  (deterministic samplers only): DPM-Solver++(2M) in float64 on a Karras schedule, N and 2N steps
  (their difference is reported), evaluating the denoiser directly; cross-checked against ComfyUI's
  own dpmpp_2m through the full ComfyUI pipeline.
* A distance to the exact target (all samplers): sliced W2 to the exact mixture for the GMM models
  (``metrics.GMMSlicedW2``); for digits the Frechet distance in 64-d pixel space to scikit-learn's
  1797 digits. Finite-sample floors are reported.

Also: parity of our one-method plans with ComfyUI's sampler of the same name; the per-step overhead
of our loop vs ComfyUI's implementation of the same method (a near-free model, 1x4x128x128 latent,
200 steps, interleaved repetitions in one process).

Writes ``<out>/results.json`` (every number), ``<out>/runs.csv``, PNG plots, and
``benchmarks/RESULTS.md`` (the tables for the README); prints the markdown. Models run in parallel
worker processes (``--jobs``), one torch thread each on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workers import log, run_workers

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gmm-eps", "gmm-flow", "digits")
NFES = (6, 10, 24)
NOISE_SEED = 0  # initial noise
SAMPLER_SEED = 42  # extra_args["seed"]: the noise of stochastic samplers
LATENT = {"gmm-eps": (4, 8, 8), "gmm-flow": (4, 8, 8), "digits": (4, 4, 4)}  # digits: one digit per latent
NAMED_SCHEDULER = {"gmm-eps": "karras", "gmm-flow": "simple", "digits": "karras"}

# Our plans (label, plan text). Labels write plan lines joined by " / ".
PLANS: list[tuple[str, str]] = [
    ("dpmpp_2m", "dpmpp_2m"),
    ("uni_pc", "uni_pc"),
    ("usf", "usf"),  # order 3, data prediction, full derivative estimate, UniC corrector
    ("usf order=2", "usf order=2"),
    ("usf order=3 corrector=none", "usf order=3 corrector=none"),
    ("usf order=2 corrector=none", "usf order=2 corrector=none"),  # DPM-Solver++(2M) in the true half-log-SNR
    ("usf pred=noise", "usf pred=noise"),
    ("usf deriv=low", "usf deriv=low"),
    ("40% dpmpp_2m_sde eta=1 / * dpmpp_2m", "40% dpmpp_2m_sde eta=1\n* dpmpp_2m"),
    ("30% euler_ancestral / * dpmpp_2m", "30% euler_ancestral\n* dpmpp_2m"),
    ("40% dpmpp_2m_sde eta=1 / * usf", "40% dpmpp_2m_sde eta=1\n* usf"),
    ("30% usf eta=1 / * usf", "30% usf eta=1\n* usf"),
]
QUICK_PLANS = ("usf", "usf order=2 corrector=none", "40% dpmpp_2m_sde eta=1 / * dpmpp_2m")

# Parity: ComfyUI sampler -> our one-method plan with the options that make it the same method.
PARITY = {
    "euler": "euler", "euler_ancestral": "euler_ancestral", "heun": "heun", "dpm_2": "dpm_2",
    "dpm_2_ancestral": "dpm_2_ancestral", "lms": "lms", "dpmpp_2s_ancestral": "dpmpp_2s_ancestral",
    "dpmpp_sde": "dpmpp_sde", "dpmpp_2m": "dpmpp_2m", "dpmpp_2m_sde": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun": "dpmpp_2m_sde solver_type=heun", "dpmpp_3m_sde": "dpmpp_3m_sde", "ipndm": "ipndm",
    "deis": "deis", "res_multistep": "res_multistep", "res_multistep_ancestral": "res_multistep eta=1",
    "ddim": "ddim", "uni_pc": "uni_pc", "uni_pc_bh2": "uni_pc_bh2",
}

# Rows of the "named" table: (kind, name) with the model's named scheduler.
NAMED = [("comfy", "euler"), ("comfy", "heun"), ("comfy", "dpmpp_2m"), ("comfy", "uni_pc"),
         ("comfy", "euler_ancestral"), ("comfy", "dpmpp_2m_sde"),
         ("ours", "usf"), ("ours", "usf order=2 corrector=none"), ("ours", "40% dpmpp_2m_sde eta=1 / * dpmpp_2m"),
         ("ours", "30% euler_ancestral / * dpmpp_2m")]
# Lines of the error-vs-NFE plots.
PLOT_COMFY = ("euler", "heun", "dpmpp_2m", "uni_pc", "deis", "ipndm", "res_multistep", "euler_ancestral",
              "dpmpp_2m_sde", "dpmpp_sde", "er_sde")
PLOT_OURS = ("usf", "usf order=2 corrector=none", "40% dpmpp_2m_sde eta=1 / * dpmpp_2m", "30% usf eta=1 / * usf")


# --------------------------------------------------------------------------- reference ODE solution


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """Karras et al. (2022) eq. 5: n sigmas from sigma_max down to sigma_min."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)]


def reference_sigmas(n: int, sigma_min: float, sigma_max: float, flow: bool) -> list[float]:
    """n sigmas for the reference solve: Karras (rho 7) in VE sigma; for a flow model Karras in the VE-equivalent
    sigma s / (1 - s) up to 1e4 (s = 0.9999), mapped back (s = v / (1 + v)) after s = 1, so the high-noise end is
    resolved too (with an upper end of 100 the single first step 1 -> 0.99 put samples near a component boundary
    into the wrong component, an error the N-vs-2N check cannot see)."""
    if not flow:
        return karras(n, sigma_min, sigma_max)
    v = karras(n - 1, sigma_min / (1 - sigma_min), 1e4)
    return [1.0] + [a / (1 + a) for a in v]


@torch.no_grad()
def reference_ode(denoise, x_start: torch.Tensor, sig: list[float]) -> torch.Tensor:
    """Probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma along ``sig``, then x0 = D(x, sig[-1]).

    The same ODE holds for VE (x = x0 + sigma eps) and rectified-flow (x = (1-s) x0 + s eps) models.
    Solved in float64 with DPM-Solver++(2M) (Lu et al. 2022, multistep data prediction, lambda = -log sigma):
    x' = (s'/s) x + (1 - e^-h) (D + (D - D_prev) / (2 r)), r = h_prev / h.
    """
    n = len(sig)
    x = x_start.double()
    old, h_last = None, None
    for i in range(n - 1):
        d = denoise(x, sig[i])
        h = math.log(sig[i] / sig[i + 1])
        dd = d if old is None else d + (d - old) * (h / (2 * h_last))
        x = (sig[i + 1] / sig[i]) * x - math.expm1(-h) * dd
        old, h_last = d, h
    return denoise(x, sig[-1])


# --------------------------------------------------------------------------- one model (worker process)


class ModelBench:
    """Everything measured on one built-in model (runs in its own process)."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        from . import comfy_inproc as ci

        self.ci = ci
        self.kind = kind
        self.args = args
        self.version = ci.load_comfy(args.device)
        self.model = ci.make_model(kind)
        self.flow = self.model.flow
        self.batch = args.batch_digits if kind == "digits" else args.batch_gmm
        shape = LATENT[kind]
        self.noise = torch.randn((self.batch, *shape), generator=torch.Generator().manual_seed(NOISE_SEED))
        self.probe_noise = self.noise[:1].clone()
        ms = self.model.model_sampling
        self.sigma_min, self.sigma_max = float(ms.sigma_min), float(ms.sigma_max)
        self.schedulers = ci.scheduler_names()
        self.samplers = ci.sampler_names()
        if args.quick:
            self.schedulers = [s for s in self.schedulers if s in ("karras", "simple")]
            self.samplers = [s for s in self.samplers if s in ("euler", "dpmpp_2m", "uni_pc", "euler_ancestral",
                                                               "dpmpp_2m_sde", "dpmpp_2m_sde_gpu")]
        self.nfes = (6, 10) if args.quick else NFES
        self.plans = [p for p in PLANS if not args.quick or p[0] in QUICK_PLANS]
        self._probe_cache: dict[tuple, int] = {}
        self.records: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {"model": kind, "batch": self.batch, "latent": list(shape),
                                     "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                                     "comfyui": self.version}

    # ---- metrics

    def setup_metrics(self) -> None:
        from . import metrics

        t0 = time.perf_counter()
        if self.kind == "digits":
            self.data = metrics.digits_data()
            n = min(self.batch, len(self.data))
            floors = metrics.digits_floor(self.data, n, 5)
            self.info["dist_name"] = "FD (64-d pixels) to the 1797 digits"
            self.info["floor_note"] = f"FD of {n} random data digits (no replacement) to all 1797; optimistic"
        else:
            from sampler_core.models.gmm import for_latent_cached

            self.gmm = for_latent_cached(LATENT[self.kind])
            self.sw = metrics.GMMSlicedW2(self.gmm.means, self.gmm.stds, self.gmm.weights,
                                          n_dirs=self.args.n_dirs)
            floors = [self.sw(self.gmm.sample(self.batch, torch.Generator().manual_seed(100 + s))) for s in range(5)]
            self.info["dist_name"] = f"sliced W2 to the exact mixture ({self.args.n_dirs} directions)"
            self.info["floor_note"] = f"SW2 of {self.batch} exact draws (5 independent sets)"
        self.info["floor"] = statistics.mean(floors)
        self.info["floor_sd"] = statistics.stdev(floors)
        self.info["floor_values"] = floors
        log(f"[{self.kind}] metric floor {self.info['floor']:.4f} +- {self.info['floor_sd']:.4f} "
            f"({time.perf_counter() - t0:.1f}s)")

    def dist(self, x: torch.Tensor) -> float:
        from . import metrics

        return metrics.sample_distance(x, self.kind, getattr(self, "data", None), getattr(self, "sw", None))

    # ---- reference

    def denoiser(self):
        if self.kind == "digits":
            net = self.model.patcher.model.diffusion_model._net

            def d(x: torch.Tensor, sigma: float) -> torch.Tensor:
                return net.denoise(x.float(), sigma).double()

            return d
        if self.flow:
            return lambda x, s: self.gmm.denoise_flow(x, s)
        return lambda x, s: self.gmm.denoise(x, s)

    def setup_reference(self) -> None:
        from . import metrics

        t0 = time.perf_counter()
        n = self.args.ref_steps or ((60 if self.args.quick else 250) if self.kind == "digits" else
                                    (150 if self.args.quick else 1000))
        if self.flow:
            x_start = self.noise.double()  # CONST noise scaling at sigma = 1
        else:
            x_start = self.noise.double() * math.sqrt(1.0 + self.sigma_max**2)  # EPS, max_denoise
        d = self.denoiser()
        ref_n = reference_ode(d, x_start, reference_sigmas(n, self.sigma_min, self.sigma_max, self.flow))
        self.ref = reference_ode(d, x_start, reference_sigmas(2 * n, self.sigma_min, self.sigma_max, self.flow))
        conv = metrics.rmse(ref_n, self.ref)
        # Cross-check through the whole ComfyUI pipeline (its noise scaling, model wrapper, float32).
        m = self.args.ref_check_steps
        sig = self.ci.ksampler_sigmas(self.model, "dpmpp_2m", "karras", m)
        x, calls = self.ci.run(self.model, self.ci.comfy_sampler("dpmpp_2m"), sig, self.noise, seed=SAMPLER_SEED)
        check = metrics.rmse(x, self.ref)
        self.info["reference"] = {
            "method": "DPM-Solver++(2M), float64, Karras rho=7 (flow: in s/(1-s)), direct denoiser calls",
            "comfy_check_scheduler": "karras",
            "steps": 2 * n, "rmse_steps_vs_half": conv, "half_steps": n,
            "comfy_dpmpp_2m_steps": m, "comfy_dpmpp_2m_calls": calls, "rmse_comfy_dpmpp_2m_vs_ref": check,
            "ref_rms": float(self.ref.pow(2).mean().sqrt()), "dist_of_ref": self.dist(self.ref.float()),
        }
        log(f"[{self.kind}] reference: rmse({2 * n} vs {n} steps) = {conv:.2e}; ComfyUI dpmpp_2m {m} steps vs ref "
            f"= {check:.2e}; dist(ref) = {self.info['reference']['dist_of_ref']:.4f} ({time.perf_counter() - t0:.1f}s)")

    # ---- runs

    def _run(self, sampler, sigmas, noise, seed=SAMPLER_SEED) -> tuple[torch.Tensor, int]:
        return self.ci.run(self.model, sampler, sigmas, noise, seed=seed)

    def is_stochastic(self, make_sampler, sigmas_fn) -> bool:
        """Empirical: two runs from the same noise with different seeds differ."""
        sig = sigmas_fn("karras", 4)
        a, _ = self._run(make_sampler(), sig, self.noise[:2], seed=1)
        b, _ = self._run(make_sampler(), sig, self.noise[:2], seed=2)
        return bool((a - b).abs().max() > 1e-6)

    def probe_calls(self, name: str, scheduler: str, steps: int) -> int:
        key = (name, scheduler, steps)
        if key not in self._probe_cache:
            sig = self.ci.ksampler_sigmas(self.model, name, scheduler, steps)
            _, calls = self._run(self.ci.comfy_sampler(name), sig, self.probe_noise)
            self._probe_cache[key] = calls
        return self._probe_cache[key]

    @staticmethod
    def max_steps(calls_of, nfe: int) -> int:
        """Largest steps in [1, nfe] with calls_of(steps) <= nfe (calls are non-decreasing in steps)."""
        lo, hi = 1, nfe
        if calls_of(hi) <= nfe:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if calls_of(mid) <= nfe:
                lo = mid
            else:
                hi = mid
        return lo

    def record(self, **kw: Any) -> dict[str, Any]:
        rec = {"model": self.kind, **kw}
        self.records.append(rec)
        return rec

    def evaluate(self, x: torch.Tensor, stochastic: bool) -> tuple[float | None, float]:
        from . import metrics

        return (None if stochastic else metrics.rmse(x, self.ref)), self.dist(x)

    def alias_of(self, name: str) -> dict[str, Any] | None:
        """Variants that are their base sampler here, checked by a run: ``*_gpu`` on the CPU (only the Brownian
        tree's device differs; must be bit-identical) and ``*_cfg_pp`` at cfg 1 (the unconditional prediction is
        the conditional one; max abs diff <= 1e-5). Returns {same_as, max_abs_diff} or None (then it is run)."""
        if name.endswith("_gpu") and self.args.device == "cpu":
            base, tol = name[: -len("_gpu")], 0.0
        elif "_cfg_pp" in name:
            base, tol = name.replace("_cfg_pp", ""), 1e-5
        else:
            return None
        if base not in self.samplers:
            return None
        sig = self.ci.ksampler_sigmas(self.model, base, "karras", 5)
        a, _ = self._run(self.ci.comfy_sampler(name), sig, self.noise[:4])
        b, _ = self._run(self.ci.comfy_sampler(base), sig, self.noise[:4])
        diff = float((a - b).abs().max())
        return {"same_as": base, "max_abs_diff": diff} if diff <= tol else None

    def run_comfy_grid(self) -> None:
        self.info["aliases"] = {}
        for name in self.samplers:
            t_name = time.perf_counter()
            try:
                alias = self.alias_of(name)
            except Exception:  # it fails to run: the grid below records the error
                alias = None
            if alias is not None:
                self.info["aliases"][name] = alias
                log(f"[{self.kind}] {name}: same as {alias['same_as']} (max abs diff {alias['max_abs_diff']:.1e}), "
                    "not run again")
                continue
            try:
                stochastic = self.is_stochastic(lambda n=name: self.ci.comfy_sampler(n),
                                                lambda sch, st, n=name: self.ci.ksampler_sigmas(self.model, n, sch, st))
                steps_karras = {nfe: self.max_steps(lambda s, n=name: self.probe_calls(n, "karras", s), nfe)
                                for nfe in self.nfes}
            except Exception as exc:  # a sampler ComfyUI cannot run on this model: record and go on
                log(f"[{self.kind}] {name}: FAILED ({type(exc).__name__}: {exc})")
                for nfe in self.nfes:
                    self.record(family="comfy", name=name, scheduler=None, nfe_target=nfe, steps=None, calls=None,
                                stochastic=None, rmse=None, dist=None, seconds=None,
                                error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            if stochastic and getattr(self.args, "ode_only", False):
                log(f"[{self.kind}] {name}: SDE sampler, skipped (ODE samplers only)")
                continue
            for scheduler in self.schedulers:
                for nfe in self.nfes:
                    self._comfy_point(name, scheduler, nfe, steps_karras[nfe], stochastic)
            log(f"[{self.kind}] {name} ({'SDE' if stochastic else 'ODE'}) done in {time.perf_counter() - t_name:.1f}s")

    def _comfy_point(self, name: str, scheduler: str, nfe: int, steps: int, stochastic: bool) -> None:
        err = None
        x, calls, secs = None, None, None
        try:
            for _attempt in range(3):
                sig = self.ci.ksampler_sigmas(self.model, name, scheduler, steps)
                t0 = time.perf_counter()
                x, calls = self._run(self.ci.comfy_sampler(name), sig, self.noise)
                secs = time.perf_counter() - t0
                if calls <= nfe and (steps >= nfe or self.probe_calls(name, scheduler, steps + 1) > nfe):
                    break
                # this scheduler changes the calls per step (e.g. repeated sigmas): search on it
                steps = self.max_steps(lambda s: self.probe_calls(name, scheduler, s), nfe)
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"[:300]
        rmse_v, dist_v = self.evaluate(x, stochastic) if x is not None else (None, None)
        self.record(family="comfy", name=name, scheduler=scheduler, nfe_target=nfe, steps=steps, calls=calls,
                    stochastic=stochastic, rmse=rmse_v, dist=dist_v, seconds=secs, error=err)

    def run_plans(self) -> None:
        for label, text in self.plans:
            t_plan = time.perf_counter()
            try:
                _, plan = self.ci.plan_sampler(text)
                stochastic = self.is_stochastic(lambda t=text: self.ci.plan_sampler(t)[0],
                                                lambda sch, st: self.ci.ksampler_sigmas(self.model, None, sch, st))
            except Exception as exc:
                log(f"[{self.kind}] plan {label!r}: FAILED ({type(exc).__name__}: {exc})")
                for nfe in self.nfes:
                    self.record(family="ours", name=label, plan=text, scheduler=None, nfe_target=nfe, steps=None,
                                calls=None, predicted_calls=None, stochastic=None, rmse=None, dist=None, seconds=None,
                                error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            for scheduler in self.schedulers:
                for nfe in self.nfes:
                    err, x, calls, secs, steps, pred = None, None, None, None, None, None
                    try:
                        def predicted(s: int, sch: str = scheduler, p=plan) -> int:
                            return self.ci.plan_nfe(p, self.ci.ksampler_sigmas(self.model, None, sch, s), self.flow)

                        steps = self.max_steps(predicted, nfe)
                        pred = predicted(steps)
                        sig = self.ci.ksampler_sigmas(self.model, None, scheduler, steps)
                        t0 = time.perf_counter()
                        x, calls = self._run(self.ci.plan_sampler(text)[0], sig, self.noise)
                        secs = time.perf_counter() - t0
                    except Exception as exc:
                        err = f"{type(exc).__name__}: {exc}"[:300]
                    rmse_v, dist_v = self.evaluate(x, stochastic) if x is not None else (None, None)
                    self.record(family="ours", name=label, plan=text, scheduler=scheduler, nfe_target=nfe, steps=steps,
                                calls=calls, predicted_calls=pred, stochastic=stochastic, rmse=rmse_v, dist=dist_v,
                                seconds=secs, error=err)
            log(f"[{self.kind}] plan {label!r} ({'SDE' if stochastic else 'ODE'}) done in "
                f"{time.perf_counter() - t_plan:.1f}s")

    def run_parity(self) -> list[dict[str, Any]]:
        """Our one-method plan vs ComfyUI's sampler of that name: same sigmas, noise and seed."""
        out = []
        scheduler = NAMED_SCHEDULER[self.kind]
        for comfy_name, plan_text in PARITY.items():
            if comfy_name not in self.ci.sampler_names():
                continue
            rec: dict[str, Any] = {"model": self.kind, "comfy": comfy_name, "ours": plan_text, "scheduler": scheduler,
                                   "steps": 10}
            try:
                sig = self.ci.ksampler_sigmas(self.model, None, scheduler, 10)
                a, ca = self._run(self.ci.comfy_sampler(comfy_name), sig, self.noise[:16])
                b, cb = self._run(self.ci.plan_sampler(plan_text)[0], sig, self.noise[:16])
                rec.update(max_abs_diff=float((a - b).abs().max()), calls_comfy=ca, calls_ours=cb)
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
            out.append(rec)
        return out

    def run_all(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.setup_metrics()
        self.setup_reference()
        parity = self.run_parity()
        log(f"[{self.kind}] parity done")
        self.run_comfy_grid()
        self.run_plans()
        self.info["seconds"] = time.perf_counter() - t0
        self.info["cpu_seconds"] = time.process_time()
        return {"info": self.info, "records": self.records, "parity": parity}


def worker_main(args: argparse.Namespace) -> None:
    if args.device == "cpu":
        torch.set_num_threads(1)
    bench = ModelBench(args.worker, args)
    result = bench.run_all()
    Path(args.part).write_text(json.dumps(result, allow_nan=True))


# --------------------------------------------------------------------------- per-step overhead


class _FreeModel:
    """Near-free stand-in for ComfyUI's model wrapper: D(x, sigma) = 0.5 x; exposes the model_sampling."""

    def __init__(self, model_sampling) -> None:
        patcher = type("P", (), {"get_model_object": staticmethod(lambda name: model_sampling)})()
        self.inner_model = type("I", (), {"model_patcher": patcher, "model_sampling": model_sampling})()

    def __call__(self, x, sigma, **kwargs):
        return x * 0.5


def overhead_bench(device: str, steps: int, reps: int, size: int) -> dict[str, Any]:
    """Time ComfyUI's k-diffusion function and our ``sample_plan`` for the same method, interleaved.

    Both get the same near-free model, sigmas, latent and a seeded Gaussian noise sampler from ComfyUI
    (``default_noise_sampler``) for the SDE method, so the loop and step arithmetic are what is timed.
    """
    from . import comfy_inproc as ci

    ci.load_comfy(device)
    import comfy.k_diffusion.sampling as kds

    loop = ci.pack_module("sampler_core.loop")
    plan_mod = ci.pack_module("sampler_core.plan")
    toy = ci.make_model("gmm-eps")
    dev = torch.device(device)
    model = _FreeModel(toy.model_sampling)
    x0 = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    sigmas = ci.ksampler_sigmas(toy, None, "karras", steps).to(dev)
    methods = {
        "euler": (kds.sample_euler, {}),
        "dpmpp_2m": (kds.sample_dpmpp_2m, {}),
        "dpmpp_2m_sde": (kds.sample_dpmpp_2m_sde, {"noise": True}),
    }

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    results: dict[str, Any] = {"steps": steps, "reps": reps, "latent": [1, 4, size, size], "device": device,
                               "model": "D(x, sigma) = 0.5 x", "methods": {}}
    for name, (fn, opt) in methods.items():
        plan = plan_mod.parse_plan(name)

        def comfy_run(fn=fn, opt=opt):
            kw = {"noise_sampler": kds.default_noise_sampler(x0, seed=7)} if opt else {}
            return fn(model, x0.clone(), sigmas, extra_args={"seed": 7}, callback=None, disable=True, **kw)

        def ours_run(plan=plan, opt=opt):
            factory = (lambda kind, x, sig, seed: kds.default_noise_sampler(x, seed=7)) if opt else None
            return loop.sample_plan(model, x0.clone(), sigmas, extra_args={"seed": 7}, callback=None, disable=True,
                                    plan=plan, model_kind="eps", noise_sampler_factory=factory)

        diff = float((comfy_run() - ours_run()).abs().max())  # also the warm-up
        t_comfy, t_ours, ratios = [], [], []
        for r in range(reps):
            order = (("comfy", comfy_run), ("ours", ours_run)) if r % 2 == 0 else (("ours", ours_run),
                                                                                   ("comfy", comfy_run))
            got = {}
            for who, f in order:
                sync()
                t0 = time.perf_counter()
                f()
                sync()
                got[who] = time.perf_counter() - t0
            t_comfy.append(got["comfy"])
            t_ours.append(got["ours"])
            ratios.append(got["ours"] / got["comfy"])
        results["methods"][name] = {
            "comfy_ms_per_step": 1e3 * statistics.median(t_comfy) / steps,
            "ours_ms_per_step": 1e3 * statistics.median(t_ours) / steps,
            "median_ratio": statistics.median(ratios), "ratios": ratios, "max_abs_diff": diff,
        }
        log(f"[overhead] {name}: ComfyUI {results['methods'][name]['comfy_ms_per_step']:.3f} ms/step, ours "
            f"{results['methods'][name]['ours_ms_per_step']:.3f} ms/step, median ratio "
            f"{results['methods'][name]['median_ratio']:.3f}, max|diff| {diff:.1e}")
    return results


# --------------------------------------------------------------------------- aggregation, tables, plots


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 else f"{v:.{max(digits - 1, 1)}e}"


def label_of(rec: dict[str, Any]) -> str:
    who = "ComfyUI" if rec["family"] == "comfy" else "ours"
    sde = " (SDE)" if rec.get("stochastic") else ""
    return f"{who} `{rec['name']}`{sde} / {rec['scheduler']} ({rec['steps']} steps, {rec['calls']} calls)"


def ok(rec: dict[str, Any]) -> bool:
    return rec.get("error") is None and rec.get("dist") is not None and math.isfinite(rec["dist"])


def best(records: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    cand = [r for r in records if ok(r) and r.get(key) is not None and math.isfinite(r[key])]
    return min(cand, key=lambda r: r[key]) if cand else None


def find(records, model, family, name, scheduler, nfe):
    for r in records:
        if (r["model"], r["family"], r["name"], r["scheduler"], r["nfe_target"]) == (model, family, name, scheduler,
                                                                                       nfe):
            return r
    return None


def build_markdown(res: dict[str, Any]) -> str:
    recs = res["records"]
    meta = res["meta"]
    lines: list[str] = []
    add = lines.append
    add("## Benchmark results")
    add("")
    add(f"Measured by `{meta['command']}` on {meta['date']} ({meta['device_desc']}; ComfyUI {meta['comfyui']}, "
        f"torch {meta['torch']}); wall time {meta['wall_s'] / 60:.1f} min, CPU time of all its processes "
        f"{meta.get('cpu_s', 0.0) / 60:.1f} min. Every number below comes from "
        f"`{meta['out']}/results.json` written by that run (all runs: `runs.csv`; plots: `*.png`).")
    add("")
    add("Setup: every ComfyUI built-in sampler except the adaptive `dpm_fast`/`dpm_adaptive` "
        f"({meta['n_comfy_samplers']} samplers) x every ComfyUI scheduler ({meta['n_schedulers']}), and "
        f"{meta['n_plans']} plans of ours (Solver Mix sampler) x every scheduler, run through ComfyUI's "
        "`sample_custom` with cfg 1, the same initial noise and seed. Steps: the largest count whose "
        "*counted* diffusion-model calls are <= the NFE target (ComfyUI's KSampler sigmas, including its "
        "dropped penultimate sigma for dpm_2/uni_pc). RMSE: to a float64 reference solution of the "
        "probability-flow ODE from the same noise (deterministic samplers only; SDE samplers are marked "
        "(SDE) and have no RMSE). Distance: sliced W2 to the exact mixture (GMM) or Frechet distance to "
        "the data in 64-d pixel space (digits); lower is better, the floor is the value of exact samples.")
    add("")
    for model in meta["models"]:
        info = res["models"][model]["info"]
        ref = info["reference"]
        add(f"### {model}: batch {info['batch']} x {tuple(info['latent'])}")
        add("")
        add(f"Distance: {info['dist_name']}; floor {fmt(info['floor'])} +- {fmt(info['floor_sd'], 2)} "
            f"({info['floor_note']}); reference ODE solution: {fmt(ref['dist_of_ref'])}. Reference: "
            f"{ref['steps']} steps, RMSE to the {ref['half_steps']}-step solution {fmt(ref['rmse_steps_vs_half'], 2)}; "
            f"ComfyUI's own dpmpp_2m with {ref['comfy_dpmpp_2m_steps']} {ref['comfy_check_scheduler']} steps "
            "through the full pipeline is "
            f"{fmt(ref['rmse_comfy_dpmpp_2m_vs_ref'], 2)} from it (RMS of the samples: {fmt(ref['ref_rms'])}).")
        add("")
        add("| NFE | best ComfyUI (RMSE) | RMSE | best ours (RMSE) | RMSE | best ComfyUI (distance) | dist | "
            "best ours (distance) | dist |")
        add("|---|---|---|---|---|---|---|---|---|")
        for nfe in meta["nfes"]:
            sub = [r for r in recs if r["model"] == model and r["nfe_target"] == nfe]
            c = [r for r in sub if r["family"] == "comfy"]
            o = [r for r in sub if r["family"] == "ours"]
            bc, bo = best(c, "rmse"), best(o, "rmse")
            dc, do = best(c, "dist"), best(o, "dist")
            cell = [label_of(r) if r else "n/a" for r in (bc, bo, dc, do)]
            add(f"| {nfe} | {cell[0]} | {fmt(bc and bc['rmse'])} | {cell[1]} | {fmt(bo and bo['rmse'])} | "
                f"{cell[2]} | {fmt(dc and dc['dist'])} | {cell[3]} | {fmt(do and do['dist'])} |")
        add("")
        sch = NAMED_SCHEDULER[model]
        add(f"Named samplers and plans on the `{sch}` scheduler (RMSE / distance; calls in brackets):")
        add("")
        add("| sampler / plan | " + " | ".join(f"NFE {n}" for n in meta["nfes"]) + " |")
        add("|---|" + "---|" * len(meta["nfes"]))
        for fam, name in NAMED:
            cells = []
            stoch = False
            for nfe in meta["nfes"]:
                r = find(recs, model, fam, name, sch, nfe)
                if r is None or not ok(r):
                    cells.append("n/a" if r is None else "error")
                    continue
                stoch = stoch or bool(r["stochastic"])
                cells.append(f"{fmt(r['rmse'])} / {fmt(r['dist'])} [{r['calls']}]")
            who = "ComfyUI" if fam == "comfy" else "ours"
            add(f"| {who} `{name}`{' (SDE)' if stoch else ''} | " + " | ".join(cells) + " |")
        add("")
    if "gmm-flow" in meta["models"]:
        add("### Exact exponential integrator on the flow model (gmm-flow)")
        add("")
        add("ComfyUI's `dpmpp_2m` (and `uni_pc`) take lambda = -log(sigma) on flow models too; our `usf` takes the "
            "flow model's half-log-SNR lambda = log((1 - sigma)/sigma) (`usf order=2 corrector=none` is "
            "DPM-Solver++(2M) in that lambda); our `dpmpp_2m` reproduces ComfyUI's. RMSE to the reference ODE "
            "solution, same noise, same sigmas per column:")
        add("")
        rows = [("comfy", "dpmpp_2m"), ("ours", "dpmpp_2m"), ("ours", "usf order=2 corrector=none"),
                ("comfy", "uni_pc"), ("ours", "usf")]
        for sch in ("simple", "beta", "karras"):
            add(f"| `{sch}` scheduler | " + " | ".join(f"NFE {n}" for n in meta["nfes"]) + " |")
            add("|---|" + "---|" * len(meta["nfes"]))
            for fam, name in rows:
                rs = [find(recs, "gmm-flow", fam, name, sch, nfe) for nfe in meta["nfes"]]
                cells = [fmt(r["rmse"]) if r and ok(r) else "n/a" for r in rs]
                add(f"| {'ComfyUI' if fam == 'comfy' else 'ours'} `{name}` | " + " | ".join(cells) + " |")
            add("")
    ov = res.get("overhead")
    if ov:
        shape = "x".join(map(str, ov["latent"]))
        add(f"### Per-step overhead: our loop vs ComfyUI's implementation ({ov['steps']} steps, latent {shape}, "
            f"model D = 0.5 x, {ov['reps']} interleaved repetitions, {ov['device']})")
        add("")
        add("| method | ComfyUI ms/step | ours ms/step | median ratio ours/ComfyUI | max abs diff |")
        add("|---|---|---|---|---|")
        for name, m in ov["methods"].items():
            add(f"| {name} | {m['comfy_ms_per_step']:.4f} | {m['ours_ms_per_step']:.4f} | {m['median_ratio']:.3f} | "
                f"{m['max_abs_diff']:.1e} |")
        add("")
        add("Both are called through the k-diffusion signature `fn(model, x, sigmas, extra_args, callback, disable)`; "
            "for dpmpp_2m_sde both use ComfyUI's seeded Gaussian noise sampler, so the loop is timed, not the "
            "Brownian tree.")
        add("")
    par = res.get("parity", [])
    if par:
        add("### Parity: our one-method plan vs ComfyUI's sampler of the same name (10 steps, batch 16)")
        add("")
        models = [m for m in meta["models"]]
        add("| ComfyUI sampler | our plan | " + " | ".join(f"{m} max abs diff" for m in models) + " |")
        add("|---|---|" + "---|" * len(models))
        names = list(dict.fromkeys(p["comfy"] for p in par))
        for n in names:
            cells = []
            plan_text = ""
            for m in models:
                p = next((q for q in par if q["comfy"] == n and q["model"] == m), None)
                if p is None:
                    cells.append("n/a")
                    continue
                plan_text = p["ours"]
                cells.append("error" if "error" in p else f"{p['max_abs_diff']:.1e}")
            add(f"| {n} | `{plan_text}` | " + " | ".join(cells) + " |")
        add("")
    aliases: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for m in meta["models"]:
        for k, v in res["models"][m]["info"].get("aliases", {}).items():
            aliases.setdefault((k, v["same_as"]), []).append((m, v["max_abs_diff"]))
    if aliases:
        add("Not run separately, because a check run (5 Karras steps, batch 4) gave the same result as the base "
            "sampler on that model (on the CPU the `_gpu` variants only move the Brownian tree; at cfg 1 a "
            "`_cfg_pp` variant is its base sampler): " + "; ".join(
                f"`{k}` = `{base}` on " + ", ".join(f"{m} ({d:.0e})" for m, d in lst)
                for (k, base), lst in sorted(aliases.items())) + ". All other variants ran.")
        add("")
    failed = sorted({(r["model"], r["family"], r["name"], r["error"].split(":")[0]) for r in recs if r.get("error")})
    if failed:
        add("Runs that failed (recorded in the JSON with the error): " + "; ".join(
            f"{m} {'ComfyUI' if f == 'comfy' else 'ours'} `{n}` ({e})" for m, f, n, e in failed[:20])
            + (" ..." if len(failed) > 20 else "") + ".")
        add("")
    mism = [r for r in recs if r["family"] == "ours" and r.get("calls") is not None
            and r.get("predicted_calls") is not None and r["calls"] != r["predicted_calls"]]
    add(f"Our `plan_nfe` predicted the counted model calls exactly in "
        f"{sum(1 for r in recs if r['family'] == 'ours' and r.get('calls') is not None) - len(mism)} of "
        f"{sum(1 for r in recs if r['family'] == 'ours' and r.get('calls') is not None)} runs.")
    add("")
    return "\n".join(lines)


def make_plots(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    recs = res["records"]
    for model in res["meta"]["models"]:
        info = res["models"][model]["info"]
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        colors = iter(plt.cm.tab20.colors + plt.cm.Dark2.colors)
        line_color: dict[str, Any] = {}
        for ax, key in zip(axes, ("rmse", "dist"), strict=True):
            for fam, names, style in (("comfy", PLOT_COMFY, "-o"), ("ours", PLOT_OURS, "--s")):
                for name in names:
                    pts = []
                    for nfe in res["meta"]["nfes"]:
                        b = best([r for r in recs if r["model"] == model and r["family"] == fam and r["name"] == name
                                  and r["nfe_target"] == nfe], key)
                        if b is not None:
                            pts.append((b["calls"], b[key]))
                    if pts:
                        xs, ys = zip(*sorted(pts), strict=True)
                        label = f"{'ComfyUI' if fam == 'comfy' else 'ours'} {name}"
                        if label not in line_color:
                            line_color[label] = next(colors)
                        ax.plot(xs, ys, style, label=label, ms=4, color=line_color[label])
            if key == "dist":
                ax.axhline(info["floor"], color="k", ls=":", lw=1, label="floor (exact samples)")
                ax.axhline(info["reference"]["dist_of_ref"], color="gray", ls="-.", lw=1, label="reference ODE")
                ax.set_ylabel(info["dist_name"])
                ax.set_title(f"{model}: distance to the target (all samplers)")
            else:
                ax.set_ylabel("RMSE to the reference ODE solution")
                ax.set_title(f"{model}: RMSE (deterministic samplers)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("model calls (NFE), best scheduler per point")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        h2, l2 = axes[1].get_legend_handles_labels()
        merged = dict(zip(labels + l2, handles + h2, strict=True))
        fig.legend(merged.values(), merged.keys(), loc="center right", fontsize=7)
        fig.tight_layout(rect=(0, 0, 0.8, 1))
        path = out / f"error_vs_nfe_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
        # heat map: ComfyUI sampler x scheduler at the middle NFE
        nfe = res["meta"]["nfes"][len(res["meta"]["nfes"]) // 2]
        sub = [r for r in recs if r["model"] == model and r["family"] == "comfy" and r["nfe_target"] == nfe]
        names = list(dict.fromkeys(r["name"] for r in sub))
        schs = list(dict.fromkeys(r["scheduler"] for r in sub if r["scheduler"]))
        if names and schs:
            import numpy as np

            grid = np.full((len(names), len(schs)), np.nan)
            for r in sub:
                if ok(r) and r["scheduler"]:
                    grid[names.index(r["name"]), schs.index(r["scheduler"])] = r["dist"]
            fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.5))
            im = ax.imshow(np.log10(grid), aspect="auto", cmap="viridis_r")
            ax.set_xticks(range(len(schs)), schs, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            fig.colorbar(im, ax=ax, label=f"log10 distance ({model}, NFE {nfe})")
            ax.set_title(f"{model}: ComfyUI sampler x scheduler, NFE <= {nfe}")
            fig.tight_layout()
            path = out / f"heatmap_{model}_nfe{nfe}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(path.name)
    return files


def write_csv(records: list[dict[str, Any]], path: Path) -> None:
    keys = ["model", "family", "name", "scheduler", "nfe_target", "steps", "calls", "predicted_calls", "stochastic",
            "rmse", "dist", "seconds", "error"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)


def device_desc(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread per worker"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="output folder (JSON, CSV, PNG)")
    ap.add_argument("--quick", action="store_true", help="few samplers/schedulers/plans, NFE 6 and 10 (smoke check)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    ap.add_argument("--jobs", type=int, default=3, help="models benchmarked in parallel (worker processes)")
    ap.add_argument("--batch-gmm", type=int, default=None, help="GMM batch (default 256)")
    ap.add_argument("--batch-digits", type=int, default=None, help="digits batch (default 500; quick 200)")
    ap.add_argument("--n-dirs", type=int, default=128, help="sliced-W2 directions")
    ap.add_argument("--ref-steps", type=int, default=0,
                    help="reference ODE steps N (2N is the reference; default 1000, digits 250)")
    ap.add_argument("--ref-check-steps", type=int, default=None, help="steps of the ComfyUI dpmpp_2m cross-check")
    ap.add_argument("--overhead-steps", type=int, default=200)
    ap.add_argument("--overhead-reps", type=int, default=None)
    ap.add_argument("--results-md", default=None,
                    help="markdown file for the README (default benchmarks/RESULTS.md; not written by --quick)")
    ap.add_argument("--report-from", default=None,
                    help="only rebuild tables and plots from an earlier results.json (written to --out)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.batch_gmm = args.batch_gmm or 256
    args.batch_digits = args.batch_digits or (200 if q else 500)
    args.ref_check_steps = args.ref_check_steps or (50 if q else 200)
    args.overhead_reps = args.overhead_reps or (3 if q else 9)
    if args.results_md is None:
        args.results_md = "" if q else str(REPO / "benchmarks" / "RESULTS.md")
    if args.worker:
        worker_main(args)
        return
    if args.report_from:
        results = json.loads(Path(args.report_from).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        make_plots(results, out)
        md = build_markdown(results)
        (out / "RESULTS.md").write_text(md + "\n")
        if args.results_md:
            Path(args.results_md).write_text(md + "\n")
        print(md)
        return

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    passthrough = ["--device", args.device, "--batch-gmm", str(args.batch_gmm), "--batch-digits",
                   str(args.batch_digits), "--n-dirs", str(args.n_dirs), "--ref-steps", str(args.ref_steps or 0),
                   "--ref-check-steps", str(args.ref_check_steps)] + (["--quick"] if q else [])
    # Workers: one process per model, --jobs at a time (the slowest, digits, first).
    order = sorted(models, key=lambda m: m != "digits")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1" if args.device == "cpu" else
           os.environ.get("OMP_NUM_THREADS", "")}
    parts, failures = run_workers("benchmarks.bench_solvers", order, out, passthrough, env, args.jobs)
    results: dict[str, Any] = {"models": {}, "records": [], "parity": []}
    for m in order:
        if m in failures:
            continue
        part = json.loads(parts[m].read_text())
        results["models"][m] = {"info": part["info"]}
        results["records"] += part["records"]
        results["parity"] += part["parity"]
        parts[m].unlink()
    log("per-step overhead ...")
    if args.device == "cpu":
        torch.set_num_threads(1)
    try:
        results["overhead"] = overhead_bench(args.device, args.overhead_steps, args.overhead_reps, 128)
    except Exception as exc:  # report, keep the rest
        results["overhead"] = None
        failures["overhead"] = f"{type(exc).__name__}: {exc}"
        log(f"overhead benchmark FAILED: {exc}")
    done = [m for m in order if m in results["models"]]
    comfy_names = {r["name"] for r in results["records"] if r["family"] == "comfy"}
    results["meta"] = {
        "command": "python -m benchmarks.bench_solvers " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device, "device_desc": device_desc(args.device), "torch": torch.__version__,
        "comfyui": next((results["models"][m]["info"]["comfyui"] for m in done), "unknown"),
        "models": done, "nfes": list((6, 10) if q else NFES), "quick": q,
        "n_comfy_samplers": len(comfy_names),
        "n_schedulers": len({r["scheduler"] for r in results["records"] if r["scheduler"]}),
        "n_plans": len({r["name"] for r in results["records"] if r["family"] == "ours"}),
        "plans": {label: text for label, text in PLANS}, "noise_seed": NOISE_SEED, "sampler_seed": SAMPLER_SEED,
        "failures": failures, "python": platform.python_version(), "out": str(args.out),
    }
    results["meta"]["wall_s"] = time.perf_counter() - t_start
    if done:
        results["meta"]["plots"] = make_plots(results, out)
    write_csv(results["records"], out / "runs.csv")
    results["meta"]["wall_s"] = time.perf_counter() - t_start
    results["meta"]["cpu_s"] = time.process_time() + sum(
        results["models"][m]["info"].get("cpu_seconds", 0.0) for m in done)
    md = build_markdown(results) if done else "benchmark failed: " + json.dumps(failures)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    (out / "RESULTS.md").write_text(md + "\n")
    if args.results_md:
        Path(args.results_md).write_text(md + "\n")
    print(md)
    log(f"wall time {results['meta']['wall_s']:.0f}s; results in {out}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
