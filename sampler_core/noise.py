"""Noise sources for stochastic steps: one per kind and run, seeded once (no re-seeding at segment boundaries).

* ``gaussian``: i.i.d. N(0, I) draws from one seeded ``torch.Generator`` on the latent's device,
  consumed in step order (what k-diffusion's ``default_noise_sampler`` does for ancestral samplers).
* ``brownian``: increments of one Brownian tree over [min positive sigma, max sigma]
  (``torchsde.BrownianTree``, as k-diffusion's ``BrownianTreeNoiseSampler``); the draw for an
  interval depends only on the seed and the interval, never on what was queried before, so a
  segment of a plan sees exactly the noise a one-segment run sees on the same steps.

A noise sampler is ``sampler(sigma, sigma_next) -> Tensor`` (unit variance, the latent's shape).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

NoiseSampler = Callable[[float, float], torch.Tensor]
NoiseFactory = Callable[[str, torch.Tensor, torch.Tensor, "int | None"], NoiseSampler]
NOISE_KINDS = ("gaussian", "brownian")


class GaussianNoise:
    """Seeded i.i.d. Gaussian draws on ``x``'s device (seed + ``cpu_seed_offset`` when on the CPU)."""

    def __init__(self, x: torch.Tensor, seed: int | None = None, cpu_seed_offset: int = 0) -> None:
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device
        self.generator = None
        if seed is not None:
            if x.device.type == "cpu":
                seed = seed + cpu_seed_offset
            self.generator = torch.Generator(device=x.device)
            self.generator.manual_seed(int(seed))

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        return torch.randn(self.shape, dtype=self.dtype, device=self.device, generator=self.generator)


class BrownianNoise:
    """Normalised increments (W(s') - W(s)) / sqrt|s' - s| of one Brownian tree kept on the CPU.

    The tree spans [sigma_min, sigma_max] with time running upwards (as k-diffusion's
    ``BatchedBrownianTree``), so a step from sigma down to sigma' returns
    -(W(sigma) - W(sigma')) / sqrt(sigma - sigma').
    """

    def __init__(self, x: torch.Tensor, sigma_min: float, sigma_max: float, seed: int | None = None) -> None:
        import torchsde

        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, ()).item())
        self.device, self.dtype = x.device, x.dtype
        t0 = torch.tensor(float(sigma_min), dtype=torch.float32)
        t1 = torch.tensor(float(sigma_max), dtype=torch.float32)
        w0 = torch.zeros(x.shape, dtype=x.dtype)
        self.tree = torchsde.BrownianTree(t0, w0, t1, entropy=int(seed))

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        lo, hi, sign = (sigma_next, sigma, -1.0) if sigma_next < sigma else (sigma, sigma_next, 1.0)
        t_lo = torch.tensor(float(lo), dtype=torch.float32)
        t_hi = torch.tensor(float(hi), dtype=torch.float32)
        if not float(t_hi) > float(t_lo):
            raise _too_small(sigma, sigma_next)
        with warnings.catch_warnings():
            # torchsde rounds the tree's ends to its tolerance and warns when a float32 end lies just outside
            warnings.simplefilter("ignore", UserWarning)
            try:
                w = self.tree(t_lo, t_hi)
            except RecursionError:  # torchsde's interval search on an interval below its tolerance
                raise _too_small(sigma, sigma_next) from None
        scale = sign / math.sqrt(abs(float(t_hi) - float(t_lo)))
        return (w * scale).to(self.device, non_blocking=True)


def _too_small(sigma: float, sigma_next: float) -> ValueError:
    return ValueError(
        f"the Brownian noise of the step from sigma {sigma:.8g} to {sigma_next:.8g} cannot be drawn: the step is "
        "below the noise tree's resolution (float32); use a schedule without so small a step for the SDE "
        "methods that use it (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde, usf eta > 0)")


def sigma_range(sigmas: torch.Tensor) -> tuple[float, float]:
    """(smallest positive sigma, largest sigma) of a schedule, the Brownian tree's span."""
    vals = [float(v) for v in sigmas.detach().cpu().tolist()]
    pos = [v for v in vals if v > 0]
    return (min(pos) if pos else 0.0), max(vals)


def default_noise_factory(cpu_seed_offset: int = 1) -> NoiseFactory:
    """Our own noise samplers; ``cpu_seed_offset`` is added to the Gaussian seed on the CPU.

    (ComfyUI 0.9.2's ``default_noise_sampler`` adds 1 on the CPU, 0.3.75 adds nothing.)
    """

    def factory(kind: str, x: torch.Tensor, sigmas: torch.Tensor, seed: int | None) -> NoiseSampler:
        if kind == "brownian":
            lo, hi = sigma_range(sigmas)
            return BrownianNoise(x, lo, hi, seed)
        if kind == "gaussian":
            return GaussianNoise(x, seed, cpu_seed_offset)
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")

    return factory
