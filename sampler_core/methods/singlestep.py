"""Two-evaluation single-step methods: Heun, DPM-Solver-2, their ancestral forms, DPM-Solver++(2S) and SDE.

Sources: Karras et al. 2022 (arXiv 2206.00364, Alg. 2), Lu et al. DPM-Solver (2206.00927) and
DPM-Solver++ (2211.01095), as implemented in k-diffusion / ComfyUI. On the last step to sigma 0
each takes a single Euler / denoising step (no wasted evaluation), as ComfyUI does.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import snr
from ..registry import ETA, S_NOISE, OptionSpec, StepMethod, register
from ._base import Schedule, StepContext, lincomb
from ._f32 import ancestral_step32, ancestral_step_flow32, lam32, sigma32
from .first_order import euler_to


def _dpm2_to(ctx: StepContext, x: torch.Tensor, denoised: torch.Tensor, s: float, s_to: float) -> torch.Tensor:
    """DPM-Solver-2 step in sigma: midpoint sigma_mid = sqrt(s s_to) (geometric), x + (s_to - s) d(x_mid)."""
    s_mid = math.exp(0.5 * (math.log(s) + math.log(s_to)))
    x2 = euler_to(x, denoised, s, s_mid)
    d2 = ctx.denoise(x2, s_mid)
    c = (s_to - s) / s_mid
    return lincomb((1.0, x), (c, x2), (-c, d2))


def flow_ancestral_split(name: str, s: float, s1: float, eta: float) -> tuple[float, float, float]:
    """:func:`ancestral_step_flow32` for the two-evaluation ancestral methods, which take logs of sigma_down:
    sigma_down = s1 (1 + (s1 / s - 1) eta) is below 0 when eta > 1 / (1 - s1 / s), so such an eta is an error
    (ComfyUI's own RF samplers return NaN there); eta <= 1 is always valid. At the boundary (sigma_down = 0, up to
    float32 rounding) the step denoises fully and renoises to s1: x' = (1 - s1) x0 + s1 z, the limit of the split."""
    down, renoise, scale = ancestral_step_flow32(s, s1, eta)
    if s1 > 0 and abs(down) <= 1e-6 * s1 * max(eta, 1.0):
        return 0.0, float(s1), float(1.0 - s1)
    if s1 > 0 and down < 0:
        limit = 1 / (1 - s1 / s)
        shown = math.floor(limit * 1e3) / 1e3 if limit < 1e3 else math.floor(limit)  # rounded down: a valid eta
        raise ValueError(f"{name}: eta={eta:.10g} is too large for the step from sigma {s:.4g} to {s1:.4g} of a flow "
                         f"model: it would step to sigma_down={down:.3g} < 0. Use eta <= {shown:g} there (eta <= 1 "
                         "is valid on every step).")
    return down, renoise, scale


@register
class Heun(StepMethod):
    name = "heun"
    description = "Heun's second-order method (Karras et al. 2022, Alg. 2 without churn)"
    order = 2
    model_calls = 2

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return euler_to(x, denoised, s, s1)
        x2 = euler_to(x, denoised, s, s1)
        d2 = ctx.denoise_at(x2, i + 1)
        # x + (s1 - s) (d + d2) / 2 with d = (x - D)/s, d2 = (x2 - D2)/s1
        a, b = 0.5 * (s1 - s) / s, 0.5 * (s1 - s) / s1
        return lincomb((1.0 + a, x), (-a, denoised), (b, x2), (-b, d2))


@register
class DPM2(StepMethod):
    name = "dpm_2"
    description = "DPM-Solver-2 in sigma with a geometric midpoint (k-diffusion sample_dpm_2)"
    order = 2
    model_calls = 2

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return euler_to(x, denoised, s, s1)
        return _dpm2_to(ctx, x, denoised, s, s1)


@register
class DPM2Ancestral(StepMethod):
    name = "dpm_2_ancestral"
    description = "DPM-Solver-2 to sigma_down, then fresh noise (flow models: ComfyUI's RF form)"
    order = 2
    model_calls = 2
    stochastic = True
    options = (ETA, S_NOISE)
    noise_kind = "gaussian"

    @staticmethod
    def _down(sched: Schedule, i: int, eta: float) -> tuple[float, float, float]:
        s, s1 = sched.sig[i], sched.sig[i + 1]
        if sched.kind == "flow":
            return flow_ancestral_split(DPM2Ancestral.name, s, s1, eta)
        down, up = ancestral_step32(s, s1, eta)
        return down, up, 1.0

    @classmethod
    def calls(cls, sched: Schedule, i: int, opts: dict[str, Any]) -> int:
        return 1 if cls._down(sched, i, opts["eta"])[0] == 0 else 2

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        down, up, scale = cls._down(ctx, i, opts["eta"])
        ctx.down = down
        if down == 0:
            x = euler_to(x, denoised, s, 0.0)
            if ctx.kind != "flow" or s1 == 0:  # eps: as ComfyUI, no fresh noise after a full denoising step
                return x
        else:
            x = _dpm2_to(ctx, x, denoised, s, down)
        if up > 0 and opts["eta"] > 0:  # eta 0: the ODE (float32 leaves a tiny renoise on flow models)
            z = ctx.noise(cls.noise_kind, s, s1)
            if scale != 1.0:
                x.mul_(scale)
            x.add_(z, alpha=opts["s_noise"] * up)
        return x


