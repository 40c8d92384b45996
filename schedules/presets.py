"""Optimised AYS schedules saved as JSON presets (no pickle), with strict validation.

File layout (one preset per ``<name>.json``)::

    {
      "format": "sampler-scheduler-ays-schedule",
      "version": 1,
      "name": "my-model",                      # display name (1..100 printable characters)
      "model": {...},                          # model identity (JSON object, free-form)
      "conditioning": {...},                   # conditioning / data summary (JSON object, free-form)
      "sigmas": {"10": [11 values], "20": [21 values], "40": [41 values]},
      "klub_history": {"10": [...], ...},      # objective after every sweep, per step count
      "created": "2026-01-01T00:00:00+00:00"   # ISO 8601
    }

Sigma lists are in the model's own sigma space, descending, strictly positive (the final 0 is added
when sigmas are produced, as for the published tables), and still so in float32, the precision of SIGMAS.
A file that breaks any rule raises :class:`PresetError` naming the file and the problem;
:func:`list_presets` skips such files and returns warnings instead, so a bad file never breaks a node's
preset list.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .ays_tables import ays_sigmas

PRESET_FORMAT = "sampler-scheduler-ays-schedule"
PRESET_VERSION = 1
MAX_FILE_BYTES = 2_000_000
MAX_STEPS = 10_000
_REQUIRED = ("format", "version", "name", "model", "sigmas", "created")
_OPTIONAL = ("conditioning", "klub_history")


class PresetError(ValueError):
    """A preset file (or preset data) that cannot be used; the message names the file and the problem."""

    __module__ = "sampler_scheduler"  # ComfyUI shows module.Class in its error dialog: not the install path

    label = "AYS preset"  # what the file is, for the message

    def __init__(self, source: str | os.PathLike, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.label} {self.source}: {problem}")


@dataclass
class AYSPreset:
    """An optimised schedule: sigmas by step count (``{10: [...11], 20: [...21], 40: [...41]}``)."""

    name: str
    model: dict[str, Any]
    sigmas: dict[int, list[float]]
    conditioning: dict[str, Any] = field(default_factory=dict)
    klub_history: dict[int, list[float]] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    source: str = ""  # file it was loaded from (not saved)

    def to_json_dict(self) -> dict[str, Any]:
        data = {
            "format": PRESET_FORMAT,
            "version": PRESET_VERSION,
            "name": self.name,
            "model": self.model,
            "conditioning": self.conditioning,
            "sigmas": {str(k): [float(x) for x in v] for k, v in sorted(self.sigmas.items())},
            "klub_history": {str(k): [float(x) for x in v] for k, v in sorted(self.klub_history.items())},
            "created": self.created,
        }
        validate_preset_dict(data, "<unsaved preset>")
        return data

    @classmethod
    def from_json_dict(cls, data: Any, source: str = "<data>") -> AYSPreset:
        validate_preset_dict(data, source)
        return cls(
            name=data["name"],
            model=data["model"],
            sigmas={int(k): [float(x) for x in v] for k, v in data["sigmas"].items()},
            conditioning=data.get("conditioning", {}),
            klub_history={int(k): [float(x) for x in v] for k, v in data.get("klub_history", {}).items()},
            created=data["created"],
            source=source,
        )

    @property
    def steps(self) -> list[int]:
        return sorted(self.sigmas)

    def sigmas_for(self, steps: int, denoise: float = 1.0) -> torch.Tensor:
        """:func:`preset_sigmas` of this preset."""
        return preset_sigmas(self, steps, denoise)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_number_list(values: Any, where: str, source: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise PresetError(source, f"{where} must be a non-empty list of numbers")
    for j, v in enumerate(values):
        if not _is_number(v):
            raise PresetError(source, f"{where}[{j}] is {v!r}, not a number")
        if not math.isfinite(float(v)):
            raise PresetError(source, f"{where}[{j}] is not finite")
    return [float(v) for v in values]


def _steps_key(key: Any, where: str, source: str) -> int:
    if not isinstance(key, str) or not re.fullmatch(r"[1-9][0-9]{0,4}", key) or int(key) > MAX_STEPS:
        raise PresetError(source, f"{where} key {key!r} is not a step count (a whole number 1..{MAX_STEPS})")
    return int(key)


MAX_NAME_CHARS = 100


def name_problem(name: Any) -> str | None:
    """What is wrong with a preset name (None: nothing): a non-empty string of at most :data:`MAX_NAME_CHARS`
    printable characters without path separators."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        return f"name must be a non-empty string of at most {MAX_NAME_CHARS} characters"
    if any(not ch.isprintable() for ch in name) or "/" in name or "\\" in name:
        return f"name {name!r} contains control characters or path separators"
    return None


