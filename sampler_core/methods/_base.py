"""Run state shared by the step methods: the schedule, the history of evaluations, model and noise access."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import snr
from ..noise import NoiseFactory, NoiseSampler


@dataclass
class Compat:
    """Version-dependent ComfyUI behaviour the node layer passes in (``sample_plan(**compat)``).

    gaussian_cpu_seed_offset: added to the seed of our own Gaussian noise when the latent is on
        the CPU (ComfyUI 0.9.2's ``default_noise_sampler`` adds 1, 0.3.75 adds 0). Unused when a
        ``noise_sampler_factory`` is given.
    flow_first_sigma: on flow models, the sigma a first step from sigma >= 1 starts at for the
        methods with ``snr_first_offset`` (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde): ComfyUI's
        ``model_sampling.percent_to_sigma(1e-4)``; None means 1 - 1e-4 (an unshifted flow).
    unipc_final_sigma: uni_pc's last step to sigma 0 stops here instead (ComfyUI: 0.001); on flow
        models the result is then divided by (1 - unipc_final_sigma), as ComfyUI's KSAMPLER does
        after uni_pc overwrote ``sigmas[-1]`` in place.
    noise_kind: "auto" (each method's own kind, as ComfyUI) or "brownian" / "gaussian" for every
        stochastic step of the plan.
    """

    gaussian_cpu_seed_offset: int = 1
    flow_first_sigma: float | None = None
    unipc_final_sigma: float = 0.001
    noise_kind: str = "auto"

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> Compat:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"sample_plan got unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        out = cls(**kwargs)
        if out.noise_kind not in ("auto", "brownian", "gaussian"):
            raise ValueError(f"noise_kind must be auto, brownian or gaussian, got {out.noise_kind!r}")
        return out


@dataclass
class Schedule:
    """What is known before sampling: sigma values (host floats), step count, model kind."""

    sig: list[float]
    kind: str
    compat: Compat = field(default_factory=Compat)

    @property
    def n(self) -> int:
        return len(self.sig) - 1

    def lam(self, sigma: float) -> float:
        return snr.lam(sigma, self.kind)

    def alpha(self, sigma: float) -> float:
        return snr.alpha(sigma, self.kind)

    def sigma_of_lam(self, lmb: float) -> float:
        return snr.sigma_of_lam(lmb, self.kind)


class Entry:
    """One earlier evaluation: ``denoised = D(x, sigma)`` at the start of a step, and where that step went."""

    __slots__ = ("sigma", "denoised", "x", "down", "_d")

    def __init__(self, sigma: float, denoised: torch.Tensor, x: torch.Tensor, down: float) -> None:
        self.sigma, self.denoised, self.x, self.down = sigma, denoised, x, down
        self._d: torch.Tensor | None = None

    @property
    def d(self) -> torch.Tensor:
        """k-diffusion derivative (x - D) / sigma (computed once, on first use)."""
        if self._d is None:
            self._d = (self.x - self.denoised).div_(self.sigma)
        return self._d


class StepContext(Schedule):
    """Schedule + run state handed to :meth:`StepMethod.step`."""

    def __init__(self, sched: Schedule, model: Callable, x: torch.Tensor, sigmas: torch.Tensor,
                 extra_args: dict, noise_factory: NoiseFactory, noise_sigmas: torch.Tensor) -> None:
        super().__init__(sched.sig, sched.kind, sched.compat)
        self.model = model
        self.extra_args = extra_args
        self.sigmas = sigmas  # device tensor (after compat adjustments), for callbacks
        self.s_in = x.new_ones([x.shape[0]])
        self.sig_b = sigmas.to(x.dtype)[:, None] * self.s_in[None, :]  # per-step model sigma rows
        self.wd = x.dtype
        self.nfe = 0
        self.history: list[Entry] = []
        self.pending: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.x_eval: torch.Tensor | None = None  # where this step's model call was made (before a corrector)
        self.down: float | None = None
        self.cache: dict[Any, Any] = {}
        self._noise_factory = noise_factory
        self._noise_sigmas = noise_sigmas
        self._noise_x = x
        self._noise: dict[str, NoiseSampler] = {}
        self.seed = extra_args.get("seed", None)

    # model ------------------------------------------------------------------------------
    def denoise_at(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        """D(x, sigma_idx) with the schedule's own sigma tensor (as ComfyUI passes ``sigmas[i] * s_in``)."""
        self.nfe += 1
        out = self.model(x, self.sig_b[idx], **self.extra_args)
        return out if out.dtype == self.wd else out.to(self.wd)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """D(x, sigma) at an intermediate sigma."""
        self.nfe += 1
        out = self.model(x, self.s_in * sigma, **self.extra_args)
        return out if out.dtype == self.wd else out.to(self.wd)

    # noise ------------------------------------------------------------------------------
    def noise(self, kind: str, sigma: float, sigma_next: float) -> torch.Tensor:
        """Unit noise for the interval (sigma -> sigma_next) from the run's single source of ``kind``."""
        if self.compat.noise_kind != "auto":
            kind = self.compat.noise_kind
        ns = self._noise.get(kind)
        if ns is None:
            ns = self._noise[kind] = self._noise_factory(kind, self._noise_x, self._noise_sigmas, self.seed)
        z = ns(sigma, sigma_next)
        if z.dtype != self.wd or z.device != self._noise_x.device:
            z = z.to(device=self._noise_x.device, dtype=self.wd)
        return z


def lincomb(*terms: tuple[float, torch.Tensor | None]) -> torch.Tensor:
    """sum_k c_k T_k as one multiply and in-place adds (terms with a zero coefficient or None are skipped)."""
    out = None
    for c, t in terms:
        if t is None or c == 0.0:
            continue
        if out is None:
            out = t * c
        else:
            out.add_(t, alpha=c)
    if out is None:
        raise ValueError("lincomb of nothing")
    return out
