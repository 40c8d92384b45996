"""Registry of per-step solver methods.

Every method is one small class that declares its properties (order, model calls per
step, history it can use, whether it has an SDE form) and its plan options. Adding a
solver means writing one class and decorating it with :func:`register`; the plan
parser, the sampling loop, the NFE counter and the nodes all read this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the step protocol's types (no runtime import: the registry stays torch-free)
    from torch import Tensor

    from .methods._base import Schedule, StepContext


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
    """Base class of a registered step method.

    The step protocol (driven by :func:`sampler_core.loop.sample_plan`): for step ``i`` the loop
    evaluates ``denoised = D(x, sigma_i)`` (one model call; :meth:`start_denoised`), applies a pending corrector
    left by the previous step, reports the callback, then calls ``step(ctx, i, x, denoised, opts)``
    which returns x at ``sigma_{i+1}``. A step may make further model calls through
    ``ctx.denoise``, draw noise through ``ctx.noise``, read earlier evaluations in ``ctx.history``
    and leave a corrector in ``ctx.pending``. ``calls`` must predict the model calls of ``step``
    exactly (it is what :func:`sampler_core.loop.plan_nfe` adds up).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    order: ClassVar[int] = 1  # nominal order of accuracy
    model_calls: ClassVar[int] = 1  # model evaluations per (non-final) step
    history: ClassVar[int] = 0  # previous evaluations it can use (multistep methods)
    stochastic: ClassVar[bool] = False  # takes eta / s_noise
    options: ClassVar[tuple[OptionSpec, ...]] = ()
    noise_kind: ClassVar[str] = "gaussian"  # noise it draws when stochastic: "gaussian" or "brownian"
    # ComfyUI's offset_first_sigma_for_snr: on flow models a first step from sigma >= 1 starts just below 1.
    snr_first_offset: ClassVar[bool] = False
    # the step to sigma 0 after a corrector: False (most methods, whose last step returns D) gets D at the corrected
    # point, D + (x - x_eval) with eps held fixed, so the correction reaches the output; True: the method's last
    # step uses the corrected x itself (UniPC, whose last step is a full predictor step, as ComfyUI's)
    own_final_step: ClassVar[bool] = False

    @classmethod
    def option_map(cls) -> dict[str, OptionSpec]:
        return {o.name: o for o in cls.options}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {o.name: o.default for o in cls.options}

    @classmethod
    def check(cls, opts: dict[str, Any]) -> None:
        """Reject option combinations the method cannot run (raise ``ValueError``)."""

    @classmethod
    def check_position(cls, i: int, n: int) -> None:
        """Reject the method at step ``i`` of an ``n``-step run (raise ``ValueError``); default: any step."""

    @classmethod
    def start_denoised(cls, ctx: StepContext, i: int, x: Tensor) -> Tensor:
        """``denoised`` at the start of step ``i``: one model call ``D(x, sigma_i)`` (methods with
        ``model_calls = 0`` override it with an analytic estimate)."""
        return ctx.denoise_at(x, i)

    @classmethod
    def calls(cls, sched: Schedule, i: int, opts: dict[str, Any]) -> int:
        """Model calls step ``i`` makes (default: ``model_calls``, one on the last step to sigma 0)."""
        return 1 if cls.model_calls == 1 or sched.sig[i + 1] == 0 else cls.model_calls

    @classmethod
    def step(cls, ctx: StepContext, i: int, x: Tensor, denoised: Tensor, opts: dict[str, Any]) -> Tensor:
        """Advance ``x`` from ``sigma_i`` to ``sigma_{i+1}`` given ``denoised = D(x, sigma_i)``."""
        raise NotImplementedError


METHODS: dict[str, type[StepMethod]] = {}


def register(cls: type[StepMethod]) -> type[StepMethod]:
    """Class decorator: add a method to :data:`METHODS` under ``cls.name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"step method name missing or registered twice: {cls.name!r}")
    METHODS[cls.name] = cls
    return cls
