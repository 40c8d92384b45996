"""Analytic Gaussian-mixture "model" with an exact denoiser.

Data: x0 ~ sum_k pi_k N(mu_k, s_k^2 I) in D dimensions (the latent's C*H*W values).
Noising in the general form x = a x0 + b eps (VE / k-diffusion: a = 1, b = sigma;
rectified flow / ComfyUI CONST: a = 1 - s, b = s). Per component,
x ~ N(a mu_k, (a^2 s_k^2 + b^2) I), so the exact denoiser (posterior mean) is

    E[x0 | x] = sum_k w_k(x) (mu_k + a s_k^2 / (a^2 s_k^2 + b^2) (x - a mu_k)),
    w_k(x) = softmax_k(log pi_k - |x - a mu_k|^2 / (2 v_k) - D/2 log v_k),  v_k = a^2 s_k^2 + b^2.

Evaluated in the (a, b) form it stays finite at s = 1 (flow) and sigma -> infinity.
The means are smooth, seeded patterns defined on normalised coordinates, so a mixture
exists for every latent shape and the same seed gives "the same picture" at any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GaussianMixture:
    """x0 ~ sum_k weights[k] N(means[k], stds[k]^2 I); ``means`` is [K, *shape]."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    @property
    def dim(self) -> int:
        return int(self.means[0].numel())

    @classmethod
    def for_latent(cls, shape: tuple[int, ...], n_components: int = 6, seed: int = 0,
                   dtype: torch.dtype = torch.float64) -> GaussianMixture:
        """Seeded mixture for latents of ``shape`` = (C, H, W): smooth sinusoidal means, data std ~ 1."""
        c, h, w = shape
        g = torch.Generator().manual_seed(seed)
        u = (torch.arange(h, dtype=dtype) + 0.5) / h
        v = (torch.arange(w, dtype=dtype) + 0.5) / w
        fu = torch.randint(1, 4, (n_components, c), generator=g).to(dtype)
        fv = torch.randint(1, 4, (n_components, c), generator=g).to(dtype)
        phase = torch.rand(n_components, c, generator=g, dtype=dtype) * 2 * math.pi
        amp = 0.6 + 0.6 * torch.rand(n_components, c, generator=g, dtype=dtype)
        offset = 0.4 * torch.randn(n_components, c, generator=g, dtype=dtype)
        arg = (2 * math.pi * (fu[..., None, None] * u[:, None] + fv[..., None, None] * v[None, :])
               + phase[..., None, None])
        means = offset[..., None, None] + amp[..., None, None] * torch.sin(arg)
        stds = 0.15 + 0.35 * torch.rand(n_components, generator=g, dtype=dtype)
        weights = torch.rand(n_components, generator=g, dtype=dtype) + 0.5
        return cls(means, stds, weights / weights.sum())

    def to(self, device=None, dtype=None) -> GaussianMixture:
        m, s, w = (t.to(device, dtype) for t in (self.means, self.stds, self.weights))
        return GaussianMixture(m, s, w)

    def mean(self) -> torch.Tensor:
        """Mixture mean sum_k pi_k mu_k (the denoiser's limit as the noise grows)."""
        return torch.einsum("k,k...->...", self.weights, self.means)

    def denoise_ab(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Exact E[x0 | a x0 + b eps = x]; ``a``, ``b`` broadcast per batch item ([B] or scalar)."""
        out_dtype = x.dtype
        mu = self.means.to(x.device, torch.float64)
        s2 = (self.stds.to(x.device, torch.float64) ** 2)[None, :]
        logpi = torch.log(self.weights.to(x.device, torch.float64))[None, :]
        xb = x.to(torch.float64).reshape(x.shape[0], -1)
        a = torch.as_tensor(a, dtype=torch.float64, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)
        b = torch.as_tensor(b, dtype=torch.float64, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)
        mu = mu.reshape(mu.shape[0], -1)
        var = a**2 * s2 + b**2  # [B, K]
        # |x - a mu_k|^2 = |x|^2 - 2 a <x, mu_k> + a^2 |mu_k|^2
        d2 = (xb**2).sum(1, keepdim=True) - 2 * a * (xb @ mu.T) + a**2 * (mu**2).sum(1)[None, :]
        logits = logpi - 0.5 * d2 / var - 0.5 * xb.shape[1] * torch.log(var)
        w = torch.softmax(logits, dim=1)  # [B, K]
        gain = a * s2 / var  # [B, K]
        # sum_k w_k (mu_k (1 - a gain_k) + gain_k x)
        out = (w * (1 - a * gain)) @ mu + (w * gain).sum(1, keepdim=True) * xb
        return out.reshape(x.shape).to(out_dtype)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """VE / k-diffusion form: x = x0 + sigma eps."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float64)
        return self.denoise_ab(x, torch.ones_like(sigma), sigma)

    def denoise_flow(self, x: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
        """Rectified-flow form (ComfyUI CONST): x = (1 - s) x0 + s eps, s in [0, 1]."""
        s = torch.as_tensor(s, device=x.device, dtype=torch.float64)
        return self.denoise_ab(x, 1 - s, s)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact draws of x0 (on the mixture's device, float64)."""
        k = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator).to(self.means.device)
        z = torch.randn((n, *self.shape), generator=generator, dtype=self.means.dtype).to(self.means.device)
        return self.means[k] + self.stds[k].reshape(-1, *([1] * len(self.shape))) * z


def for_latent_cached(shape: tuple[int, ...], seed: int = 0, n_components: int = 6) -> GaussianMixture:
    """Memoised :meth:`GaussianMixture.for_latent` (the node layer calls it per model call)."""
    key = (tuple(int(s) for s in shape), int(seed), int(n_components))
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = GaussianMixture.for_latent(key[0], n_components=key[2], seed=key[1])
    return hit


_CACHE: dict[tuple, GaussianMixture] = {}
