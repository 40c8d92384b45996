"""Built-in step methods (importing this package registers them in ``sampler_core.registry.METHODS``)."""

from __future__ import annotations

from . import analytic, exponential, first_order, multistep, singlestep, unipc, usf  # noqa: F401
from ._base import Compat, Entry, Schedule, StepContext, lincomb

__all__ = ["Compat", "Entry", "Schedule", "StepContext", "lincomb"]
