"""KLUB estimator of Align Your Steps (Sabour et al., arXiv 2404.14507), with importance sampling of t.

For a schedule sigma_0 > ... > sigma_n (EDM / VE parameterisation, x_t = x0 + t z, sigma(t) = t), the
KL upper bound between the true reverse SDE and its discretisation is a sum over intervals
[t, t_up] = [sigma_{i+1}, sigma_i] of

    KLUB_i = int_{t_lo}^{t_up} t^-3 E || D(x_t, t) - D(x_up, t_up) ||^2 dt,
    x_t = x0 + t z,   x_up = x_t + sqrt(t_up^2 - t^2) z'   (so x_up = x0 + t_up * noise)

(sampled from the upper point down, same joint law: see :class:`KLUBSamples`).

The t-integral is estimated by importance sampling from the density of the Gaussian case
(reference notes, section 1):

    p(t) = q(t) / Z,   q(t) = t^-3 (1/(t^2 + c^2) - 1/(t_up^2 + c^2)),   c = 0.5 by default,

whose antiderivative is exact (with a = c^2, K = 1/(t_up^2 + a), e = a / t^2):

    G(t) = (log(1 + e) - e) / (2 a^2) + K / (2 t^2),   Z = G(t_up) - G(t_lo).

t is drawn by inverting the CDF (G(t) - G(t_lo)) / Z in float64 (a table in log t, then Newton steps;
G is increasing), from stratified uniforms. Each sample contributes
t^-3 ||D(x_t,t) - D(x_up,t_up)||^2 / p(t) = Z ||.||^2 / (1/(t^2+a) - K): for Gaussian data
N(0, c^2 I) the expectation of ||.||^2 is d c^4 (1/(t^2+c^2) - 1/(t_up^2+c^2)), so the closed-form
KLUB of that data is d c^4 Z (:func:`gaussian_klub`). ||.||^2 is the sum over all dimensions.

Denoisers take ``(x [B, ...], sigma [B])`` and return x0 in VE space. Flow-matching models
(x = (1 - s) x0 + s eps) are wrapped by :func:`flow_to_ve_denoiser`: sigma = s / (1 - s), x_VE = x / (1 - s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoiser(x [B, ...], sigma [B]) -> x0 [B, ...]`` in VE space (x = x0 + sigma * noise)."""

DataSource = torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]
"""A pool of data samples ``[P, ...]`` (drawn with replacement) or ``sample(n, generator) -> [n, ...]``."""

IS_C = 0.5  # c of the importance density (the paper's Gaussian proposal)
_GRID_POINTS = 257  # tabulated CDF of t per interval
_NEWTON_STEPS = 4


# ---------------------------------------------------------------------------------------------
# Flow <-> VE
# ---------------------------------------------------------------------------------------------

def flow_to_ve_sigma(s: torch.Tensor | float) -> torch.Tensor:
    """VE sigma of a flow time s: x / (1 - s) = x0 + (s / (1 - s)) eps, so sigma = s / (1 - s)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    return s / (1 - s)


def ve_to_flow_sigma(sigma: torch.Tensor | float) -> torch.Tensor:
    """Inverse of :func:`flow_to_ve_sigma`: s = sigma / (1 + sigma) (inf -> 1)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return torch.where(torch.isinf(sigma), torch.ones_like(sigma), sigma / (1 + sigma))


def flow_to_ve_denoiser(flow_denoiser: Denoiser) -> Denoiser:
    """Wrap ``flow_denoiser(x_flow, s) -> x0`` (x_flow = (1 - s) x0 + s eps) as a VE denoiser.

    x_VE = x0 + sigma eps with sigma = s / (1 - s) is x_flow / (1 - s), hence
    D_VE(x, sigma) = D_flow(x / (1 + sigma), sigma / (1 + sigma)).
    """

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        scale = (1.0 / (1.0 + sigma)).reshape(-1, *([1] * (x.ndim - 1)))
        return flow_denoiser(x * scale.to(x.dtype), sigma / (1.0 + sigma))

    return denoise


# ---------------------------------------------------------------------------------------------
# Importance density of t
# ---------------------------------------------------------------------------------------------

