"""ComfyUI's scalar step arithmetic in float32 (host-side, 0-d CPU tensors), for the named methods' parity.

k-diffusion computes ancestral splits and half-log-SNRs on float32 sigma tensors. Some of these
cancel badly (sigma_down^2 = sigma'^2 - sigma_up^2 after a large step, 1 - sigma near sigma = 1),
so ComfyUI's values can differ from exact ones by far more than float32 rounding of the result.
The named methods compute these few scalars the same way; ``usf`` uses exact float64 math.
"""

from __future__ import annotations

import torch

_F32 = torch.float32


def t32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=_F32)


def ancestral_step32(sigma: float | torch.Tensor, sigma_next: float | torch.Tensor,
                     eta: float) -> tuple[float, float]:
    """k-diffusion ``get_ancestral_step`` on float32 values: (sigma_down, sigma_up)."""
    s = sigma if isinstance(sigma, torch.Tensor) else t32(sigma)
    s1 = sigma_next if isinstance(sigma_next, torch.Tensor) else t32(sigma_next)
    if not eta:
        return float(s1), 0.0
    up = torch.minimum(s1, eta * (s1**2 * (s**2 - s1**2) / s**2) ** 0.5)
    down = (s1**2 - up**2) ** 0.5
    return float(down), float(up)


def ancestral_step_flow32(sigma: float, sigma_next: float, eta: float) -> tuple[float, float, float]:
    """ComfyUI's RF ancestral split on float32 values: (sigma_down, renoise, alpha'/alpha_down)."""
    s, s1 = t32(sigma), t32(sigma_next)
    down = s1 * (1 + (s1 / s - 1) * eta)
    a1, ad = 1 - s1, 1 - down
    renoise = (s1**2 - down**2 * a1**2 / ad**2) ** 0.5
    return float(down), float(torch.nan_to_num(renoise)), float(a1 / ad)


def lam32(sigma: float | torch.Tensor, kind: str) -> torch.Tensor:
    """k-diffusion ``sigma_to_half_log_snr`` in float32."""
    s = sigma if isinstance(sigma, torch.Tensor) else t32(sigma)
    return s.logit().neg() if kind == "flow" else s.log().neg()


def sigma32(lmb: torch.Tensor, kind: str) -> torch.Tensor:
    """k-diffusion ``half_log_snr_to_sigma`` in float32."""
    return lmb.neg().sigmoid() if kind == "flow" else lmb.neg().exp()
