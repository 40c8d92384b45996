"""Published Align Your Steps schedules and ComfyUI-compatible step-count / denoise handling.

Source: Sabour, Fidler, Kreis, "Align Your Steps" (arXiv 2404.14507), appendix table of optimised
10-step schedules (11 sigmas, high to low, in the EDM / k-diffusion VE parameterisation). For SD1 and
SDXL we use the longer values NVIDIA's how-to page publishes (and ComfyUI ships); they differ from the
paper's three-decimal table by at most 0.0035 (e.g. SD1 3.8637 vs 3.861). SVD and DeepFloyd-IF are the
paper's values.

Other step counts follow ComfyUI's ``AlignYourStepsScheduler``: interpolate log(sigma) linearly over
evenly spaced positions to ``steps + 1`` points, keep the last ``round(steps * denoise) + 1`` of them
and overwrite the final one with 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

AYS_TABLES: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
    "DeepFloyd-IF": (160.41, 8.081, 3.315, 1.885, 1.207, 0.785, 0.553, 0.293, 0.186, 0.030, 0.006),
}
"""Published 10-step AYS sigmas (11 values, descending), keyed by preset name."""


def loglinear_interp(sigmas_desc: Sequence[float] | np.ndarray | torch.Tensor, n_points: int) -> np.ndarray:
    """Resample a descending sigma list to ``n_points`` values, linear in log(sigma).

    The k-th of the ``len(sigmas_desc)`` input values sits at position k/(len-1) in [0, 1]; the output
    takes ``n_points`` evenly spaced positions and interpolates log(sigma) between neighbours
    (AYS paper, "other step counts"; same arithmetic as ComfyUI, in float64). Both end values are kept.
    """
    if isinstance(sigmas_desc, torch.Tensor):
        sigmas_desc = sigmas_desc.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(sigmas_desc, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"need a 1-D list of at least 2 sigmas, got shape {values.shape}")
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("sigmas for log-linear interpolation must be finite and positive")
    # Work on the ascending list so that np.interp gets increasing positions.
    log_ascending = np.log(values[::-1])
    positions = np.linspace(0.0, 1.0, len(values))
    new_positions = np.linspace(0.0, 1.0, n_points)
    return np.exp(np.interp(new_positions, positions, log_ascending))[::-1].copy()


def ays_sigmas(table: Sequence[float] | np.ndarray | torch.Tensor, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Sigmas for ``steps`` steps from an AYS table, exactly as ComfyUI's AlignYourStepsScheduler.

    - ``denoise <= 0``: an empty tensor (nothing to sample);
    - the table is used as is when it already has ``steps + 1`` values, else log-linearly resampled;
    - ``denoise < 1`` keeps the last ``round(steps * denoise) + 1`` values (Python's round, half to even);
    - the final value is replaced by 0 (not appended: "10 steps" means 10 model calls for euler).

    Returns float32 on the CPU (like ComfyUI's node).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not math.isfinite(denoise):
        raise ValueError(f"denoise must be a number from 0 to 1, got {denoise}")
    kept_steps = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0, dtype=torch.float32)
        kept_steps = round(steps * denoise)
    if isinstance(table, torch.Tensor):
        table = table.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(table, dtype=np.float64)
    if len(values) != steps + 1:
        values = loglinear_interp(values, steps + 1)
    values = values[len(values) - (kept_steps + 1):].copy()
    values[-1] = 0.0
    return torch.tensor(values, dtype=torch.float32)


def ays_preset_sigmas(preset: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """:func:`ays_sigmas` for one of the published tables in :data:`AYS_TABLES` (by name)."""
    if preset not in AYS_TABLES:
        raise KeyError(f"unknown AYS table {preset!r}; known: {', '.join(AYS_TABLES)}")
    return ays_sigmas(AYS_TABLES[preset], steps, denoise)
