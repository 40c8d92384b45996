"""Where optimised AYS schedules live in ComfyUI (the user directory) and which fit a model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths

from ..schedules.presets import (
    AYSPreset,
    PresetError,
    check_file_free,
    list_presets,
    load_preset,
    matches_model,
    preset_filename,
)

log = logging.getLogger("sampler_scheduler")


def presets_dir() -> str:
    return os.path.join(folder_paths.get_user_directory(), "sampler_scheduler", "ays_schedules")


def check_name_free(name: str) -> None:
    """Before a long run: refuse a preset name whose file already holds another preset (see ``check_file_free``)."""
    check_file_free(os.path.join(presets_dir(), preset_filename(name)), name)


def load_all() -> list[AYSPreset]:
    presets, warnings = list_presets(presets_dir())
    for w in warnings:
        log.warning("Sampler Scheduler: %s", w)
    return presets


def broken_files() -> dict[str, str]:
    """Preset files that cannot be used, by file name without ``.json``: what is wrong with each."""
    directory = Path(presets_dir())
    if not directory.is_dir():
        return {}
    usable = {Path(p.source).resolve() for p in list_presets(directory)[0]}
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-") or path.resolve() in usable:
            continue
        try:
            problem = f"AYS preset {path}: its name {load_preset(path).name!r} is already used by another file"
        except PresetError as e:
            problem = str(e)
        out[path.stem] = problem
    return out


def folder_signature() -> tuple:
    """What the saved presets' state is, without reading any file: (name, size, mtime) of every entry of the
    preset folder. A node whose output depends on the saved presets returns this as its fingerprint, so ComfyUI
    runs it again (instead of reusing a cached output) after a preset is saved, rewritten, edited or deleted."""
    try:
        with os.scandir(presets_dir()) as entries:
            out = []
            for e in entries:
                try:
                    st = e.stat()
                except OSError:  # a dangling link: its name alone
                    out.append((e.name, -1, -1))
                    continue
                out.append((e.name, st.st_size, st.st_mtime_ns))
    except OSError:  # no folder yet
        return ()
    return tuple(sorted(out))


def preset_names() -> list[str]:
    """Names of the saved presets, then the names of unusable files (selecting one explains the problem)."""
    names = [p.name for p in load_all()]
    return names + [stem for stem in broken_files() if stem not in names]


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
        broken = broken_files() if not chosen else {}
        if preset in broken:
            raise ValueError(f"AYS preset {preset!r} cannot be used: {broken[preset]}. Fix or delete the file, or "
                             "run the Align Your Steps Optimiser again to rewrite it")
    return {p.name: list(p.sigmas.get(steps) or p.sigmas[max(p.sigmas)]) for p in chosen}