def _log1p_minus_x(e: torch.Tensor) -> torch.Tensor:
    """log(1 + e) - e without cancellation for small e (series below 1e-3)."""
    series = e * e * (-1 / 2 + e * (1 / 3 + e * (-1 / 4 + e * (1 / 5 - e / 6))))
    return torch.where(e < 1e-3, series, torch.log1p(e) - e)


def importance_antiderivative(t: torch.Tensor, t_up: torch.Tensor, c: float = IS_C) -> torch.Tensor:
    """G(t) = int t^-3 (1/(t^2 + c^2) - 1/(t_up^2 + c^2)) dt  (up to a constant; float64)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    t_up = torch.as_tensor(t_up, dtype=torch.float64)
    a = float(c) ** 2
    k = 1.0 / (t_up * t_up + a)
    return _log1p_minus_x(a / (t * t)) / (2 * a * a) + k / (2 * t * t)


def importance_normaliser(t_lo: torch.Tensor, t_up: torch.Tensor, c: float = IS_C) -> torch.Tensor:
    """Z = int_{t_lo}^{t_up} t^-3 (1/(t^2 + c^2) - 1/(t_up^2 + c^2)) dt (float64)."""
    return importance_antiderivative(t_up, t_up, c) - importance_antiderivative(t_lo, t_up, c)


def gaussian_klub(t_lo: torch.Tensor, t_up: torch.Tensor, c: float, dim: int) -> torch.Tensor:
    """Closed-form KLUB of data N(0, c^2 I_dim) with its exact denoiser: dim * c^4 * Z(t_lo, t_up; c)."""
    return dim * float(c) ** 4 * importance_normaliser(t_lo, t_up, c)


def sample_t(t_lo: torch.Tensor, t_up: torch.Tensor, u: torch.Tensor,
             c: float = IS_C) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw t in [t_lo, t_up] from p(t) by inverse CDF, for every interval and every uniform.

    ``t_lo``/``t_up`` are ``[M]``, ``u`` is ``[N]`` in [0, 1). Returns ``t`` ``[M, N]`` and the
    importance weight ``t^-3 / p(t) = Z / (1/(t^2 + c^2) - 1/(t_up^2 + c^2))`` ``[M, N]`` (float64, CPU).
    """
    t_lo = torch.as_tensor(t_lo, dtype=torch.float64).cpu().reshape(-1, 1)
    t_up = torch.as_tensor(t_up, dtype=torch.float64).cpu().reshape(-1, 1)
    u = torch.as_tensor(u, dtype=torch.float64).cpu().reshape(1, -1)
    if not bool(torch.all((t_lo > 0) & (t_up > t_lo) & torch.isfinite(t_up))):
        raise ValueError("KLUB intervals need 0 < t_lo < t_up < inf")
    a = float(c) ** 2
    k = 1.0 / (t_up * t_up + a)
    g_lo = importance_antiderivative(t_lo, t_up, c)
    z = importance_antiderivative(t_up, t_up, c) - g_lo
    target = g_lo + u * z  # [M, N]
    # Tabulate G on a grid in log t, interpolate the inverse, then polish with safeguarded Newton steps
    # (dG/dlog t = t^-2 (1/(t^2 + a) - K)), each kept inside its grid cell.
    frac = torch.linspace(0.0, 1.0, _GRID_POINTS, dtype=torch.float64).reshape(1, -1)
    grid = torch.log(t_lo) + frac * (torch.log(t_up) - torch.log(t_lo))  # [M, K]
    g_grid = torch.cummax(importance_antiderivative(torch.exp(grid), t_up, c), dim=1).values
    idx = torch.searchsorted(g_grid, target.contiguous()).clamp(1, _GRID_POINTS - 1)
    g0, g1 = g_grid.gather(1, idx - 1), g_grid.gather(1, idx)
    x0, x1 = grid.gather(1, idx - 1), grid.gather(1, idx)
    x = x0 + ((target - g0) / (g1 - g0).clamp(min=1e-300)).clamp(0.0, 1.0) * (x1 - x0)
    for _ in range(_NEWTON_STEPS):
        t = torch.exp(x)
        slope = ((t_up * t_up - t * t) * k / (t * t + a)) / (t * t)
        step = (importance_antiderivative(t, t_up, c) - target) / slope.clamp(min=1e-300)
        x = torch.minimum(torch.maximum(x - step, x0), x1)
    t = torch.exp(x)
    t = torch.minimum(torch.maximum(t, t_lo), t_up * (1 - 1e-12))
    # 1/(t^2+a) - 1/(t_up^2+a) written without cancellation
    density_factor = (t_up * t_up - t * t) / ((t * t + a) * (t_up * t_up + a))
    return t, z / density_factor