def validate_preset_dict(data: Any, source: str = "<data>") -> None:
    """Raise :class:`PresetError` unless ``data`` is a valid preset (see the module docstring)."""
    if not isinstance(data, dict):
        raise PresetError(source, f"must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise PresetError(source, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise PresetError(source, f"unknown field(s): {', '.join(map(str, unknown))}")
    if data["format"] != PRESET_FORMAT:
        raise PresetError(source, f"format is {data['format']!r}, expected {PRESET_FORMAT!r} (not an AYS preset)")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PresetError(source, f"version must be a positive whole number, got {version!r}")
    if version > PRESET_VERSION:
        raise PresetError(source, f"version {version} is newer than this pack reads ({PRESET_VERSION}); "
                                  "update the pack")
    problem = name_problem(data["name"])
    if problem:
        raise PresetError(source, problem)
    for key in ("model", "conditioning"):
        if key in data and not isinstance(data[key], dict):
            raise PresetError(source, f"{key} must be a JSON object, got {type(data[key]).__name__}")
    sigmas = data["sigmas"]
    if not isinstance(sigmas, dict) or not sigmas:
        raise PresetError(source, "sigmas must be a non-empty object mapping step counts to sigma lists")
    for key, values in sigmas.items():
        steps = _steps_key(key, "sigmas", source)
        where = f"sigmas[{key!r}]"
        vals = _check_number_list(values, where, source)
        if len(vals) != steps + 1:
            raise PresetError(source, f"{where} has {len(vals)} values; {steps} steps need {steps + 1}")
        if any(v <= 0 for v in vals):
            raise PresetError(source, f"{where} must be > 0 everywhere (the final 0 is added when sampling)")
        for j in range(steps):
            if not vals[j + 1] < vals[j]:
                raise PresetError(source, f"{where} is not strictly decreasing at index {j + 1} "
                                          f"({vals[j]!r} then {vals[j + 1]!r})")
        v32 = torch.tensor(vals, dtype=torch.float64).float()  # SIGMAS are float32: what ComfyUI will see
        if not bool(torch.isfinite(v32).all()) or not bool((v32 > 0).all()):
            raise PresetError(source, f"{where} has a value outside float32's range (SIGMAS are float32)")
        if not bool((v32[1:] < v32[:-1]).all()):
            j = int(torch.nonzero(v32[1:] >= v32[:-1])[0]) + 1
            raise PresetError(source, f"{where} is not strictly decreasing in float32 (SIGMAS' precision) at index "
                                      f"{j} ({vals[j - 1]!r} then {vals[j]!r})")
    history = data.get("klub_history", {})
    if not isinstance(history, dict):
        raise PresetError(source, "klub_history must be an object mapping step counts to lists of numbers")
    for key, values in history.items():
        _steps_key(key, "klub_history", source)
        if key not in sigmas:
            raise PresetError(source, f"klub_history has step count {key} that sigmas lacks")
        _check_number_list(values, f"klub_history[{key!r}]", source)
    created = data["created"]
    if not isinstance(created, str):
        raise PresetError(source, "created must be an ISO 8601 date-time string")
    try:
        _dt.datetime.fromisoformat(created)
    except ValueError:
        raise PresetError(source, f"created {created!r} is not an ISO 8601 date-time") from None


def _reject_constant(token: str) -> float:
    raise ValueError(f"non-standard JSON number {token}")


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def json_problem(e: ValueError) -> str:
    """What a ValueError of strict JSON parsing means, in words (Python's int-digit limit has a long message)."""
    return "a number has too many digits" if "digits" in str(e) else str(e)


def read_json_file(path: str | os.PathLike, error: type[PresetError] = PresetError) -> Any:
    """The JSON value of a preset-like file (at most :data:`MAX_FILE_BYTES`, UTF-8, strict JSON: no NaN or
    Infinity, no duplicate keys); ``error(path, problem)`` is raised saying what is wrong."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader, a device (/dev/zero) never end
            raise error(path, "is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise error(path, f"file is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a preset may have")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows meanwhile
        if len(data) > MAX_FILE_BYTES:
            raise error(path, f"file is over {MAX_FILE_BYTES} bytes, more than a preset may have")
        text = data.decode("utf-8")
    except OSError as e:
        raise error(path, f"cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise error(path, "is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise error(path, f"is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except ValueError as e:  # NaN/Infinity, duplicate keys, or Python's limit on the digits of an integer
        raise error(path, f"is not valid JSON ({json_problem(e)})") from None
    except RecursionError:
        raise error(path, "is not valid JSON (nested too deeply)") from None


def load_preset(path: str | os.PathLike) -> AYSPreset:
    """Read and validate one preset file; :class:`PresetError` says what is wrong with it."""
    return AYSPreset.from_json_dict(read_json_file(path), str(path))


def preset_filename(name: str) -> str:
    """File name for a preset name: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()).lstrip(".")
    if not stem:
        raise PresetError(name, "name has no usable characters for a file name")
    return stem[:100] + ".json"


