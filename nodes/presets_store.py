"""Where optimised AYS schedules live in ComfyUI (the user directory) and which fit a model."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from pathlib import Path

import folder_paths

from ..schedules.ays_tables import AYS_TABLES
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


# the AYS Sigmas node's built-in choices: a (hand-written) preset of exactly that name could never be selected
BUILTIN_NAMES = {"auto", *AYS_TABLES}


def _usable(directory) -> tuple[list[AYSPreset], list[str]]:
    """The folder's usable presets and the warnings about the others (read from disk every time: a file edited
    in place keeping its size and modification time would fool any cache keyed on them)."""
    presets, warnings = list_presets(directory)
    ok = [p for p in presets if p.name not in BUILTIN_NAMES]
    warnings += [f"AYS preset {p.source}: its name {p.name!r} is a built-in preset's; skipped (rename it)"
                 for p in presets if p.name in BUILTIN_NAMES]
    return ok, warnings


def load_all() -> list[AYSPreset]:
    presets, warnings = _usable(presets_dir())
    for w in warnings:
        log.warning("Sampler Scheduler: %s", w)
    return presets


def broken_files(usable_presets: list[AYSPreset] | None = None) -> dict[str, str]:
    """Preset files that cannot be used, by file name without ``.json``: what is wrong with each
    (``usable_presets``: :func:`load_all`'s result when the caller has it, so the folder is parsed once)."""
    directory = Path(presets_dir())
    if not directory.is_dir():
        return {}
    if usable_presets is None:
        usable_presets = _usable(directory)[0]
    usable = {Path(p.source).resolve() for p in usable_presets}
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-") or path.resolve() in usable or path.stem in BUILTIN_NAMES:
            continue  # a file named like a built-in preset can never be selected: the built-in wins
        try:
            name = load_preset(path).name
            problem = (f"AYS preset {path}: its name {name!r} is a built-in preset's; rename it"
                       if name in BUILTIN_NAMES else
                       f"AYS preset {path}: its name {name!r} is already used by another file")
        except PresetError as e:
            problem = str(e)
        out[path.stem] = problem
    return out


def folder_signature() -> tuple:
    """What the saved presets' state is, without reading any file: (name, size, mtime, inode) of every entry of the
    preset folder. A node whose output depends on the saved presets returns this as its fingerprint, so ComfyUI
    runs it again (instead of reusing a cached output) after a preset is saved, rewritten, edited or deleted."""
    try:
        with os.scandir(presets_dir()) as entries:
            out = []
            for e in entries:
                try:
                    st = e.stat()
                except OSError:  # a dangling link: its name alone
                    out.append((e.name, -1, -1, -1))
                    continue
                out.append((e.name, st.st_size, st.st_mtime_ns, st.st_ino))  # a replaced file: a new inode
    except OSError:  # no folder yet
        return ()
    return tuple(sorted(out))


def preset_names() -> list[str]:
    """Names of the saved presets, then the names of unusable files (selecting one explains the problem)."""
    presets = load_all()
    names = [p.name for p in presets]
    return names + [stem for stem in broken_files(presets) if stem not in names]


def model_identity(model) -> dict:
    """A JSON-able identity of a MODEL: built-in model name or model family, model type and sigma range; under a
    ModelSampling patch (v-prediction, zsnr, lcm, shift, ...) also the patch's prediction type
    (``sampling_patch``), so that a patched model is another model for 'auto'."""
    base = model.model
    kind = getattr(base, "toy_kind", None)
    ms = model.get_model_object("model_sampling")
    out = {"builtin": kind} if kind is not None else {"family": type(base.model_config).__name__}
    out.update({"model_type": base.model_type.name,
                "sigma_min": round(float(ms.sigma_min), 5), "sigma_max": round(float(ms.sigma_max), 5)})
    if ms is not getattr(base, "model_sampling", ms):
        out["sampling_patch"] = _prediction_name(ms)
    return out


def _prediction_name(model_sampling) -> str:
    """The prediction class of a (patched) model sampling object: EPS, V_PREDICTION, EDM, CONST, X0, LCM, ..."""
    for cls in type(model_sampling).__mro__:
        if cls.__module__ == "comfy.model_sampling" and not cls.__name__.startswith("ModelSampling"):
            return cls.__name__
    return type(model_sampling).__name__


def fits_model(preset: AYSPreset, identity: dict, model) -> bool:
    """Whether 'auto' may use ``preset`` for the model of ``identity``: every key of the identity equal in the
    preset's model identity, and the same ModelSampling patch (none, or the same prediction type); or a built-in
    model's preset without a sigma range in its identity (written before 2026-11-24) that spans exactly this
    unpatched model's sigma range (and was made with the same shift)."""
    if preset.model.get("sampling_patch") != identity.get("sampling_patch"):
        return False
    if matches_model(preset, identity):
        return True
    if "builtin" not in identity or preset.model.get("builtin") != identity["builtin"] or "sigma_max" in preset.model:
        return False
    ms = model.get_model_object("model_sampling")  # (a patched model returned above: its sampling_patch differs)
    shift = preset.model.get("shift")
    if isinstance(shift, (int, float)) and abs(float(getattr(ms, "shift", math.nan)) - shift) > 1e-6 * abs(shift):
        return False
    table = preset.sigmas[max(preset.sigmas)]
    smax, smin = float(ms.sigma_max), float(ms.sigma_min)
    return abs(table[0] - smax) <= 1e-3 * smax and abs(table[-1] - smin) <= 1e-3 * smin


def _newest_last(preset: AYSPreset) -> tuple:
    """Sort key, oldest first: the creation time (UTC; one without an offset counts as UTC), then the file's
    modification time (presets created in the same second)."""
    created = _dt.datetime.fromisoformat(preset.created)
    if created.tzinfo is None:
        created = created.replace(tzinfo=_dt.timezone.utc)
    try:
        mtime = os.stat(preset.source).st_mtime_ns if preset.source else 0
    except OSError:
        mtime = 0
    return created.astimezone(_dt.timezone.utc), mtime, preset.name


def saved_for(model, steps: int, preset: str = "auto") -> dict[str, list[float]]:
    """Saved tables to choose from: for 'auto' those made for this model (oldest first), else the named one."""
    presets = load_all()
    if preset == "auto":
        ident = model_identity(model)
        chosen = sorted((p for p in presets if fits_model(p, ident, model)), key=_newest_last)
    else:
        chosen = [p for p in presets if p.name == preset]
        broken = broken_files() if not chosen else {}
        if preset in broken:
            raise ValueError(f"AYS preset {preset!r} cannot be used: {broken[preset]}. Fix or delete the file, or "
                             "run the Align Your Steps Optimiser again to rewrite it")
    return {p.name: list(p.sigmas.get(steps) or p.sigmas[max(p.sigmas)]) for p in chosen}
