"""Registry of per-step solver methods.

Every method is one small class that declares its properties (order, model calls per
step, history it can use, whether it has an SDE form) and its plan options. Adding a
solver means writing one class and decorating it with :func:`register`; the plan
parser, the sampling loop, the NFE counter and the nodes all read this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class OptionSpec:
    """One ``key=value`` option a method accepts in a plan line.

    ``kind`` is one of ``float``, ``int``, ``bool`` or ``str``; ``choices`` restricts
    a ``str`` option; ``min``/``max`` bound numeric options (inclusive).
    """

    name: str
    kind: type
    default: Any
    help: str = ""
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None


# Options every stochastic method takes (the Sampler Scheduler knob).
ETA = OptionSpec("eta", float, 1.0, "stochasticity: 0 = ODE (deterministic), 1 = full SDE", min=0.0, max=100.0)
S_NOISE = OptionSpec("s_noise", float, 1.0, "scale of the injected noise", min=0.0, max=100.0)


class StepMethod:
    """Base class of a registered step method (see ``sampler_core.loop`` for ``step``)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    order: ClassVar[int] = 1  # nominal order of accuracy
    model_calls: ClassVar[int] = 1  # model evaluations per (non-final) step
    history: ClassVar[int] = 0  # previous evaluations it can use (multistep methods)
    stochastic: ClassVar[bool] = False  # takes eta / s_noise
    options: ClassVar[tuple[OptionSpec, ...]] = ()

    @classmethod
    def option_map(cls) -> dict[str, OptionSpec]:
        return {o.name: o for o in cls.options}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {o.name: o.default for o in cls.options}


METHODS: dict[str, type[StepMethod]] = {}


def register(cls: type[StepMethod]) -> type[StepMethod]:
    """Class decorator: add a method to :data:`METHODS` under ``cls.name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"step method name missing or registered twice: {cls.name!r}")
    METHODS[cls.name] = cls
    return cls