# ---------------------------------------------------------------------------------------------
# Monte-Carlo samples (common random numbers) and the estimator
# ---------------------------------------------------------------------------------------------

@dataclass
class KLUBSamples:
    """Fixed random numbers of KLUB evaluations: data x0, two noises, uniforms u for t.

    The pair (x_t, x_up) is built from the upper point down (same joint law as
    x_t = x0 + t z, x_up = x_t + sqrt(t_up^2 - t^2) z', by the Brownian bridge):

        x_up = x0 + t_up * noise,
        x_t  = x0 + (t / t_up)^2 * (t_up * noise) + t * sqrt(1 - (t / t_up)^2) * bridge,

    so D(x_up, t_up) does not depend on t and is computed once for all intervals that share t_up
    (all candidates of a point against its upper neighbour). Reusing one set for every candidate
    schedule (common random numbers) makes comparisons nearly noise-free and the objective deterministic.
    """

    x0: torch.Tensor  # [N, ...] float32, on the compute device
    noise: torch.Tensor  # [N, ...]
    bridge: torch.Tensor  # [N, ...]
    u: torch.Tensor  # [N] float64 on the CPU, in [0, 1)

    @property
    def n(self) -> int:
        return int(self.x0.shape[0])

    @classmethod
    def draw(cls, data: DataSource, n: int, generator: torch.Generator, device: torch.device | str | None = None,
             stratified: bool = True) -> KLUBSamples:
        """Draw ``n`` samples. Noise comes from ``generator`` (on its own device, then moved to ``device``,
        default: the data's device), so a CPU generator gives the same numbers on every device.
        ``stratified``: u_k = (k + U_k) / n (one t per stratum of the CDF; lower variance).
        """
        if n < 2:
            raise ValueError(f"need at least 2 KLUB samples, got {n}")
        gdev = generator.device
        if isinstance(data, torch.Tensor):
            if data.shape[0] < 1:
                raise ValueError("the data pool is empty")
            idx = torch.randint(0, data.shape[0], (n,), generator=generator, device=gdev)
            x0 = data[idx.to(data.device)]
        else:
            x0 = data(n, generator)
        device = torch.device(device) if device is not None else x0.device
        x0 = x0.to(device=device, dtype=torch.float32)
        noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=torch.float32).to(device)
        bridge = torch.randn(x0.shape, generator=generator, device=gdev, dtype=torch.float32).to(device)
        r = torch.rand(n, generator=generator, device=gdev, dtype=torch.float64).cpu()
        u = (torch.arange(n, dtype=torch.float64) + r) / n if stratified else r
        return cls(x0, noise, bridge, u)


