"""UniPC with the B(h) = h (bh1) and B(h) = e^h - 1 (bh2) variants (Zhao et al., arXiv 2302.04867).

Data prediction in t = -log sigma (as ComfyUI's ``sample_unipc`` on every model). Each step is the
UniP predictor from the history of evaluations; the UniC corrector is applied when the next
step evaluates the model (no extra evaluation): the corrected x replaces the predicted one, the
evaluation at the predicted point is kept. Orders follow ComfyUI: order = min(3, steps - 1),
lower order while the history builds up and on the last two steps; no corrector after the last step.
ComfyUI stops the last step to sigma 0 at sigma 0.001 instead (``Compat.unipc_final_sigma``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..registry import OptionSpec, StepMethod, register
from ._base import Entry, StepContext, lincomb

_F32 = torch.float32
_F64 = torch.float64


def _vp32(ctx: StepContext, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lambda, alpha, std, c_in) of VE sigma seen as a VP process, in float32 as ComfyUI's ``SigmaConvert``.

    log alpha = 1/2 log(1/(sigma^2 + 1)), std = sqrt(1 - alpha^2), lambda = log alpha - log std,
    c_in = sqrt(sigma^2 + 1). ComfyUI's UniPC runs on these float32 values (whose rounding is large
    at small sigma); computing them the same way keeps the named method within float32 noise of it.
    """
    key = ("vp32", sigma)
    hit = ctx.cache.get(key)
    if hit is None:
        t = torch.tensor(sigma, dtype=_F32)
        lmc = 0.5 * torch.log(1 / ((t * t) + 1))
        one_m = 1.0 - torch.exp(2.0 * lmc)
        hit = ctx.cache[key] = (lmc - 0.5 * torch.log(one_m), torch.exp(lmc), torch.sqrt(one_m), (t**2 + 1.0) ** 0.5)
    return hit


