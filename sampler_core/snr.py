"""Half-log-SNR helpers (scalar, float64 Python math: computed once per step on the host).

A model's forward process in ComfyUI's k-diffusion space is ``x = alpha(s) x0 + s' eps`` with

* ``eps`` (EPS / V / EDM, variance exploding): alpha = 1, sigma = s, lambda = -log s;
* ``flow`` (ComfyUI CONST, rectified flow): x = (1 - s) x0 + s eps, alpha = 1 - s,
  lambda = log((1 - s) / s).

lambda = log(alpha / sigma) is the half-log-SNR used by exponential integrators
(DPM-Solver++, UniPC, the Unified Sampling Framework; arXiv 2211.01095, 2302.04867, 2312.07243).
"""

from __future__ import annotations

import math

KINDS = ("eps", "flow")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"model_kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def lam(sigma: float, kind: str) -> float:
    """Half-log-SNR lambda(sigma); +inf at sigma 0, -inf at sigma >= 1 on flow models."""
    if sigma <= 0.0:
        return math.inf
    if kind == "flow":
        if sigma >= 1.0:
            return -math.inf
        return math.log((1.0 - sigma) / sigma)
    return -math.log(sigma)


def sigma_of_lam(lmb: float, kind: str) -> float:
    """Inverse of :func:`lam`: e^-lambda (eps) or 1 / (1 + e^lambda) (flow)."""
    if kind == "flow":
        if lmb < 0:
            e = math.exp(lmb)
            return 1.0 / (1.0 + e)
        e = math.exp(-lmb)
        return e / (1.0 + e)
    return math.exp(-lmb)


def alpha(sigma: float, kind: str) -> float:
    """Signal scale alpha(sigma): 1 (eps) or 1 - sigma (flow)."""
    return 1.0 - sigma if kind == "flow" else 1.0


def neg_log(sigma: float) -> float:
    """-log(sigma), +inf at 0: the VE 'time' t(sigma) k-diffusion's DPM++ samplers use on every model."""
    return math.inf if sigma <= 0.0 else -math.log(sigma)


def phi(k: int, z: float) -> float:
    """phi_k(z) = int_0^1 e^((1-u) z) u^(k-1)/(k-1)! du (phi_0 = e^z); series near 0, recursion elsewhere.

    phi_1(z) = (e^z - 1)/z and phi_{k+1}(z) = (phi_k(z) - 1/k!)/z (exponential integrators, e.g.
    Hochbruck & Ostermann 2010). ``h^(k+1) phi_(k+1)(-h)`` is int_0^h e^(u-h) u^k/k! du.
    """
    if k == 0:
        return math.exp(z)
    if z == -math.inf:
        return 0.0  # phi_k(-inf) = 0 for k >= 1
    if abs(z) < 0.25:
        # sum_j z^j / (j + k)!
        term = 1.0 / math.factorial(k)
        total = term
        for j in range(1, 30):
            term *= z / (j + k)
            total += term
            if abs(term) < 1e-17 * abs(total):
                break
        return total
    val = math.expm1(z) / z
    for j in range(1, k):
        val = (val - 1.0 / math.factorial(j)) / z
    return val
