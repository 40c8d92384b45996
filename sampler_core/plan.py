"""The per-step plan format: which step method runs on which steps of a schedule.

A plan is text, one segment per line (grammar and rounding rule: ``docs/plan_format.md``)::

    40% dpmpp_2m_sde eta=1   # SDE early
    *   dpmpp_2m             # ODE late

or the equivalent JSON object (``Plan.to_json``). Both forms round-trip exactly:
``parse_plan(p.to_text()) == p`` and ``Plan.from_json(p.to_json()) == p``.

Method names and options are checked against :data:`sampler_core.registry.METHODS`.
Parsing only tokenises and converts literals; it never evaluates user text. Every error is
a :class:`PlanError` naming the line (or JSON segment), the offending token and the valid
choices.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import math
import numbers
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .registry import METHODS, OptionSpec, StepMethod

FORMAT_ID = "sampler_scheduler.plan"
FORMAT_VERSION = 1
MAX_SEGMENTS = 64
MAX_TEXT_BYTES = 8 * 1024
MAX_JSON_BYTES = 64 * 1024  # generous: the JSON of any valid plan (text <= 8 KiB) fits
MAX_STEPS = 100_000
PERCENT_DECIMALS = 6

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_STEPS_RE = re.compile(r"[0-9]+\Z")
_PERCENT_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)%\Z")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_WORD_RE = re.compile(r"[A-Za-z0-9_.:+/\-]+\Z")  # free-form str option values
_EQUALS_RE = re.compile(r"\s*=\s*")
_PERCENT_SPACE_RE = re.compile(r"(?<=[0-9])\s+%")
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


class PlanError(ValueError):
    """A plan that cannot be parsed, validated or resolved.

    ``line`` is the 1-based text line, ``segment`` the 1-based segment (JSON input or a
    ``Plan`` built in code) and ``token`` the offending token, each ``None`` when not
    applicable. The message already contains all of them, ready to show to a user.
    """

    __module__ = "sampler_scheduler"  # ComfyUI shows module.Class in its error dialog: not the install path

    def __init__(self, message: str, *, line: int | None = None, token: str | None = None,
                 segment: int | None = None) -> None:
        if line is not None:
            where = f"plan line {line}: "
        elif segment is not None:
            where = f"plan segment {segment}: "
        else:
            where = "plan: "
        super().__init__(where + message)
        self.line = line
        self.token = token
        self.segment = segment


# --------------------------------------------------------------------------- helpers


_methods_loaded = False


def _registry() -> dict[str, type[StepMethod]]:
    """The method registry, importing the pack's built-in methods module once if it exists."""
    global _methods_loaded
    if not _methods_loaded:
        _methods_loaded = True
        name = f"{__package__}.methods"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return METHODS


def _choices(names: Any) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none registered)"


def _suggest(token: str, names: Any) -> str:
    close = difflib.get_close_matches(token.lower(), [n.lower() for n in names], n=1)
    if not close:
        return ""
    original = next(n for n in names if n.lower() == close[0])
    return f" (did you mean {original!r}?)"


def _shorten(token: str, limit: int = 40) -> str:
    return token if len(token) <= limit else token[: limit - 3] + "..."