def _vp64(ctx: StepContext, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same quantities exactly, in float64: lambda = -log sigma, alpha = 1/sqrt(1 + sigma^2),
    std = sigma alpha, c_in = sqrt(1 + sigma^2). Used where the float32 values break down (below)."""
    t = torch.tensor(sigma, dtype=_F64)
    c_in = torch.sqrt(1.0 + t * t)
    return -torch.log(t), 1.0 / c_in, t / c_in, c_in


def _bh_weights(rks: list[torch.Tensor], hh: torch.Tensor, variant: str, p: int,
                predictor: bool) -> tuple[torch.Tensor, list[float]]:
    """(B(h), rho) of UniP (predictor, size p-1) or UniC (corrector, size p): R rho = b, b_k = h phi_(k+1) k!/B(h).

    In the dtype of ``hh`` (float32 like ComfyUI's ``multistep_uni_pc_bh_update``); R_kj = r_j^k, r = (rks, 1).
    """
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    h_phi_k = torch.expm1(hh) / hh - 1
    fact = 1
    b = []
    for k in range(1, p + 1):
        b.append(h_phi_k * fact / b_h)
        fact *= k + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    r_all = torch.stack([*rks, torch.tensor(1.0, dtype=hh.dtype)])
    mat = torch.stack([torch.pow(r_all, k) for k in range(p)])
    bvec = torch.stack(b)
    if predictor:
        if p == 1:
            return b_h, []
        if p == 2:
            return b_h, [0.5]
        return b_h, torch.linalg.solve(mat[:-1, :-1], bvec[:-1]).tolist()
    if p == 1:
        return b_h, [0.5]
    return b_h, torch.linalg.solve(mat, bvec).tolist()


class _UniPCBase(StepMethod):
    order = 3
    history = 2
    variant = "bh1"
    own_final_step = True  # ComfyUI's last step: a predictor step from the corrected x
    options = (OptionSpec("order", int, 3, "maximum order (ComfyUI: 3)", min=1, max=3),)

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: torch.Tensor, denoised: torch.Tensor, opts: dict[str, Any]):
        n = ctx.n
        s = ctx.sig[i]
        s1 = ctx.sig[i + 1]
        final = s1 == 0
        if final:
            # ComfyUI's last step ends at its stand-in for 0 (from below it too: a small step back up). At that
            # very sigma (h = 0, where ComfyUI divides by zero) Euler to 0 from the corrected x instead:
            # x - s eps with the eps of this step's evaluation (made at the predicted point ``ctx.x_eval``).
            if abs(math.log(s / ctx.compat.unipc_final_sigma)) < 1e-6:
                return denoised + (x - ctx.x_eval)
            s1 = ctx.compat.unipc_final_sigma
        hist = ctx.history
        p = max(1, min(opts["order"], n - 1, len(hist) + 1, n - i))
        prev = [hist[-k] for k in range(1, p)]  # newest first
        co = cls._coefficients(ctx, s, s1, [e.sigma for e in prev], p, final, i + 1 < n, exact=False)
        if co is None:  # ComfyUI's float32 noise levels break down here: the exact ones in float64
            co = cls._coefficients(ctx, s, s1, [e.sigma for e in prev], p, final, i + 1 < n, exact=True)
        if co is None:
            raise ValueError(f"uni_pc cannot step from sigma {s:.6g} to {ctx.sig[i + 1]:.6g}: the sigmas of this "
                             "step and the previous ones are too close to tell apart; use another scheduler or "
                             "another method on this step")
        a_x, a_d, h_phi_1, b_h_f, rk_f, rho_p, corrector = co
        # x_t = a_x x - a_d (h_phi_1 D + B(h) sum_k rho_k (D_k - D)/r_k)
        w_d = -a_d * h_phi_1
        terms = []
        for rho, r, e in zip(rho_p, rk_f, prev, strict=False):
            c = -a_d * b_h_f * rho / r
            terms.append((c, e.denoised))
            w_d -= c
        x_new = lincomb((a_x, x), (w_d, denoised), *terms)
        if final and ctx.kind == "flow":
            x_new.mul_(1.0 / (1.0 - s1))
        if corrector is not None:
            b_h_c, rho_c = corrector
            ctx.pending = cls._corrector(x, denoised, prev, rk_f, b_h_c, rho_c, a_x, a_d, h_phi_1)
        return x_new

    @classmethod
    def _coefficients(cls, ctx: StepContext, s: float, s1: float, prev: list[float], p: int, final: bool,
                      corrector: bool, exact: bool) -> tuple | None:
        """(a_x, a_d, h_phi_1, B(h), r_k, predictor rho, (B(h), corrector rho) or None) as floats, from ComfyUI's
        float32 noise levels (``exact=False``, for parity with its ``uni_pc``) or from the exact float64 ones; None
        when they are unusable: not finite, h = 0 or of the wrong sign, an r_k of 0 (sigmas too close for float32:
        on Flux-like models sigma < 3e-3 often maps two sigmas to one lambda, below 2.4e-4 to infinity)."""
        vp = _vp64 if exact else _vp32
        lam_s, _, std_s, cin_s = vp(ctx, s)
        lam_t, alpha_t, std_t, cin_t = vp(ctx, s1)
        h = lam_t - lam_s
        hf = float(h)
        if not math.isfinite(hf) or hf == 0.0 or (hf > 0) != (s1 < s):
            return None
        hh = -h
        rks = [(vp(ctx, sg)[0] - lam_s) / h for sg in prev]
        rk_f = [float(r) for r in rks]
        if not all(math.isfinite(r) and r != 0.0 for r in rk_f):
            return None
        # ComfyUI keeps x in VP form x / c_in; back to VE with c_in(s1) (or 1/alpha at the final sigma)
        out_scale = float(1.0 / alpha_t) if final else float(cin_t)
        a_x = out_scale * float(std_t / std_s) / float(cin_s)
        a_d = out_scale * float(alpha_t)
        h_phi_1 = float(torch.expm1(hh))
        try:
            b_h, rho_p = _bh_weights(rks, hh, cls.variant, p, predictor=True)
            corr = None
            if corrector:
                b_h_c, rho_c = _bh_weights(rks, hh, cls.variant, p, predictor=False)
                corr = (float(b_h_c), [float(r) for r in rho_c])
        except RuntimeError:  # a singular system (torch.linalg's error is a RuntimeError)
            return None
        values = [a_x, a_d, h_phi_1, float(b_h), *rho_p, *(corr[1] + [corr[0]] if corr else [])]
        if not all(math.isfinite(v) for v in values):
            return None
        return a_x, a_d, h_phi_1, float(b_h), rk_f, [float(r) for r in rho_p], corr

    @staticmethod
    def _corrector(x: torch.Tensor, denoised: torch.Tensor, prev: list[Entry], rks: list[float], b_h: float,
                   rho_c: list[float], a_x: float, a_d: float, h_phi_1: float):
        def correct(d_next: torch.Tensor) -> torch.Tensor:
            # x_t = a_x x - a_d (h_phi_1 D + B(h) (sum_k rho_k (D_k - D)/r_k + rho_last (D_next - D)))
            w_d = -a_d * h_phi_1
            terms = []
            for rho, r, e in zip(rho_c[:-1], rks, prev, strict=True):
                c = -a_d * b_h * rho / r
                terms.append((c, e.denoised))
                w_d -= c
            c = -a_d * b_h * rho_c[-1]
            w_d -= c
            return lincomb((a_x, x), (w_d, denoised), (c, d_next), *terms)

        return correct


@register
class UniPC(_UniPCBase):
    name = "uni_pc"
    description = "UniPC predictor-corrector, B(h) = h (bh1), corrector free of extra evaluations"
    variant = "bh1"


@register
class UniPCBH2(_UniPCBase):
    name = "uni_pc_bh2"
    description = "UniPC predictor-corrector, B(h) = e^h - 1 (bh2)"
    variant = "bh2"
