"""Sample-quality metrics of the solver benchmark (pure torch / numpy / scipy).

* :func:`rmse`: root mean square difference to a reference solution from the same noise.
* :func:`sliced_w2_to_gmm`: sliced Wasserstein-2 distance between a sample set and the EXACT
  Gaussian mixture (no second sample set): along a unit direction theta the mixture projects to the
  1-d mixture sum_k pi_k N(theta . mu_k, s_k^2), whose quantile function is found by bisection, and
  W2^2 along theta = (1/n) sum_i (y_(i) - F^-1((i + 1/2) / n))^2 (sorted projections y_(i)).
  SW2 = sqrt(mean over directions of W2^2) (Bonneel et al. 2015, "Sliced and Radon Wasserstein
  Barycenters"). Its finite-sample floor is the same quantity for n exact draws.
* :func:`frechet_distance`: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussian fits
  (Heusel et al. 2017, the FID formula), here on raw 64-d digit pixels, not on network features.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """sqrt(mean((x - ref)^2)) over every element."""
    return float(((x.double() - ref.double()) ** 2).mean().sqrt())


def directions(dim: int, n: int = 128, seed: int = 1234) -> torch.Tensor:
    """``n`` fixed random unit vectors in R^dim (float64, rows)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def _mixture_quantiles(u: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor,
                       iters: int = 64) -> torch.Tensor:
    """Quantiles of 1-d mixtures: ``u`` [n], ``means`` [L, K], ``stds`` [K], ``weights`` [K] -> [n, L]."""
    lo = (means.min(dim=1).values - 10 * stds.max()).expand(u.shape[0], -1).clone()
    hi = (means.max(dim=1).values + 10 * stds.max()).expand(u.shape[0], -1).clone()
    target = u[:, None]
    inv = 1.0 / (stds * math.sqrt(2.0))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = (weights * 0.5 * (1 + torch.erf((mid[..., None] - means[None]) * inv))).sum(-1)
        below = cdf < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


class GMMSlicedW2:
    """Sliced W2 between sample sets and one exact Gaussian mixture, on fixed directions.

    ``means`` [K, *shape], ``stds`` [K], ``weights`` [K] (an isotropic mixture, as ``GaussianMixture``).
    Quantiles are cached per sample count n.
    """

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor, n_dirs: int = 128,
                 seed: int = 1234) -> None:
        mu = means.double().cpu().reshape(means.shape[0], -1)
        self.dirs = directions(mu.shape[1], n_dirs, seed)  # [L, D]
        self.proj_means = self.dirs @ mu.T  # [L, K]
        self.stds = stds.double().cpu()
        self.weights = (weights / weights.sum()).double().cpu()
        self._q: dict[int, torch.Tensor] = {}

    def quantiles(self, n: int) -> torch.Tensor:
        if n not in self._q:
            u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
            self._q[n] = _mixture_quantiles(u, self.proj_means, self.stds, self.weights)
        return self._q[n]

    def __call__(self, x: torch.Tensor) -> float:
        """SW2 of the rows of ``x`` (flattened) to the mixture."""
        y = x.double().cpu().reshape(x.shape[0], -1) @ self.dirs.T  # [n, L]
        y = torch.sort(y, dim=0).values
        w2sq = ((y - self.quantiles(x.shape[0])) ** 2).mean(dim=0)
        return float(w2sq.mean().sqrt())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of the rows of ``a`` and ``b`` (float64)."""
    from scipy import linalg

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise both (as the FID code does)
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def digits_data() -> np.ndarray:
    """The 1797 scikit-learn digits as 64-d pixel rows in [-1, 1] (float64)."""
    from sampler_core.models.train_digits import digits_pixels

    return digits_pixels().reshape(-1, 64).double().numpy()


def digits_floor(data: np.ndarray, n: int, repeats: int, seed: int = 0) -> list[float]:
    """FD of ``n`` random data digits (no replacement) to all of ``data``, ``repeats`` times: the metric's floor."""
    rng = np.random.default_rng(seed)
    n = min(n, len(data))
    return [frechet_distance(data[rng.choice(len(data), n, replace=False)], data) for _ in range(repeats)]


def digits_fd(latent: torch.Tensor, data: np.ndarray) -> float:
    """Frechet distance in pixel space between decoded digits latents [B, 4, H, W] and ``data``."""
    from sampler_core.models.digits import latent_to_pixels

    px = latent_to_pixels(latent.float()).reshape(latent.shape[0], -1).double().numpy()
    return frechet_distance(px, data)


def sample_distance(x: torch.Tensor, kind: str, data: np.ndarray | None, sw: GMMSlicedW2 | None) -> float:
    """The benchmarks' distance to the target: FD to the digits ``data`` (digits), else sliced W2 ``sw`` to the
    exact mixture; NaN when the samples are not finite."""
    if not torch.isfinite(x).all():
        return float("nan")
    if kind == "digits":
        return digits_fd(x, data)
    return sw(x)
