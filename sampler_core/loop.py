"""One sampling loop for a per-step plan of solver methods (ComfyUI ``KSAMPLER`` signature, no ComfyUI imports).

Every step i (sigma_i -> sigma_{i+1}) evaluates D(x, sigma_i) once (``afs``: an analytic estimate),
applies a pending corrector left by the previous step (UniC: it reuses this evaluation), reports the
callback with the global step index, then runs the step method the plan assigns to step i. All methods share one history
of evaluations (multistep methods keep their order across segment boundaries) and one noise
source per kind, seeded once from ``extra_args["seed"]`` (no re-seeding at a boundary).
Scalar coefficients are computed on the host from one ``sigmas.tolist()``; the loop itself
never synchronises with the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import methods as _methods  # noqa: F401  (registers the built-in methods)
from .methods._base import Compat, Entry, Schedule, StepContext
from .noise import NoiseFactory, default_noise_factory
from .registry import METHODS, StepMethod
from .snr import check_kind

Steps = list[tuple[str, dict[str, Any]]]


class PlanStepError(ValueError):
    """A plan that cannot run on this schedule (e.g. ``afs`` with nothing after it): a problem of the plan, not
    of the sigmas, so callers that report which input is wrong name the plan."""

    __module__ = "sampler_scheduler"  # ComfyUI shows module.Class in its error dialog: not the install path

    about_plan = True


def normalize_steps(steps: Sequence[tuple[str, dict[str, Any] | None]]) -> Steps:
    """Fill in defaults and check names, option keys and option values (types, ranges, choices: the plan text's
    rules) of an already resolved per-step list."""
    from .plan import convert_option_value

    out: Steps = []
    cache: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for i, item in enumerate(steps):
        name, opts = item[0], (item[1] if len(item) > 1 and item[1] is not None else {})
        key = (name, tuple(sorted(opts.items())))
        hit = cache.get(key)
        if hit is None:
            cls = METHODS.get(name)
            if cls is None:
                raise ValueError(f"step {i}: unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
            unknown = sorted(set(opts) - set(cls.option_map()))
            if unknown:
                valid = ", ".join(sorted(cls.option_map())) or "(none)"
                raise ValueError(f"step {i}: {name} has no option {', '.join(unknown)}; valid: {valid}")
            specs = cls.option_map()
            full = {**cls.defaults(), **{k: convert_option_value(name, specs[k], v) for k, v in opts.items()}}
            cls.check(full)
            hit = cache[key] = (name, full)
        out.append(hit)
    for i, (name, _) in enumerate(out):
        try:
            METHODS[name].check_position(i, len(out))
        except ValueError as e:
            raise PlanStepError(str(e)) from None
    return out


def resolve_steps(plan: Any, n_steps: int) -> Steps:
    """Plan text, a ``Plan`` object or a per-step list -> ``n_steps`` (method, full options) pairs."""
    if isinstance(plan, (list, tuple)):
        if len(plan) != n_steps:
            raise ValueError(f"a per-step plan list needs one entry per step: got {len(plan)} for {n_steps} steps")
        return normalize_steps(plan)
    if isinstance(plan, str) and plan.strip() in METHODS:
        return normalize_steps([(plan.strip(), {})] * n_steps)
    from .plan import resolve_plan  # the text / JSON plan format

    return normalize_steps(resolve_plan(plan, n_steps))


def _schedule(sig: list[float], steps: Steps, model_kind: str, compat: Compat) -> Schedule:
    """The sigma values the steps use: ComfyUI's first-sigma offset on flow models when the first method wants it."""
    sig = list(sig)
    if (model_kind == "flow" and len(sig) > 1 and sig[0] >= 1.0 and steps
            and METHODS[steps[0][0]].snr_first_offset):
        first = compat.flow_first_sigma if compat.flow_first_sigma is not None else 1.0 - 1e-4
        if first <= sig[1]:
            raise ValueError(f"{steps[0][0]} starts a flow model's first step from sigma 1 at {first:.6g}, as "
                             f"ComfyUI's SDE samplers do, but the next sigma {sig[1]:.6g} is not below that: use a "
                             "schedule whose second sigma is below it, or another first method")
        sig[0] = first
    return Schedule(sig, model_kind, compat)


def _sigma_list(sigmas: Any) -> list[float]:
    if isinstance(sigmas, torch.Tensor):
        return [float(v) for v in sigmas.detach().flatten().tolist()]
    return [float(v) for v in sigmas]


def check_schedule(sig: Sequence[float], model_kind: str) -> None:
    """Reject a schedule no solver can run, with a message that names the problem: values must be finite,
    >= 0 and strictly decreasing; a flow model's sigmas are times t in [0, 1] (VE-style sigmas such as
    14.6 on a flow model are a wiring mistake: they send the SDE samplers' noise outside its span)."""
    for i, v in enumerate(sig):
        if not math.isfinite(v):
            raise ValueError(f"sigmas[{i}] is {v}: a schedule with NaN or infinite values cannot be sampled")
        if v < 0:
            raise ValueError(f"sigmas[{i}] = {v:.6g} is negative")
    for i in range(len(sig) - 1):
        if not sig[i + 1] < sig[i]:
            raise ValueError(f"sigmas must be strictly decreasing: sigmas[{i + 1}] = {sig[i + 1]:.6g} is not below "
                             f"sigmas[{i}] = {sig[i]:.6g}")
    if model_kind == "flow" and sig and sig[0] > 1.0 + 1e-6:
        raise ValueError(f"this is a flow model (noise levels are times in [0, 1]) but the schedule starts at "
                         f"sigma {sig[0]:.6g} > 1: make the sigmas for this model (e.g. a scheduler node fed with "
                         "this model), not for an SD1/SDXL-style model")