@torch.no_grad()
def klub_terms(denoiser: Denoiser, t_lo: torch.Tensor, t_up: torch.Tensor, samples: KLUBSamples,
               c: float = IS_C, max_batch: int = 1024) -> torch.Tensor:
    """Per-sample importance-weighted terms ``[M, N]`` (float64, CPU) for M intervals [t_lo, t_up].

    Work items are "D(x_up) of one distinct t_up" and "D(x_t) of one interval", N samples each,
    ordered group by group (a group = the intervals sharing a t_up); they are streamed through the
    denoiser in calls of ``max_batch`` samples that span groups and intervals. Only the D(x_up)
    of groups still in progress are kept.
    """
    t_lo = torch.as_tensor(t_lo, dtype=torch.float64).reshape(-1).cpu()
    t_up = torch.as_tensor(t_up, dtype=torch.float64).reshape(-1).cpu()
    m, n = t_lo.numel(), samples.n
    t, weight = sample_t(t_lo, t_up, samples.u, c)  # [M, N]
    uniq, group_of = torch.unique(t_up, return_inverse=True)
    # Plan: entries of N items each: (group, -1) = upper point of the group, (group, i) = interval i.
    entries: list[tuple[int, int]] = []
    remaining: dict[int, int] = {}
    for g in range(uniq.numel()):
        members = torch.nonzero(group_of == g).reshape(-1).tolist()
        entries.append((g, -1))
        entries.extend((g, i) for i in members)
        remaining[g] = len(members)
    # Per-item coefficients: x = x0 + a * noise + b * bridge at sigma.
    a_rows, b_rows, s_rows = [], [], []
    for g, i in entries:
        if i < 0:
            up = uniq[g].expand(n)
            a_rows.append(up)
            b_rows.append(torch.zeros(n, dtype=torch.float64))
            s_rows.append(up)
        else:
            ti, up = t[i], t_up[i]
            a_rows.append(ti * ti / up)
            b_rows.append(ti * torch.sqrt(torch.clamp((up - ti) * (up + ti), min=0.0)) / up)
            s_rows.append(ti)
    device = samples.x0.device
    coef_a = torch.cat(a_rows).to(device=device, dtype=torch.float32)
    coef_b = torch.cat(b_rows).to(device=device, dtype=torch.float32)
    sigma = torch.cat(s_rows).to(device=device, dtype=torch.float32)
    sample_idx = torch.arange(n, device=device).repeat(len(entries))
    view = (-1,) + (1,) * (samples.x0.ndim - 1)
    sq = torch.empty(m, n, dtype=torch.float32, device=device)
    upper: dict[int, torch.Tensor] = {}
    total = len(entries) * n
    for start in range(0, total, max(1, max_batch)):
        stop = min(start + max(1, max_batch), total)
        idx = sample_idx[start:stop]
        x = (samples.x0[idx] + coef_a[start:stop].reshape(view) * samples.noise[idx]
             + coef_b[start:stop].reshape(view) * samples.bridge[idx])
        out = denoiser(x, sigma[start:stop]).to(torch.float32)
        # Walk the entries that this chunk covers (contiguous item ranges).
        pos = start
        while pos < stop:
            e, k0 = divmod(pos, n)
            k1 = min(n, k0 + (stop - pos))
            g, i = entries[e]
            part = out[pos - start: pos - start + (k1 - k0)]
            if i < 0:
                if k0 == 0:
                    upper[g] = torch.empty((n, *part.shape[1:]), dtype=torch.float32, device=device)
                upper[g][k0:k1] = part
            else:
                diff = part - upper[g][k0:k1]
                sq[i, k0:k1] = diff.square().reshape(k1 - k0, -1).sum(1)
                if k1 == n:
                    remaining[g] -= 1
                    if remaining[g] == 0:
                        del upper[g]
            pos += k1 - k0
    return sq.to(device="cpu", dtype=torch.float64) * weight


def klub_estimate(denoiser: Denoiser, t_lo: torch.Tensor, t_up: torch.Tensor, samples: KLUBSamples,
                  c: float = IS_C, max_batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """KLUB of each interval [t_lo[m], t_up[m]]: (mean ``[M]``, standard error ``[M]``), float64 CPU.

    The standard error is std / sqrt(N) of the per-sample terms (the i.i.d. formula; with
    stratified u it is a slight over-estimate).
    """
    terms = klub_terms(denoiser, t_lo, t_up, samples, c, max_batch)
    return terms.mean(1), terms.std(1) / terms.shape[1] ** 0.5


class KLUBObjective:
    """Per-interval KLUB on fixed samples, as the optimiser's objective: ``obj(t_lo [M], t_up [M]) -> [M]``.

    Counts denoiser evaluations in ``nfe`` (N per interval and per distinct t_up); ``last_stderr`` holds the
    standard errors of the latest call.
    """

    def __init__(self, denoiser: Denoiser, samples: KLUBSamples, c: float = IS_C, max_batch: int = 1024) -> None:
        self.denoiser = denoiser
        self.samples = samples
        self.c = c
        self.max_batch = max_batch
        self.nfe = 0
        self.last_stderr = torch.zeros(0, dtype=torch.float64)

    def __call__(self, t_lo: torch.Tensor, t_up: torch.Tensor) -> torch.Tensor:
        mean, stderr = klub_estimate(self.denoiser, t_lo, t_up, self.samples, self.c, self.max_batch)
        distinct_up = torch.unique(torch.as_tensor(t_up, dtype=torch.float64).reshape(-1)).numel()
        self.nfe += (mean.numel() + distinct_up) * self.samples.n
        self.last_stderr = stderr
        return mean
