"""Where optimised AYS schedules live in ComfyUI (the user directory) and which fit a model."""

from __future__ import annotations

import logging
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


# names the AYS Sigmas node gives its built-in choices: a (hand-written) preset file of that name is unusable
BUILTIN_NAMES = {"auto", *(n.lower() for n in AYS_TABLES)}


_CACHE: dict[str, tuple[tuple, list[AYSPreset], list[str]]] = {}  # folder -> (its signature, presets, warnings)


def _usable(directory) -> tuple[list[AYSPreset], list[str]]:
    """The folder's usable presets and the warnings about the others, parsed again only when the folder changed
    (:func:`folder_signature`: every file's name, size and mtime), not at every node list and run."""
    key = str(directory)
    sig = _signature(key)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == sig and sig:
        return list(hit[1]), list(hit[2])
    presets, warnings = list_presets(directory)
    ok = [p for p in presets if p.name.lower() not in BUILTIN_NAMES]
    warnings += [f"AYS preset {p.source}: its name {p.name!r} is a built-in preset's; skipped (rename it)"
                 for p in presets if p.name.lower() in BUILTIN_NAMES]
    _CACHE[key] = (sig, ok, warnings)
    return list(ok), list(warnings)


def load_all() -> list[AYSPreset]:
    presets, warnings = _usable(presets_dir())
    for w in warnings:
        log.warning("Sampler Scheduler: %s", w)
    return presets


def broken_files() -> dict[str, str]:
    """Preset files that cannot be used, by file name without ``.json``: what is wrong with each."""
    directory = Path(presets_dir())
    if not directory.is_dir():
        return {}
    usable = {Path(p.source).resolve() for p in _usable(directory)[0]}
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-") or path.resolve() in usable or path.stem.lower() in BUILTIN_NAMES:
            continue  # a file named like a built-in preset can never be selected: the built-in wins
        try:
            name = load_preset(path).name
            problem = (f"AYS preset {path}: its name {name!r} is a built-in preset's; rename it"
                       if name.lower() in BUILTIN_NAMES else
                       f"AYS preset {path}: its name {name!r} is already used by another file")
        except PresetError as e:
            problem = str(e)
        out[path.stem] = problem
    return out


def folder_signature() -> tuple:
    """What the saved presets' state is, without reading any file: (name, size, mtime, inode) of every entry of the
    preset folder. A node whose output depends on the saved presets returns this as its fingerprint, so ComfyUI
    runs it again (instead of reusing a cached output) after a preset is saved, rewritten, edited or deleted."""
    return _signature(presets_dir())


def _signature(directory: str) -> tuple:
    try:
        with os.scandir(directory) as entries:
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
    names = [p.name for p in load_all()]
    return names + [stem for stem in broken_files() if stem not in names]


def model_identity(model) -> dict:
    """A JSON-able identity of a MODEL: built-in model name, or model family + sampling + sigma range."""
    base = model.model
    kind = getattr(base, "toy_kind", None)
    ms = model.get_model_object("model_sampling")
    sampling = {"model_type": base.model_type.name,
                "sigma_min": round(float(ms.sigma_min), 5), "sigma_max": round(float(ms.sigma_max), 5)}
    if kind is not None:  # a ModelSampling patch (v-prediction, zsnr, shift, ...) makes another model
        return {"builtin": kind, **sampling}
    return {"family": type(base.model_config).__name__, **sampling}


def _legacy_builtin_fits(preset: AYSPreset, identity: dict, model) -> bool:
    """Presets of a built-in model without a sigma range in their identity (``{"builtin": kind, ...}``: written by
    the command, or by this node before 2026-11-24): this model's when the preset's schedule spans exactly the
    model's sigma range (the built-in model without a ModelSampling patch)."""
    if "builtin" not in identity or preset.model.get("builtin") != identity["builtin"] or "sigma_max" in preset.model:
        return False
    ms = model.get_model_object("model_sampling")
    table = preset.sigmas[max(preset.sigmas)]
    return (abs(table[0] - float(ms.sigma_max)) <= 1e-3 * float(ms.sigma_max)
            and table[-1] >= float(ms.sigma_min) * (1 - 1e-3))


def saved_for(model, steps: int, preset: str = "auto") -> dict[str, list[float]]:
    """Saved tables to choose from: for 'auto' those made for this model (oldest first), else the named one."""
    presets = load_all()
    if preset == "auto":
        ident = model_identity(model)
        chosen = sorted((p for p in presets if matches_model(p, ident) or _legacy_builtin_fits(p, ident, model)),
                        key=lambda p: p.created)
    else:
        chosen = [p for p in presets if p.name == preset]
        broken = broken_files() if not chosen else {}
        if preset in broken:
            raise ValueError(f"AYS preset {preset!r} cannot be used: {broken[preset]}. Fix or delete the file, or "
                             "run the Align Your Steps Optimiser again to rewrite it")
    return {p.name: list(p.sigmas.get(steps) or p.sigmas[max(p.sigmas)]) for p in chosen}
