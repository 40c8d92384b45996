"""The Unified Sampling Framework step (Liu et al., arXiv 2312.07243): every step picks its own strategy.

Exponential integrator in the model's true half-log-SNR lambda = log(alpha/sigma), h = lambda' - lambda:

* data prediction (x0 = D), with SDE strength eta (eta = 0: ODE; H = (1 + eta) h):
  x' = (sigma'/sigma) e^(-eta h) x + alpha' sum_k H^(k+1) phi_(k+1)(-H) / (1+eta)^k D^(k)
       + sigma' sqrt(1 - e^(-2 eta h)) z
* noise prediction (eps = (x - alpha D)/sigma, ODE only):
  x' = (alpha'/alpha) x - sigma' sum_k h^(k+1) phi_(k+1)(h) eps^(k)

with D^(k), eps^(k) the lambda-derivatives at the current point, k < order, estimated from the
current and previous evaluations: ``full`` solves the Taylor system of all points, ``low``
takes each k-th derivative from the k+1 nearest points (divided differences). ``unic``: a
UniC-style corrector that repeats the update at order + 1 with the next step's evaluation
(taken at the predicted point) once it exists: no extra model call.
Exact on flow (CONST) models, where ComfyUI's t = -log sigma methods are not.

A step to sigma 0 (lambda = +inf) returns D itself: the Taylor terms of the data-prediction
update diverge as h -> inf, and the target x0 is D at the last sigma. ``lower_order_final``
caps the order on the last steps of a short run as DPM-Solver / UniPC do (Lu et al. 2022,
arXiv 2211.01095; Zhao et al. 2023): a step k steps before the last nonzero sigma uses order
<= k + 1, so the last solver step is first order and extrapolated derivatives over the
largest, most uneven final lambda steps are not used. ``auto`` applies it below 10 steps
(DPM-Solver's rule; longer runs keep their full order), ``true`` always, ``false`` never.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import snr
from ..registry import OptionSpec, StepMethod, register
from ._base import StepContext, lincomb


def derivative_weights(offsets: list[float], mode: str) -> list[list[float]]:
    """W with g_k ~ sum_j W[k-1][j] f_j (k = 1..m) from values f_0 (offset 0) and f_j at ``offsets`` (j = 1..m)."""
    m = len(offsets)
    if m == 0:
        return []
    if mode == "full":
        a = np.array([[d**k / math.factorial(k) for k in range(1, m + 1)] for d in offsets])
        inv = np.linalg.inv(a)
        return [[-float(inv[k].sum())] + [float(v) for v in inv[k]] for k in range(m)]
    nodes = [0.0] + list(offsets)
    rows = []
    for k in range(1, m + 1):
        row = [0.0] * (m + 1)
        for j in range(k + 1):
            denom = math.prod(nodes[j] - nodes[q] for q in range(k + 1) if q != j)
            row[j] = math.factorial(k) / denom
        rows.append(row)
    return rows


ORDER = OptionSpec("order", int, 3, "Taylor order of the step (derivatives used + 1)", min=1, max=3)
PRED = OptionSpec("pred", str, "data", "expanded quantity: data (x0) or noise (eps) prediction",
                  choices=("data", "noise"))
DERIV = OptionSpec("deriv", str, "full", "derivative estimate: full (all points) or low (nearest points)",
                   choices=("full", "low"))
CORRECTOR = OptionSpec("corrector", str, "unic", "unic: corrector reusing the next evaluation (no extra NFE)",
                       choices=("none", "unic"))
LOWER_ORDER_FINAL = OptionSpec(
    "lower_order_final", str, "auto",
    "cap the order on the last steps (order <= steps left to the last nonzero sigma); auto: below 10 steps",
    choices=("auto", "true", "false"))
LOWER_ORDER_FINAL_BELOW = 10  # ``auto``: runs with fewer steps than this (DPM-Solver's multistep rule)
USF_ETA = OptionSpec("eta", float, 0.0, "SDE strength (data prediction only): 0 = ODE", min=0.0, max=100.0)
USF_S_NOISE = OptionSpec("s_noise", float, 1.0, "scale of the injected noise", min=0.0, max=100.0)


@register
class USF(StepMethod):
    name = "usf"
    description = "Unified Sampling Framework step: order, data/noise prediction, derivative estimate, UniC corrector"
    order = 3
    history = 2
    stochastic = True
    options = (ORDER, PRED, DERIV, CORRECTOR, USF_ETA, USF_S_NOISE, LOWER_ORDER_FINAL)
    noise_kind = "brownian"

    @classmethod
    def check(cls, opts: dict[str, Any]) -> None:
        if opts["pred"] == "noise" and opts["eta"] > 0:
            raise ValueError("usf: eta > 0 (SDE form) needs pred=data")

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return denoised  # after a corrector: D at the corrected point (StepMethod.own_final_step)
        eta = opts["eta"]
        lam_s, lam_t = ctx.lam(s), ctx.lam(s1)
        a_s, a_t = ctx.alpha(s), ctx.alpha(s1)
        noisy = eta > 0 and opts["s_noise"] > 0
        if not math.isfinite(lam_s):
            # from pure noise (flow sigma = 1, lambda = -inf): the first-order step x' = s' x + (1 - s') D. The
            # lambda-polynomial corrector has no finite form here; UniC's idea in sigma instead: with D linear in
            # sigma over [s', 1], the exact solution of dx/dsigma = (x - D)/sigma from sigma = 1 is
            # x' = s' x + (1 - s') D' + w (D - D'), w = s' (s' - 1 - ln s') / (1 - s') (second order; D' = D at
            # the predicted x', the next step's model call)
            x_new = lincomb((0.0 if eta > 0 else s1 / s, x), (a_t, denoised))
            if noisy:
                x_new.add_(ctx.noise(cls.noise_kind, s, s1), alpha=s1 * opts["s_noise"])
            elif (eta == 0 and opts["corrector"] == "unic" and i + 1 < ctx.n and ctx.kind == "flow" and s == 1.0
                  and s1 < 1.0):  # the ODE step (eta > 0 drops x: another update, left first order)
                w = s1 * (s1 - 1.0 - math.log(s1)) / (1.0 - s1)

                def correct_from_one(d_next: torch.Tensor) -> torch.Tensor:
                    return lincomb((s1, x), (1.0 - s1 - w, d_next), (w, denoised))

                ctx.pending = correct_from_one
            return x_new
        h = lam_t - lam_s
        usable = []
        for e in reversed(ctx.history):
            lam_e = ctx.lam(e.sigma)
            if not math.isfinite(lam_e) or len(usable) >= opts["order"] - 1:
                break
            usable.append((lam_e - lam_s, e.x, e.denoised, e.sigma))
        p = min(opts["order"], 1 + len(usable), cls.final_order_cap(ctx, i, opts["lower_order_final"]))
        base = (0.0, x, denoised, s)
        pts = [base] + usable[: p - 1]
        data = opts["pred"] == "data"
        if data:
            big_h = h * (1.0 + eta)
            a_x = (s1 / s) * math.exp(-eta * h)
            coef = [a_t * big_h ** (k + 1) * snr.phi(k + 1, -big_h) / (1.0 + eta) ** k for k in range(p + 1)]
        else:
            a_x = a_t / a_s
            coef = [-s1 * h ** (k + 1) * snr.phi(k + 1, h) for k in range(p + 1)]
        z_term = None
        if noisy:
            z_term = (s1 * math.sqrt(-math.expm1(-2.0 * eta * h)) * opts["s_noise"],
                      ctx.noise(cls.noise_kind, s, s1))
        x_new = cls._update(ctx, data, a_x, coef, pts, opts["deriv"], z_term)
        if opts["corrector"] == "unic" and i + 1 < ctx.n:
            def correct(d_next: torch.Tensor) -> torch.Tensor:
                new = (h, x_new, d_next, s1)
                return cls._update(ctx, data, a_x, coef, [base, new] + usable[: p - 1], opts["deriv"], z_term)

            ctx.pending = correct
        return x_new

    @staticmethod
    def final_order_cap(sched, i: int, mode: str) -> int:
        """Largest order step i may use under ``lower_order_final``: steps left to the last nonzero sigma.

        With sigmas s_0 .. s_n (s_n = 0: the last step is the final denoise, not counted), step i
        has k = (n - 1 - i) (or n - i when s_n > 0) solver steps left including itself; cap = k.
        """
        n = sched.n
        if mode == "false" or (mode == "auto" and n >= LOWER_ORDER_FINAL_BELOW):
            return 3
        left = n - i - (1 if sched.sig[-1] == 0 else 0)
        return max(1, left)

    @classmethod
    def _update(cls, ctx: StepContext, data: bool, a_x: float, coef: list[float], pts: list[tuple],
                deriv: str, z_term: tuple | None) -> torch.Tensor:
        """a_x x + coef_0 f_0 + sum_k coef_k g_k (+ noise), f = D (data) or eps = (x - alpha D)/sigma (noise)."""
        w_rows = derivative_weights([p[0] for p in pts[1:]], deriv)
        u = [0.0] * len(pts)
        u[0] = coef[0]
        for k, row in enumerate(w_rows, start=1):
            for j, w in enumerate(row):
                u[j] += coef[k] * w
        x0 = pts[0][1]
        if data:
            terms = [(a_x, x0)] + [(u[j], p[2]) for j, p in enumerate(pts)]
        else:
            terms = [(a_x + u[0] / pts[0][3], x0), (-u[0] * ctx.alpha(pts[0][3]) / pts[0][3], pts[0][2])]
            for j, p in enumerate(pts[1:], start=1):
                terms += [(u[j] / p[3], p[1]), (-u[j] * ctx.alpha(p[3]) / p[3], p[2])]
        if z_term is not None:
            terms.append((z_term[0], z_term[1]))
        return lincomb(*terms)
