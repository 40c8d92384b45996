"""Where optimised AYS schedules live in ComfyUI (the user directory) and which fit a model."""

from __future__ import annotations

import logging
import os

import folder_paths

from ..schedules.presets import AYSPreset, list_presets, matches_model

log = logging.getLogger("sampler_scheduler")


def presets_dir() -> str:
    return os.path.join(folder_paths.get_user_directory(), "sampler_scheduler", "ays_schedules")


def load_all() -> list[AYSPreset]:
    presets, warnings = list_presets(presets_dir())
    for w in warnings:
        log.warning("Sampler Scheduler: %s", w)
    return presets


def preset_names() -> list[str]:
    return [p.name for p in load_all()]


def model_identity(model) -> dict:
    """A JSON-able identity of a MODEL: built-in model name, or model family + sampling + sigma range."""
    base = model.model
    kind = getattr(base, "toy_kind", None)
    if kind is not None:
        return {"builtin": kind}
    ms = model.get_model_object("model_sampling")
    return {"family": type(base.model_config).__name__, "model_type": base.model_type.name,
            "sigma_min": round(float(ms.sigma_min), 5), "sigma_max": round(float(ms.sigma_max), 5)}


def saved_for(model, steps: int, preset: str = "auto") -> dict[str, list[float]]:
    """Saved tables to choose from: for 'auto' those made for this model (oldest first), else the named one."""
    presets = load_all()
    if preset == "auto":
        ident = model_identity(model)
        chosen = sorted((p for p in presets if matches_model(p, ident)), key=lambda p: p.created)
    else:
        chosen = [p for p in presets if p.name == preset]
    return {p.name: list(p.sigmas.get(steps) or p.sigmas[max(p.sigmas)]) for p in chosen}