def _format_decimal(value: float) -> str:
    """Shortest text that reads back as exactly ``value``; integral floats drop the ``.0``."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_decimal(value)
    return str(value)


class _Options(Mapping):
    """An immutable, hashable ``dict`` view used for ``Segment.options``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset((k, (type(v), v)) for k, v in self._data.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if set(self._data) != set(other.keys()):
            return False
        # bool/int/float compare by type too: eta=1.0 and flag=True are different values.
        return all(type(v) is type(other[k]) and v == other[k] for k, v in self._data.items())

    def __repr__(self) -> str:
        return repr(self._data)


def _parse_count(token: str) -> int | float | None:
    """``10`` -> 10 steps (int), ``40%`` -> 40.0 percent (float), ``*`` -> None (the rest)."""
    if token == "*":
        return None
    if _STEPS_RE.match(token):
        if len(token.lstrip("0")) > 9:
            raise PlanError(f"step count {_shorten(token)!r} is too large (more than 9 digits); the nodes run at "
                            "most 10000 steps", token=_shorten(token))
        if int(token) < 1:
            raise PlanError(f"step count {token!r} must be at least 1 (leave the line out instead)", token=token)
        return int(token)
    match = _PERCENT_RE.match(token)
    if match:
        return _check_percent(float(match.group(1)), token)
    if token.startswith("-"):
        raise PlanError(f"count {token!r} must be positive; write a step count like 10, a percentage "
                        "like 40% or * for the remaining steps", token=token)
    if _FLOAT_RE.match(token):
        pct = f"write {token}% for a percentage" if _PERCENT_RE.match(token + "%") else "a percentage like 40%"
        raise PlanError(f"step count {token!r} must be a whole number like 10; {pct} or * for the remaining "
                        "steps", token=token)
    if any(ch.isdigit() and not ch.isascii() for ch in token):
        raise PlanError(f"count {token!r} uses non-ASCII digits; write it with 0-9 (e.g. 10 or 40%)", token=token)
    raise PlanError(f"bad count {token!r}; write a step count like 10, a percentage like 40% or * for "
                    "the remaining steps", token=token)


def _check_percent(value: float, token: str) -> float:
    if not math.isfinite(value) or not 0.0 < value <= 100.0:
        raise PlanError(f"percentage {token!r} must be greater than 0% and at most 100%", token=token)
    if (_fraction(value) * 10**PERCENT_DECIMALS).denominator != 1:
        raise PlanError(f"percentage {token!r} has more than {PERCENT_DECIMALS} decimals", token=token)
    return value


def _fraction(value: float) -> Fraction:
    """The exact decimal a float was written as (``33.3`` -> 333/10), for exact percent sums."""
    return Fraction(repr(float(value)))


def _normalise_count(count: Any) -> int | float | None:
    if count is None:
        return None
    if isinstance(count, bool):
        raise PlanError(f"count {count!r} must be a step count, a percentage or '*'", token=str(count))
    if isinstance(count, int):
        if count < 1:
            raise PlanError(f"step count {count} must be at least 1", token=str(count))
        return count
    if isinstance(count, float):
        return _check_percent(count, f"{count!r}%")
    if isinstance(count, str):
        return _parse_count(count.strip())
    raise PlanError(f"count {count!r} must be a step count (int), a percentage (float or '40%') or '*'",
                    token=_shorten(repr(count)))


def _count_text(count: float | None) -> str:
    if count is None:
        return "*"
    if isinstance(count, float):  # plain decimal, never an exponent (percent literals have no exponent)
        text = format(Decimal(repr(count)), "f")
        return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"
    return str(count)


def _range_text(spec: OptionSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f" in [{_format_value(spec.kind(spec.min))}, {_format_value(spec.kind(spec.max))}]"
    if spec.min is not None:
        return f" >= {_format_value(spec.kind(spec.min))}"
    if spec.max is not None:
        return f" <= {_format_value(spec.kind(spec.max))}"
    return ""


def _expected(spec: OptionSpec) -> str:
    if spec.kind is bool:
        return "true/false, yes/no or 1/0"
    if spec.kind is int:
        return "a whole number" + _range_text(spec)
    if spec.kind is float:
        return "a decimal number" + _range_text(spec)
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    return "a word (letters, digits, _ . : + / -)"


def convert_option_value(method: str, spec: OptionSpec, raw: Any) -> Any:
    """Typed value of option ``spec``: text is read by kind, JSON values must already have the kind."""
    bad = PlanError(f"bad value {_shorten(repr(raw))} for option {spec.name!r} of {method!r}: "
                    f"expected {_expected(spec)}", token=_shorten(f"{spec.name}={_format_value(raw)}"))
    kind = spec.kind
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[raw.lower()]
        raise bad
    if kind is int or kind is float:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, str):
            if not (_INT_RE.match(raw) if kind is int else _FLOAT_RE.match(raw)):
                raise bad
            try:
                value: Any = int(raw) if kind is int else float(raw)
            except ValueError as exc:  # e.g. an int literal longer than Python's digit limit
                raise bad from exc
        elif kind is int and isinstance(raw, numbers.Integral):  # numpy integers too (the Python API's list plans)
            value = int(raw)
        elif kind is float and isinstance(raw, numbers.Real):
            value = float(raw)
        else:
            raise bad
        if kind is float and not math.isfinite(value):
            raise bad
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise bad
        return value
    if kind is str:
        if not isinstance(raw, str):
            raise bad
        if spec.choices is not None:
            if raw not in spec.choices:
                raise bad
        elif not _WORD_RE.match(raw):
            raise bad
        return raw
    raise PlanError(f"option {spec.name!r} of {method!r} has unsupported kind {kind!r} in the registry",
                    token=spec.name)


def _check_segment(seg: Segment) -> Segment:
    """Validate ``seg`` against the registry; returns it with typed option values."""
    methods = _registry()
    cls = methods.get(seg.method)
    if cls is None:
        raise PlanError(f"unknown method {_shorten(seg.method)!r}{_suggest(seg.method, methods)}; "
                        f"valid methods: {_choices(methods)}", token=_shorten(seg.method))
    specs = cls.option_map()
    typed: dict[str, Any] = {}
    for key, raw in seg.options.items():
        spec = specs.get(key)
        if spec is None:
            valid = ", ".join(f"{o.name} ({_expected(o)})" for o in cls.options) or "none"
            raise PlanError(f"unknown option {_shorten(str(key))!r} for method {seg.method!r}"
                            f"{_suggest(str(key), specs)}; its options: {valid}", token=_shorten(str(key)))
        typed[key] = convert_option_value(seg.method, spec, raw)
    try:  # option combinations the method rejects (e.g. usf eta > 0 with pred=noise): now, not at run time
        cls.check({**cls.defaults(), **typed})
    except ValueError as exc:
        raise PlanError(str(exc), token=seg.method) from None
    return Segment(seg.count, seg.method, typed)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Segment:
    """One plan line: ``count`` steps of ``method`` with the ``options`` given on that line.

    ``count`` is an ``int`` step count, a ``float`` percentage of all steps, or ``None``
    for ``*`` (the remaining steps). ``options`` holds only the options written, typed.
    Equality distinguishes 40 steps from 40.0 percent.
    """

    count: int | float | None
    method: str
    options: Mapping[str, Any] = _Options()

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", _normalise_count(self.count))
        if not isinstance(self.method, str) or not _NAME_RE.match(self.method):
            raise PlanError(f"bad method name {_shorten(repr(self.method))}; method names are words like "
                            "dpmpp_2m", token=_shorten(str(self.method)))
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise PlanError(f"options of {self.method!r} must be a mapping of option names to values",
                            token=self.method)
        object.__setattr__(self, "options", _Options(self.options))

    def _key(self) -> tuple:
        return (type(self.count), self.count, self.method, self.options)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def count_text(self) -> str:
        """The count as written in a plan: ``10``, ``40%`` or ``*``."""
        return _count_text(self.count)

    def to_text(self) -> str:
        """The segment as one plan line (no comment)."""
        opts = "".join(f" {k}={_format_value(v)}" for k, v in self.options.items())
        return f"{self.count_text()} {self.method}{opts}"

    def to_dict(self) -> dict[str, Any]:
        count: int | str = self.count if isinstance(self.count, int) else self.count_text()
        return {"count": count, "method": self.method, "options": dict(self.options)}

    def full_options(self) -> dict[str, Any]:
        """The method's defaults updated with the options given here."""
        cls = _registry().get(self.method)
        if cls is None:
            raise PlanError(f"unknown method {self.method!r}; valid methods: {_choices(_registry())}",
                            token=self.method)
        return {**cls.defaults(), **self.options}


def _check_plan(segments: tuple[Segment, ...], where: Any) -> None:
    """Plan-wide rules; ``where(i)`` gives the PlanError location kwargs of segment ``i``."""
    if not segments:
        raise PlanError("the plan is empty; write at least one line like '* dpmpp_2m'")
    if len(segments) > MAX_SEGMENTS:
        raise PlanError(f"too many segments ({len(segments)}); at most {MAX_SEGMENTS} are allowed",
                        **where(MAX_SEGMENTS))
    stars = [i for i, s in enumerate(segments) if s.count is None]
    if len(stars) > 1:
        raise PlanError("only one line may use '*' (the remaining steps); give the other lines a step count "
                        "or a percentage", token="*", **where(stars[1]))
    for i, seg in enumerate(segments):  # a step method that only runs as a run's first step (afs)
        one = type(seg.count) is int and seg.count == 1
        if getattr(_registry()[seg.method], "first_step_only", False) and (i > 0 or not one):
            raise PlanError(f"{seg.method} can only run on the first step of a run: write it on the first line "
                            f"with count 1 (e.g. '1 {seg.method}' then '* dpmpp_2m')", token=seg.method, **where(i))
    total = Fraction(0)
    for i, seg in enumerate(segments):
        if isinstance(seg.count, float):
            total += _fraction(seg.count)
            if total > 100:
                raise PlanError(f"percentages add up to {float(total):g}% (over 100%) by this line",
                                token=seg.count_text(), **where(i))


@dataclass(frozen=True)
class Plan:
    """A validated sequence of segments, covering a schedule's steps in order."""

    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if isinstance(self.segments, (str, bytes, Mapping)) or not hasattr(self.segments, "__iter__"):
            raise PlanError("Plan(segments) takes a sequence of Segment; use parse_plan() for text")
        segs = tuple(self.segments)

        def where(i: int) -> dict[str, Any]:
            return {"segment": i + 1}

        if len(segs) > MAX_SEGMENTS:
            _check_plan(segs, where)
        checked = []
        for i, seg in enumerate(segs):
            if not isinstance(seg, Segment):
                raise PlanError(f"expected a Segment, got {type(seg).__name__}", **where(i))
            try:
                checked.append(_check_segment(seg))
            except PlanError as exc:
                raise PlanError(_strip_where(exc), token=exc.token, **where(i)) from None
        segs = tuple(checked)
        _check_plan(segs, where)
        object.__setattr__(self, "segments", segs)
        size = len(self.to_text().encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            raise PlanError(f"the plan text would be {size} bytes; at most {MAX_TEXT_BYTES} are allowed")

    def to_text(self) -> str:
        """Canonical plan text (one line per segment); ``parse_plan(p.to_text()) == p``."""
        return "\n".join(seg.to_text() for seg in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_ID, "version": FORMAT_VERSION, "segments": [s.to_dict() for s in self.segments]}

    def to_json(self) -> str:
        """The JSON form; ``Plan.from_json(p.to_json()) == p``."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        """Build and validate a plan from its JSON-shaped dict; errors name the segment (1-based)."""
        if not isinstance(d, Mapping):
            raise PlanError(f"a JSON plan must be an object, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in ("format", "version", "segments"))
        if unknown:
            raise PlanError(f"unknown key {_shorten(unknown[0])!r} in the JSON plan; valid keys: format, "
                            "segments, version", token=_shorten(unknown[0]))
        if "format" in d and d["format"] != FORMAT_ID:
            raise PlanError(f"'format' must be {FORMAT_ID!r}, got {_shorten(repr(d['format']))}",
                            token=_shorten(str(d["format"])))
        if "version" in d and (isinstance(d["version"], bool) or d["version"] != FORMAT_VERSION):
            raise PlanError(f"unsupported plan version {_shorten(repr(d['version']))}; this version of the "
                            f"pack reads version {FORMAT_VERSION}", token=_shorten(str(d["version"])))
        raw_segments = d.get("segments")
        if not isinstance(raw_segments, list):
            raise PlanError("a JSON plan needs 'segments': a list of {\"count\", \"method\", \"options\"}",
                            token="segments")
        if not raw_segments:
            _check_plan((), lambda i: {})
        if len(raw_segments) > MAX_SEGMENTS:
            raise PlanError(f"too many segments ({len(raw_segments)}); at most {MAX_SEGMENTS} are allowed",
                            segment=MAX_SEGMENTS + 1)
        segments = []
        for i, raw in enumerate(raw_segments):
            try:
                segments.append(_segment_from_dict(raw))
            except PlanError as exc:
                raise PlanError(_strip_where(exc), token=exc.token, segment=i + 1) from None
        return cls(tuple(segments))

    @classmethod
    def from_json(cls, s: str) -> Plan:
        """Parse the JSON form (size-limited, strict: no NaN/Infinity, no duplicate keys)."""
        if isinstance(s, (bytes, bytearray)):
            s = bytes(s).decode("utf-8", errors="replace")
        if not isinstance(s, str):
            raise PlanError(f"a JSON plan must be text, got {type(s).__name__}")
        size = len(s.encode("utf-8"))
        if size > MAX_JSON_BYTES:
            raise PlanError(f"the JSON plan is {size} bytes; at most {MAX_JSON_BYTES} are allowed")
        try:
            data = json.loads(s, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise PlanError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise PlanError("invalid JSON: nested too deeply") from None
        except PlanError:
            raise
        except ValueError as exc:  # Python's limit on the digits of an integer (4300)
            raise PlanError("invalid JSON: a number has too many digits" if "digits" in str(exc)
                            else f"invalid JSON: {exc}") from None
        return cls.from_dict(data)


def _strip_where(exc: PlanError) -> str:
    return str(exc).split(": ", 1)[1] if str(exc).startswith("plan") else str(exc)


def _reject_constant(name: str) -> Any:
    raise PlanError(f"JSON constant {name} is not allowed; use finite numbers", token=name)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PlanError(f"duplicate key {_shorten(key)!r} in the JSON plan", token=_shorten(key))
        out[key] = value
    return out


def _segment_from_dict(raw: Any) -> Segment:
    if not isinstance(raw, Mapping):
        raise PlanError(f"each segment must be an object with count, method and options, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in ("count", "method", "options"))
    if unknown:
        raise PlanError(f"unknown key {_shorten(unknown[0])!r}; valid keys: count, method, options",
                        token=_shorten(unknown[0]))
    for key in ("count", "method"):
        if key not in raw:
            raise PlanError(f"missing {key!r} (count: 10, \"40%\" or \"*\"; method: a method name)", token=key)
    count = raw["count"]
    if isinstance(count, float):  # JSON percentages are strings; a bare float is ambiguous
        raise PlanError(f"count {count!r} must be an integer step count, a string like \"40%\" or \"*\"",
                        token=_shorten(repr(count)))
    if not isinstance(raw["method"], str):
        raise PlanError(f"method must be a string, got {_shorten(repr(raw['method']))}",
                        token=_shorten(repr(raw["method"])))
    options = raw.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise PlanError(f"options must be an object like {{\"eta\": 1.0}}, got {type(options).__name__}",
                        token="options")
    seg = Segment(count, raw["method"], options)
    _check_segment(seg)  # the registry error comes with this segment's index
    return seg


# --------------------------------------------------------------------------- text parsing


def parse_plan(text: str) -> Plan:
    """Parse plan text (or a JSON object text starting with ``{``) into a validated :class:`Plan`."""
    if isinstance(text, Plan):
        return text
    if not isinstance(text, str):
        raise PlanError(f"a plan must be text, got {type(text).__name__}")
    text = text.removeprefix("\ufeff")  # a byte-order mark pasted from a file saved as "UTF-8 with BOM"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PlanError(f"the plan text has a character that is not valid Unicode text at position {e.start} "
                        "(a lone surrogate); retype or delete it") from None
    if text.lstrip().startswith("{"):
        return Plan.from_json(text)
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise PlanError(f"the plan text is {size} bytes; at most {MAX_TEXT_BYTES} are allowed")

    lines: list[int] = []  # text line of each segment
    segments: list[Segment] = []
    countless: list[int] = []  # indices of segments written without a count
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        body = raw_line.split("#", 1)[0]
        body = _PERCENT_SPACE_RE.sub("%", _EQUALS_RE.sub("=", body)).strip()
        if not body:
            continue
        if len(segments) == MAX_SEGMENTS:
            raise PlanError(f"too many segments; at most {MAX_SEGMENTS} lines may hold a segment",
                            line=lineno, token=_shorten(body.split()[0]))
        try:
            seg, has_count = _parse_line(body.split())
        except PlanError as exc:
            raise PlanError(_strip_where(exc), line=lineno, token=exc.token) from None
        if not has_count:
            countless.append(len(segments))
        lines.append(lineno)
        segments.append(seg)

    if countless and len(segments) > 1:
        i = countless[0]
        raise PlanError(f"{segments[i].method!r} has no count; only a one-line plan may leave it out. Write a "
                        "step count (10), a percentage (40%) or * (the remaining steps) before the method",
                        line=lines[i], token=segments[i].method)
    _check_plan(tuple(segments), lambda i: {"line": lines[i]} if i < len(lines) else {})
    return Plan(tuple(segments))


def _looks_like_count(token: str) -> bool:
    return token[0] in "0123456789+-.*" or token[0].isdigit() or token.endswith("%")


def _parse_line(tokens: list[str]) -> tuple[Segment, bool]:
    methods = _registry()
    has_count = _looks_like_count(tokens[0])
    count = _parse_count(tokens[0]) if has_count else None
    rest = tokens[1:] if has_count else tokens
    if not rest:
        raise PlanError(f"count {tokens[0]!r} has no method after it; valid methods: {_choices(methods)}",
                        token=tokens[0])
    method = rest[0]
    if "=" in method or not _NAME_RE.match(method):
        raise PlanError(f"expected a method name, got {_shorten(method)!r}; valid methods: {_choices(methods)}",
                        token=_shorten(method))
    if method not in methods:
        raise PlanError(f"unknown method {_shorten(method)!r}{_suggest(method, methods)}; "
                        f"valid methods: {_choices(methods)}", token=_shorten(method))
    options: dict[str, str] = {}
    for token in rest[1:]:
        key, eq, value = token.partition("=")
        if not eq or not key or not value:
            names = ", ".join(o.name for o in methods[method].options) or "none"
            raise PlanError(f"expected key=value after the method, got {_shorten(token)!r}; options of "
                            f"{method!r}: {names}", token=_shorten(token))
        if key in options:
            raise PlanError(f"option {_shorten(key)!r} is given twice", token=_shorten(token))
        options[key] = value
    return _check_segment(Segment(count, method, options)), has_count


# --------------------------------------------------------------------------- resolution


def _as_plan(plan: Plan | str) -> Plan:
    return plan if isinstance(plan, Plan) else parse_plan(plan)


def _step_counts(plan: Plan, n_steps: int) -> list[int]:
    """Steps of each segment (rule in docs/plan_format.md).

    Fixed counts are taken as written. Percentages are of ``n_steps`` with the largest-remainder
    method: their total is ``round_half_up(sum(p) * n / 100)`` (exactly ``n`` when they sum to
    100%), each gets ``floor(p * n / 100)`` and the leftover steps go one each to the largest
    fractional parts (ties: earlier line first). ``*`` takes what is left (possibly 0 steps).
    Without ``*`` the counts must add up to ``n_steps``.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 0 <= n_steps <= MAX_STEPS:
        raise PlanError(f"the number of steps must be a whole number from 0 to {MAX_STEPS}, got "
                        f"{_shorten(repr(n_steps))}", token=_shorten(str(n_steps)))
    counts = [s.count if isinstance(s.count, int) else 0 for s in plan.segments]
    fixed = sum(counts)
    exact = {i: _fraction(s.count) * n_steps / 100 for i, s in enumerate(plan.segments) if isinstance(s.count, float)}
    percent_total = math.floor(sum(exact.values(), Fraction(0)) + Fraction(1, 2))
    for i, share in exact.items():
        counts[i] = math.floor(share)
    leftover = percent_total - sum(counts[i] for i in exact)
    for i in sorted(exact, key=lambda i: (-(exact[i] - math.floor(exact[i])), i))[:leftover]:
        counts[i] += 1
    used = fixed + percent_total
    stars = [i for i, s in enumerate(plan.segments) if s.count is None]
    if used > n_steps:
        raise PlanError(f"impossible step split: the counts need {used} steps (fixed {fixed}, percentages "
                        f"{percent_total}) but the schedule has {n_steps}; lower the fixed counts or use more steps")
    if stars:
        counts[stars[0]] = n_steps - used
    elif used != n_steps:
        raise PlanError(f"impossible step split: the counts add up to {used} steps (fixed {fixed}, percentages "
                        f"{percent_total}) but the schedule has {n_steps}; write * as the count of one line to "
                        f"take the remaining steps, or make the counts add up to {n_steps}")
    return counts


def segment_bounds(plan: Plan | str, n_steps: int) -> list[tuple[int, int, Segment]]:
    """``(start, stop, segment)`` step ranges, one per segment in plan order; ``start == stop`` when a
    segment resolves to 0 steps (it is skipped)."""
    plan = _as_plan(plan)
    bounds = []
    start = 0
    for seg, count in zip(plan.segments, _step_counts(plan, n_steps), strict=True):
        bounds.append((start, start + count, seg))
        start += count
    return bounds


def resolve_plan(plan: Plan | str, n_steps: int) -> list[tuple[str, dict[str, Any]]]:
    """Per step ``i`` in ``0..n_steps-1``: the method name and its full options (defaults filled in)."""
    steps: list[tuple[str, dict[str, Any]]] = []
    for start, stop, seg in segment_bounds(plan, n_steps):
        options = seg.full_options()
        steps.extend((seg.method, dict(options)) for _ in range(stop - start))
    return steps
