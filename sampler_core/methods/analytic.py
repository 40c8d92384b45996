"""Analytical first step (AFS): the first step of a run without a model call.

At the top of the schedule x = x0 + sigma eps is almost pure noise, so the noise prediction is
eps ~ x / sigma and the data prediction D = x - sigma eps ~ 0 (zero-mean data; the error is of
order E[x0] + Var[x0] / sigma^2 * x). The step is DDIM with that estimate,

    x' = (sigma' / sigma) x        (every parameterisation: EPS/V/EDM in k-diffusion form, and flow),

and it saves one model evaluation, as the Unified Sampling Framework's analytical first step does
(Liu et al., arXiv 2312.07243, section 4; reference notes section 1). The estimate D = 0 is recorded
like an evaluation, so a multistep method on the next step may use it as its previous point.
``corrector=unic`` (default) repeats the step at second order once the next step's real evaluation
exists (the :mod:`usf` UniC corrector, no extra call), which removes most of the estimate's error;
``pred`` picks the expanded quantity of that correction (data or noise prediction). From a flow
model's s = 1 (lambda = -inf), where D(x, 1) = E[x0] whatever x is, the step is x' = s' x and the
corrector is the h -> inf limit of the second-order one: x' = s' x + (1 - s') D(x', s').
Only valid as the first step of a run with at least two steps (checked).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..registry import StepMethod, register
from ._base import StepContext, lincomb
from .usf import CORRECTOR, PRED, USF


@register
class AnalyticFirstStep(StepMethod):
    name = "afs"
    description = "analytical first step: D ~ 0 at the top of the schedule, x' = (sigma'/sigma) x; no model call"
    order = 1
    model_calls = 0
    history = 1  # the corrector's next step reads this step's (analytic) entry
    options = (PRED, CORRECTOR)
    first_step_only = True  # plans: the first line only, count 1 (sampler_core.plan checks it when parsing)

    @classmethod
    def check_position(cls, i: int, n: int) -> None:
        if i != 0:
            raise ValueError(f"step {i + 1}: afs (analytical first step) can only be the first step of a run")
        if n < 2:
            raise ValueError("afs (analytical first step) needs at least one step after it (a run of >= 2 steps)")

    @classmethod
    def calls(cls, sched, i: int, opts: dict[str, Any]) -> int:
        return 0

    @classmethod
    def start_denoised(cls, ctx: StepContext, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        s, s1 = ctx.sig[i], ctx.sig[i + 1]
        if not math.isfinite(ctx.lam(s)):  # flow s = 1
            if opts["corrector"] == "unic" and i + 1 < ctx.n:
                a_t, x_start = ctx.alpha(s1), x
                ctx.pending = lambda d_next: lincomb((s1 / s, x_start), (a_t, d_next))
            return x * (s1 / s)
        # the first-order usf step with D = 0 is x' = (sigma'/sigma) x in both predictions; usf adds the corrector
        usf = {**USF.defaults(), "order": 1, "pred": opts["pred"], "corrector": opts["corrector"],
               "lower_order_final": "false"}
        return USF.step(ctx, i, x, denoised, usf)
