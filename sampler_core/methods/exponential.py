"""Multistep exponential integrators in data prediction: DPM-Solver++(2M), (2M) SDE, (3M) SDE.

Lu et al. DPM-Solver++ (arXiv 2211.01095) and the SDE variants of k-diffusion / ComfyUI.
dpmpp_2m works in t = -log sigma on every model (as ComfyUI); the SDE variants use the model's
true half-log-SNR (``snr.lam``). Each reuses the previous evaluations in ``ctx.history``, so a
segment that follows any other segment continues at full order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import snr
from ..registry import ETA, S_NOISE, OptionSpec, StepMethod, register
from ._base import StepContext, lincomb


@register
class DPMpp2M(StepMethod):
    name = "dpmpp_2m"
    description = "DPM-Solver++(2M): second-order multistep, first order on the first and last step"
    order = 2
    history = 1

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        b = 1.0 - s1 / s  # -expm1(-h) with h = log(s / s1)
        if not ctx.history or s1 == 0:
            return torch.lerp(x, denoised, b)
        prev = ctx.history[-1]
        h = snr.neg_log(s1) - snr.neg_log(s)
        h_last = snr.neg_log(s) - snr.neg_log(prev.sigma)
        k = 1.0 / (2.0 * (h_last / h))
        return lincomb((s1 / s, x), (b * (1.0 + k), denoised), (-b * k, prev.denoised))


SOLVER_TYPE = OptionSpec("solver_type", str, "midpoint", "second-order correction of the 2M SDE step",
                         choices=("midpoint", "heun"))


def _sde_base(ctx: StepContext, s: float, s1: float, eta: float) -> tuple[float, float, float, float]:
    """(h, h_eta, a_x, alpha_t): x' = a_x x + alpha_t (1 - e^-h_eta) D + ... in half-log-SNR lambda."""
    lam_s, lam_t = ctx.lam(s), ctx.lam(s1)
    h = lam_t - lam_s
    h_eta = h * (eta + 1.0)
    return h, h_eta, (s1 / s) * math.exp(-h * eta), ctx.alpha(s1)


def _sde_noise(ctx: StepContext, kind: str, x: torch.Tensor, s: float, s1: float, h: float, eta: float,
               s_noise: float) -> torch.Tensor:
    if eta > 0 and s_noise > 0:
        x.add_(ctx.noise(kind, s, s1), alpha=s1 * math.sqrt(-math.expm1(-2.0 * h * eta)) * s_noise)
    return x


@register
class DPMpp2MSDE(StepMethod):
    name = "dpmpp_2m_sde"
    description = "DPM-Solver++(2M) SDE (midpoint or heun correction), eta = 0 gives the ODE solver"
    order = 2
    history = 1
    stochastic = True
    options = (ETA, S_NOISE, SOLVER_TYPE)
    noise_kind = "brownian"
    snr_first_offset = True

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return denoised
        eta = opts["eta"]
        h, h_eta, a_x, a_t = _sde_base(ctx, s, s1, eta)
        b = -a_t * math.expm1(-h_eta)
        if ctx.history:
            prev = ctx.history[-1]
            inv_r = h / (ctx.lam(s) - ctx.lam(prev.sigma))
            if opts["solver_type"] == "heun":
                c = a_t * (-math.expm1(-h_eta) / (-h_eta) + 1.0) * inv_r
            else:
                c = 0.5 * b * inv_r
            x = lincomb((a_x, x), (b + c, denoised), (-c, prev.denoised))
        else:
            x = lincomb((a_x, x), (b, denoised))
        return _sde_noise(ctx, cls.noise_kind, x, s, s1, h, eta, opts["s_noise"])


@register
class DPMpp3MSDE(StepMethod):
    name = "dpmpp_3m_sde"
    # ComfyUI's sample_dpmpp_3m_sde formula, kept for parity: its second-derivative term has half the weight of the
    # exact third-order one, so measured on an exact denoiser the method converges at second order (usf order=3
    # is the third-order multistep)
    description = ("DPM-Solver++(3M) SDE as ComfyUI writes it (multistep over 3 points; second order in effect, see "
                   "usf order=3 for third)")
    order = 3
    history = 2
    stochastic = True
    options = (ETA, S_NOISE)
    noise_kind = "brownian"
    snr_first_offset = True

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return denoised
        eta = opts["eta"]
        h, h_eta, a_x, a_t = _sde_base(ctx, s, s1, eta)
        b = -a_t * math.expm1(-h_eta)
        hist = ctx.history
        phi_2 = math.expm1(-h_eta) / h_eta + 1.0
        if len(hist) >= 2:
            p1, p2 = hist[-1], hist[-2]
            lam_s, lam_1, lam_2 = ctx.lam(s), ctx.lam(p1.sigma), ctx.lam(p2.sigma)
            r0, r1 = (lam_s - lam_1) / h, (lam_1 - lam_2) / h
            phi_3 = phi_2 / h_eta - 0.5
            A, B = a_t * phi_2, a_t * phi_3
            # x += A d1 - B d2, d1 = d10 + (d10 - d11) r0/(r0+r1), d2 = (d10 - d11)/(r0+r1),
            # d10 = (D - D1)/r0, d11 = (D1 - D2)/r1
            c10 = A * (1.0 + r0 / (r0 + r1)) - B / (r0 + r1)
            c11 = -A * r0 / (r0 + r1) + B / (r0 + r1)
            x = lincomb((a_x, x), (b + c10 / r0, denoised), (-c10 / r0 + c11 / r1, p1.denoised),
                        (-c11 / r1, p2.denoised))
        elif len(hist) == 1:
            p1 = hist[-1]
            r = (ctx.lam(s) - ctx.lam(p1.sigma)) / h
            c = a_t * phi_2 / r
            x = lincomb((a_x, x), (b + c, denoised), (-c, p1.denoised))
        else:
            x = lincomb((a_x, x), (b, denoised))
        return _sde_noise(ctx, cls.noise_kind, x, s, s1, h, eta, opts["s_noise"])