@register
class DPMpp2SAncestral(StepMethod):
    name = "dpmpp_2s_ancestral"
    description = "DPM-Solver++(2S) to sigma_down, then fresh noise (flow models: ComfyUI's RF form)"
    order = 2
    model_calls = 2
    stochastic = True
    options = (ETA, S_NOISE)
    noise_kind = "gaussian"

    @classmethod
    def calls(cls, sched: Schedule, i: int, opts: dict[str, Any]) -> int:
        s, s1 = sched.sig[i], sched.sig[i + 1]
        if sched.kind == "flow":
            return 1 if s1 == 0 or flow_ancestral_split(cls.name, s, s1, opts["eta"])[0] == 0 else 2
        return 1 if ancestral_step32(s, s1, opts["eta"])[0] == 0 else 2

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        eta, s_noise = opts["eta"], opts["s_noise"]
        if ctx.kind == "flow":
            down, renoise, scale = flow_ancestral_split(cls.name, s, s1, eta)
            ctx.down = down
            if s1 == 0:
                return euler_to(x, denoised, s, down)
            if down == 0:  # the boundary eta: denoise fully, then renoise to s1
                return lincomb((scale, denoised), (s_noise * renoise, ctx.noise(cls.noise_kind, s, s1)))
            if s == 1.0:
                s_mid = 0.9999  # ComfyUI's special case: lambda(1) = -inf
            else:
                lam_flow = lambda v: math.log((1.0 - v) / v) if v > 0 else math.inf  # noqa: E731
                t_i, t_down = lam_flow(s), lam_flow(down)
                s_mid = snr.sigma_of_lam(t_i + 0.5 * (t_down - t_i), "flow")
            u = euler_to(x, denoised, s, s_mid)
            d2 = ctx.denoise(u, s_mid)
            x = euler_to(x, d2, s, down)
            if eta > 0:
                z = ctx.noise(cls.noise_kind, s, s1)
                x.mul_(scale).add_(z, alpha=s_noise * renoise)
            return x
        down, up = ancestral_step32(s, s1, eta)
        ctx.down = down
        if down == 0:
            x = euler_to(x, denoised, s, 0.0)
        else:
            # DPM-Solver++(2S) in t = -log sigma, midpoint r = 1/2
            h = math.log(s) - math.log(down)
            s_mid = math.exp(-(-math.log(s) + 0.5 * h))
            x2 = torch.lerp(x, denoised, -math.expm1(-0.5 * h))
            d2 = ctx.denoise(x2, s_mid)
            x = torch.lerp(x, d2, -math.expm1(-h))
        if s1 > 0 and up > 0:
            x.add_(ctx.noise(cls.noise_kind, s, s1), alpha=s_noise * up)
        return x


@register
class DPMppSDE(StepMethod):
    name = "dpmpp_sde"
    description = "DPM-Solver++ (stochastic, single-step second order) in the model's half-log-SNR"
    order = 2
    model_calls = 2
    stochastic = True
    options = (ETA, S_NOISE, OptionSpec("r", float, 0.5, "relative position of the intermediate point", min=0.01,
                                        max=1.0))
    noise_kind = "brownian"
    snr_first_offset = True

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return denoised
        eta, s_noise, r = opts["eta"], opts["s_noise"], opts["r"]
        noisy = eta > 0 and s_noise > 0
        # scalars as ComfyUI computes them (float32 half-log-SNR; see _f32)
        lam_s, lam_t = lam32(s, ctx.kind), lam32(s1, ctx.kind)
        h = lam_t - lam_s
        lam_s1 = lam_s + r * h
        fac = 1.0 / (2.0 * r)
        s_s1 = sigma32(lam_s1, ctx.kind)
        a_s, a_s1, a_t = s * lam_s.exp(), s_s1 * lam_s1.exp(), s1 * lam_t.exp()
        # step 1: to lambda_s1 (ancestral split in e^-lambda)
        sd, su = ancestral_step32(lam_s.neg().exp(), lam_s1.neg().exp(), eta)
        h_ = -torch.tensor(sd, dtype=torch.float32).log() - lam_s
        x2 = lincomb((float(a_s1 / a_s * (-h_).exp()), x), (float(-a_s1 * (-h_).expm1()), denoised))
        s_s1 = float(s_s1)
        if noisy:
            x2.add_(ctx.noise(cls.noise_kind, s, s_s1), alpha=float(a_s1) * s_noise * su)
        d2 = ctx.denoise(x2, s_s1)
        # step 2: to lambda_t with D_d = (1 - fac) D + fac D2
        sd, su = ancestral_step32(lam_s.neg().exp(), lam_t.neg().exp(), eta)
        h_ = -torch.tensor(sd, dtype=torch.float32).log() - lam_s
        b = float(-a_t * (-h_).expm1())
        x = lincomb((float(a_t / a_s * (-h_).exp()), x), (b * (1.0 - fac), denoised), (b * fac, d2))
        if noisy:
            x.add_(ctx.noise(cls.noise_kind, s, s1), alpha=float(a_t) * s_noise * su)
        return x