def plan_nfe(steps: Any, sigmas: Any, *, model_kind: str = "eps", **compat: Any) -> int:
    """Exact number of model evaluations ``sample_plan`` makes for this plan and schedule (no model calls)."""
    sig = _sigma_list(sigmas)
    n = len(sig) - 1
    if n <= 0:
        return 0
    check_schedule(sig, model_kind)
    resolved = resolve_steps(steps, n)
    sched = _schedule(sig, resolved, check_kind(model_kind), Compat.from_kwargs(compat))
    return sum(METHODS[name].calls(sched, i, opts) for i, (name, opts) in enumerate(resolved))


@torch.no_grad()
def sample_plan(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callable | None = None, disable: bool | None = None, *, plan: Any = "euler",
                model_kind: str = "eps", noise_sampler_factory: NoiseFactory | None = None,
                stats: dict | None = None, **compat: Any) -> torch.Tensor:
    """Sample with a per-step plan of methods (k-diffusion sampler signature, what ``KSAMPLER`` calls).

    ``model(x, sigma * s_in, **extra_args)`` returns the denoised (x0) prediction. ``plan``: plan
    text, a ``Plan`` or a list of ``len(sigmas) - 1`` (method, options) pairs. ``model_kind``:
    "eps" (EPS / V / EDM, lambda = -log sigma) or "flow" (ComfyUI CONST, lambda = log((1-s)/s);
    ancestral methods then take ComfyUI's RF form). ``noise_sampler_factory(kind, x, sigmas, seed)``
    returns a ``noise(sigma, sigma_next)`` callable (called with Python floats; ``x`` is the float32
    working latent, ``sigmas`` the schedule as a CPU tensor) for kind "gaussian" or "brownian", at most
    once per kind and run; default: :func:`sampler_core.noise.default_noise_factory`.
    ``stats`` (a dict) receives nfe, steps and the per-step methods. ``disable`` (progress bar) is ignored.

    ``**compat`` (ComfyUI version and model details, see :class:`sampler_core.methods.Compat`):
    gaussian_cpu_seed_offset (int, default 1 as ComfyUI 0.9.2; 0 for 0.3.75), flow_first_sigma
    (float, the model's ``percent_to_sigma(1e-4)``), unipc_final_sigma (0.001), noise_kind
    ("auto" | "brownian" | "gaussian").
    fp16 / bf16 latents are sampled in float32 and returned in their own dtype.
    """
    cfg = Compat.from_kwargs(compat)
    check_kind(model_kind)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    if n <= 0:
        if stats is not None:
            stats.update(nfe=0, steps=0, methods=[])
        return x
    steps = resolve_steps(plan, n)
    in_dtype = x.dtype
    wd = torch.float32 if in_dtype in (torch.float16, torch.bfloat16) else in_dtype
    x = x.to(wd)
    sig_in = _sigma_list(sigmas)  # the one host sync of the run
    check_schedule(sig_in, model_kind)
    sched = _schedule(sig_in, steps, model_kind, cfg)
    run_sigmas = sigmas
    if sched.sig[0] != sig_in[0]:
        sched.sig[0] = float(torch.tensor(sched.sig[0], dtype=sigmas.dtype))  # as stored in the sigma tensor
        run_sigmas = sigmas.clone()
        run_sigmas[0] = sched.sig[0]
    factory = noise_sampler_factory or default_noise_factory(cfg.gaussian_cpu_seed_offset)
    # the noise factory gets the schedule as a CPU tensor (no second device sync for the Brownian tree's span)
    ctx = StepContext(sched, model, x, run_sigmas, extra_args, factory, torch.tensor(sig_in, dtype=sigmas.dtype))
    classes: list[type[StepMethod]] = [METHODS[name] for name, _ in steps]
    keep = max(cls.history for cls in classes)
    hist = ctx.history
    sig = sched.sig
    for i in range(n):
        cls = classes[i]
        opts = steps[i][1]
        denoised = cls.start_denoised(ctx, i, x)
        ctx.x_eval = x
        if ctx.pending is not None:
            x = ctx.pending(denoised)
            ctx.pending = None
            if sig[i + 1] == 0 and not cls.own_final_step:  # keep the last correction (StepMethod.own_final_step)
                denoised = denoised + (x - ctx.x_eval)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": run_sigmas[i], "sigma_hat": run_sigmas[i], "denoised": denoised})
        ctx.down = None
        x_next = cls.step(ctx, i, x, denoised, opts)
        if keep:
            hist.append(Entry(sig[i], denoised, x, sig[i + 1] if ctx.down is None else ctx.down))
            if len(hist) > keep:
                del hist[0]
        x = x_next
    ctx.pending = None
    if stats is not None:
        stats.update(nfe=ctx.nfe, steps=n, methods=[name for name, _ in steps])
    return x.to(in_dtype)