def save_preset_file(path: str | os.PathLike, preset: AYSPreset) -> Path:
    """Validate and write ``preset`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    text = json.dumps(preset.to_json_dict(), indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_file_free(path: str | os.PathLike, name: str, error: type[PresetError] | None = None) -> None:
    """Refuse to overwrite ``path`` when it holds a *different* name (names that differ only in characters
    :func:`preset_filename` replaces, e.g. ``a b`` and ``a_b``, share a file). The same name (an update) and a
    file that is not readable JSON with a name (it would be skipped anyway) may be overwritten. ``error``: the
    error class (what kind of file it is, for the message)."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        other = read_json_file(path).get("name")
    except (PresetError, AttributeError):
        return
    if isinstance(other, str) and other != name:
        raise (error or PresetError)(name, f"its file name {path.name} already holds the preset {other!r}; choose "
                                           "a name that differs in more than spaces and punctuation")


def save_preset(directory: str | os.PathLike, preset: AYSPreset) -> Path:
    """Save ``preset`` as ``directory / preset_filename(preset.name)`` (overwrites a preset of the same name,
    never one whose different name maps to the same file: :func:`check_file_free`)."""
    path = Path(directory) / preset_filename(preset.name)
    check_file_free(path, preset.name)
    return save_preset_file(path, preset)


def list_presets(directory: str | os.PathLike) -> tuple[list[AYSPreset], list[str]]:
    """All valid presets in ``directory`` (sorted by name) and one warning per file that was skipped.

    Never raises for bad files (or a missing directory): a corrupt or hand-edited file only adds a warning.
    """
    directory = Path(directory)
    presets: list[AYSPreset] = []
    warnings: list[str] = []
    if not directory.is_dir():
        return presets, warnings
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            preset = load_preset(path)
        except PresetError as e:
            warnings.append(f"skipped {e}")
            continue
        if preset.name in seen:
            warnings.append(f"skipped AYS preset {path}: name {preset.name!r} is already used by {seen[preset.name]}")
            continue
        seen[preset.name] = str(path)
        presets.append(preset)
    presets.sort(key=lambda p: p.name)
    return presets, warnings


def preset_sigmas(preset: AYSPreset, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Sigmas (float32, final 0) for ``steps`` and ``denoise`` from a saved schedule, the AYS way.

    Uses the stored schedule with exactly ``steps`` steps when there is one, otherwise the finest one
    (the 40-step result) log-linearly interpolated; denoise is handled as ComfyUI's AYS node does.
    """
    table = preset.sigmas.get(steps) or preset.sigmas[max(preset.sigmas)]
    return ays_sigmas(table, steps, denoise)


def matches_model(preset: AYSPreset, identity: dict[str, Any]) -> bool:
    """True when every key of ``identity`` is in the preset's model identity with an equal value."""
    return all(k in preset.model and preset.model[k] == v for k, v in identity.items())
