"""First-order steps: Euler, DDIM, Euler ancestral (k-diffusion, Karras et al. 2022, arXiv 2206.00364) and LCM
(latent consistency models, Luo et al. 2023, arXiv 2310.04378)."""

from __future__ import annotations

from typing import Any

import torch

from ..registry import ETA, S_NOISE, StepMethod, register
from ._base import StepContext, lincomb
from ._f32 import ancestral_step32, ancestral_step_flow32


def euler_to(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_to: float) -> torch.Tensor:
    """x + (sigma_to - sigma) (x - D) / sigma, written as lerp(x, D, 1 - sigma_to / sigma) (one kernel)."""
    return torch.lerp(x, denoised, 1.0 - sigma_to / sigma)


@register
class Euler(StepMethod):
    name = "euler"
    description = "Euler step of the probability-flow ODE dx/dsigma = (x - D)/sigma"
    order = 1

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        return euler_to(x, denoised, ctx.sig[i], ctx.sig[i + 1])


@register
class DDIM(Euler):
    name = "ddim"
    description = "DDIM (deterministic) = the Euler step in k-diffusion space (ComfyUI's ddim)"


@register
class EulerAncestral(StepMethod):
    name = "euler_ancestral"
    description = "Euler step to sigma_down, then fresh noise sigma_up (flow models: ComfyUI's RF form)"
    order = 1
    stochastic = True
    options = (ETA, S_NOISE)
    noise_kind = "gaussian"

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        eta, s_noise = opts["eta"], opts["s_noise"]
        if ctx.kind == "flow":
            if s1 == 0:
                return denoised
            down, renoise, scale = ancestral_step_flow32(s, s1, eta)
            ctx.down = down
            x = euler_to(x, denoised, s, down)
            if eta > 0:
                # ComfyUI's RF step draws whenever eta > 0 (keep the stream aligned even if s_noise = 0)
                z = ctx.noise(cls.noise_kind, s, s1)
                x = x.mul_(scale).add_(z, alpha=s_noise * renoise)
            return x
        down, up = ancestral_step32(s, s1, eta)
        ctx.down = down
        if down == 0:
            return denoised
        x = euler_to(x, denoised, s, down)
        if up > 0:
            x.add_(ctx.noise(cls.noise_kind, s, s1), alpha=s_noise * up)
        return x


@register
class LCM(StepMethod):
    name = "lcm"
    description = ("latent consistency sampling (ComfyUI sample_lcm): x' = D noised to sigma' with fresh noise, "
                   "x' = D + sigma' z (flow: (1 - sigma') D + sigma' z); for LCM / Lightning / Hyper models")
    order = 1
    noise_kind = "gaussian"  # always draws (no eta / s_noise options, as ComfyUI's lcm: not ``stochastic``)

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if s1 == 0:
            return denoised
        z = ctx.noise(cls.noise_kind, s, s1)
        keep = 1.0 - s1 if ctx.kind == "flow" else 1.0
        return lincomb((keep, denoised), (s1, z))
