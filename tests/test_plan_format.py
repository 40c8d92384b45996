"""The plan format (sampler_core.plan): grammar, validation errors, JSON, round trips, step split."""

from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest

from sampler_core import plan as plan_mod
from sampler_core.plan import (
    MAX_SEGMENTS,
    MAX_TEXT_BYTES,
    Plan,
    PlanError,
    Segment,
    parse_plan,
    resolve_plan,
    segment_bounds,
)
from sampler_core.registry import ETA, METHODS, S_NOISE, OptionSpec, StepMethod

SDE = "zz_test_sde"
ODE = "zz_test_ode"


class _TestSDE(StepMethod):
    name = SDE
    stochastic = True
    options = (
        ETA,
        S_NOISE,
        OptionSpec("variant", str, "midpoint", "test choice", choices=("midpoint", "heun")),
        OptionSpec("order", int, 2, "test int", min=1, max=3),
        OptionSpec("fast", bool, False, "test bool"),
        OptionSpec("tag", str, "x", "free-form word"),
    )


class _TestODE(StepMethod):
    name = ODE


@pytest.fixture
def methods():
    """Register two throwaway methods for the test and remove them afterwards."""
    plan_mod._registry()  # load the pack's real methods first so they are not imported mid-test
    added = []
    for cls in (_TestSDE, _TestODE):
        assert cls.name not in METHODS
        METHODS[cls.name] = cls
        added.append(cls.name)
    yield
    for name in added:
        METHODS.pop(name, None)


def _error(text) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(text)
    return info.value


# --------------------------------------------------------------------------- grammar


def test_example_plan_parses_to_typed_segments(methods):
    plan = parse_plan(f"40% {SDE} eta=1   # SDE early\n*   {ODE}             # ODE late\n")
    assert plan == Plan((Segment(40.0, SDE, {"eta": 1.0}), Segment(None, ODE, {})))
    assert isinstance(plan.segments[0].options["eta"], float)
    assert [s.count_text() for s in plan.segments] == ["40%", "*"]


def test_count_forms_steps_percent_decimal_percent_and_star(methods):
    plan = parse_plan(f"10 {ODE}\n12.5% {ODE}\n* {SDE}")
    counts = [s.count for s in plan.segments]
    assert counts == [10, 12.5, None]
    assert type(counts[0]) is int and type(counts[1]) is float


def test_comments_blank_lines_tabs_and_spaces_around_equals_are_ignored(methods):
    text = f"# header comment\n\n  \t\n10\t{SDE}  eta = 0.5\ts_noise= 2 # trailing\n   # another\n* {ODE}#x\r\n"
    plan = parse_plan(text)
    assert plan == Plan((Segment(10, SDE, {"eta": 0.5, "s_noise": 2.0}), Segment(None, ODE)))


def test_percent_sign_may_be_separated_by_spaces(methods):
    assert parse_plan(f"40 % {SDE}\n* {ODE}").segments[0].count == 40.0


def test_single_method_without_count_means_every_step(methods):
    plan = parse_plan(f"  {SDE} eta=0  # only line\n")
    assert plan == parse_plan(f"* {SDE} eta=0")
    assert [m for m, _ in resolve_plan(plan, 7)] == [SDE] * 7


def test_line_without_count_is_rejected_when_plan_has_several_segments(methods):
    err = _error(f"10 {SDE}\n{ODE}")
    assert err.line == 2 and err.token == ODE
    assert "no count" in str(err) and "plan line 2" in str(err)


def test_option_values_are_typed_by_kind(methods):
    seg = parse_plan(f"* {SDE} eta=1e-1 s_noise=.5 order=+3 fast=YES variant=heun tag=a.b-c").segments[0]
    assert seg.options == {"eta": 0.1, "s_noise": 0.5, "order": 3, "fast": True, "variant": "heun", "tag": "a.b-c"}
    assert type(seg.options["order"]) is int and type(seg.options["fast"]) is bool


@pytest.mark.parametrize(("word", "value"), [("true", True), ("False", False), ("1", True), ("0", False),
                                             ("yes", True), ("no", False)])
def test_bool_option_words(methods, word, value):
    assert parse_plan(f"* {SDE} fast={word}").segments[0].options["fast"] is value


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "token", "needles"),
    [
        ("", None, None, ["empty"]),
        ("# only a comment\n\n", None, None, ["empty"]),
        (f"10 {SDE}\n5 eulerr_nope", 2, "eulerr_nope", ["unknown method", f"{ODE}, {SDE}"]),
        (f"* {SDE} etaa=1", 1, "etaa", ["unknown option", "did you mean 'eta'", "s_noise", "variant"]),
        (f"* {SDE} eta=nan", 1, "eta=nan", ["decimal number in [0, 100]"]),
        (f"* {SDE} eta=inf", 1, "eta=inf", ["decimal number"]),
        (f"* {SDE} eta=-1", 1, "eta=-1", ["in [0, 100]"]),
        (f"* {SDE} eta=1_0", 1, "eta=1_0", ["decimal number"]),
        (f"* {SDE} eta=0x10", 1, "eta=0x10", ["decimal number"]),
        (f"* {SDE} order=2.0", 1, "order=2.0", ["whole number in [1, 3]"]),
        (f"* {SDE} order=4", 1, "order=4", ["whole number in [1, 3]"]),
        (f"* {SDE} fast=maybe", 1, "fast=maybe", ["true/false"]),
        (f"* {SDE} variant=rk4", 1, "variant=rk4", ["one of midpoint, heun"]),
        (f"* {SDE} eta=1 eta=2", 1, "eta=2", ["twice"]),
        (f"* {SDE} eta", 1, "eta", ["key=value", "eta, s_noise, variant, order, fast, tag"]),
        (f"* {SDE} eta=", 1, "eta=", ["key=value"]),
        (f"10 {SDE}\n* {ODE}\n* {SDE}", 3, "*", ["only one line may use '*'"]),
        (f"60% {SDE}\n50% {ODE}", 2, "50%", ["110%", "over 100%"]),
        (f"120% {SDE}", 1, "120%", ["at most 100%"]),
        (f"0% {SDE}", 1, "0%", ["greater than 0%"]),
        (f"0.0000001% {SDE}", 1, "0.0000001%", ["decimals"]),
        (f"0 {SDE}", 1, "0", ["at least 1"]),
        (f"-3 {SDE}", 1, "-3", ["positive"]),
        (f"2.5 {SDE}", 1, "2.5", ["whole number", "2.5%"]),
        (f"** {SDE}", 1, "**", ["bad count"]),
        ("40%", 1, "40%", ["no method", ODE]),
        (f"10 eta=1 {SDE}", 1, "eta=1", ["expected a method name", SDE]),
    ],
)
def test_errors_name_line_token_and_valid_choices(methods, text, line, token, needles):
    err = _error(text)
    assert isinstance(err, ValueError)
    assert (err.line, err.token) == (line, token)
    message = str(err)
    if line is not None:
        assert f"plan line {line}:" in message
    for needle in needles:
        assert needle in message


def test_unknown_method_lists_all_registered_methods_sorted(methods):
    message = str(_error("* no_such_method"))
    listed = message.split("valid methods: ", 1)[1].split(", ")
    assert listed == sorted(METHODS)


def test_user_text_is_never_evaluated(methods, monkeypatch):
    def forbid(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr("builtins.eval", forbid)
    monkeypatch.setattr("builtins.exec", forbid)
    err = _error(f"* {SDE} tag=__import__('os').system('false')")
    assert err.token.startswith("tag=") and "a word" in str(err)
    assert _error(f"* {SDE} eta=1+1").token == "eta=1+1"


def test_non_text_input_raises_plan_error():
    with pytest.raises(PlanError, match="must be text"):
        parse_plan(["* euler"])  # type: ignore[arg-type]


def test_size_limits_on_segments_and_text(methods):
    at_limit = "\n".join(f"1 {ODE}" for _ in range(MAX_SEGMENTS))
    assert len(parse_plan(at_limit).segments) == MAX_SEGMENTS
    err = _error(at_limit + f"\n1 {ODE}")
    assert err.line == MAX_SEGMENTS + 1 and f"at most {MAX_SEGMENTS}" in str(err)
    too_long = f"* {ODE}\n" + "#" * MAX_TEXT_BYTES
    assert f"at most {MAX_TEXT_BYTES} bytes" in str(_error(too_long)).replace("are allowed", "bytes")
    with pytest.raises(PlanError, match="too many segments"):
        Plan(tuple(Segment(1, ODE) for _ in range(MAX_SEGMENTS + 1)))


# --------------------------------------------------------------------------- data model and JSON


def test_steps_and_percent_with_same_number_are_different_segments(methods):
    assert Segment(10, ODE) != Segment(10.0, ODE)
    assert parse_plan(f"10 {ODE}") != parse_plan(f"10% {ODE}")
    assert Segment(None, SDE, {"fast": True}) != Segment(None, SDE, {"fast": 1})


def test_plans_are_hashable_and_equal_plans_hash_equal(methods):
    a = parse_plan(f"40% {SDE} eta=1 fast=true\n* {ODE}")
    b = parse_plan(f"40% {SDE} fast=yes eta=1.0\n* {ODE}")
    assert a == b and hash(a) == hash(b)
    assert len({a, b, parse_plan(f"* {ODE}")}) == 2


def test_plan_built_in_code_is_validated_and_typed(methods):
    plan = Plan([Segment(5, SDE, {"eta": 1, "order": 3}), Segment("*", ODE)])
    assert type(plan.segments[0].options["eta"]) is float and plan.segments[1].count is None
    with pytest.raises(PlanError) as info:
        Plan((Segment(5, ODE), Segment(None, SDE, {"bogus": 1})))
    assert info.value.segment == 2 and info.value.token == "bogus"
    with pytest.raises(PlanError, match="at least 1"):
        Segment(0, ODE)
    with pytest.raises(PlanError, match="step count"):
        Segment(True, ODE)


def test_json_shape_matches_the_documented_format(methods):
    plan = parse_plan(f"3 {ODE}\n40% {SDE} eta=1 variant=heun\n* {ODE}")
    assert json.loads(plan.to_json()) == {
        "format": "sampler_scheduler.plan",
        "version": 1,
        "segments": [
            {"count": 3, "method": ODE, "options": {}},
            {"count": "40%", "method": SDE, "options": {"eta": 1.0, "variant": "heun"}},
            {"count": "*", "method": ODE, "options": {}},
        ],
    }
    assert parse_plan("  " + plan.to_json()) == plan


def _json_plan(*segments, **top) -> str:
    return json.dumps({"format": "sampler_scheduler.plan", "version": 1, "segments": list(segments), **top})


@pytest.mark.parametrize(
    ("text", "segment", "needle"),
    [
        (_json_plan({"count": 3, "method": ODE}, {"count": "*", "method": "nope"}), 2, "valid methods"),
        (_json_plan({"count": "*", "method": SDE, "options": {"eta": "high"}}), 1, "decimal number"),
        (_json_plan({"count": "*", "method": SDE, "options": {"eta": True}}), 1, "decimal number"),
        (_json_plan({"count": "*", "method": SDE, "options": {"order": 2.5}}), 1, "whole number"),
        (_json_plan({"count": 0.4, "method": ODE}), 1, "\"40%\""),
        (_json_plan({"count": "*", "method": ODE, "extra": 1}), 1, "unknown key 'extra'"),
        (_json_plan({"method": ODE}), 1, "missing 'count'"),
        (_json_plan({"count": 2, "method": ODE}, {"count": "*", "method": ODE}, {"count": "*", "method": ODE}),
         3, "only one line may use '*'"),
        (_json_plan(), None, "empty"),
        (_json_plan({"count": "*", "method": ODE}, version=2), None, "unsupported plan version"),
        (_json_plan({"count": "*", "method": ODE}, format="other"), None, "'format' must be"),
        (_json_plan({"count": "*", "method": ODE}, name="x"), None, "unknown key 'name'"),
        ('{"segments": [{"count": "*", "method": "' + SDE + '", "options": {"eta": NaN}}]}', None, "NaN"),
        ('{"segments": [], "segments": []}', None, "duplicate key"),
        ('{"segments": [', None, "invalid JSON"),
        ("[1, 2]", None, "JSON plan must be an object"),
        ("{" + "[" * 50000, None, "invalid JSON"),
    ],
)
def test_json_errors_name_the_segment(methods, text, segment, needle):
    with pytest.raises(PlanError) as info:
        Plan.from_json(text)
    assert info.value.segment == segment
    assert needle in str(info.value)
    if segment is not None:
        assert f"plan segment {segment}:" in str(info.value)


def test_oversize_json_is_rejected(methods):
    with pytest.raises(PlanError, match="at most"):
        Plan.from_json('{"segments": []' + " " * plan_mod.MAX_JSON_BYTES + "}")


def _random_plan(rng: random.Random) -> Plan:
    n = rng.randint(1, 12)
    star_at = rng.choice([None, rng.randrange(n)])
    budget = Fraction(100)
    segments = []
    for i in range(n):
        if i == star_at:
            count = None
        elif rng.random() < 0.5 or budget < Fraction(1, 10**6):
            count = rng.randint(1, 10**rng.randint(1, 4))
        else:
            places = rng.randint(0, plan_mod.PERCENT_DECIMALS)
            units = rng.randint(1, max(1, int(budget * 10**places)))
            share = Fraction(units, 10**places)
            if share > budget:
                count = rng.randint(1, 50)
            else:
                budget -= share
                count = float(share)
        method = rng.choice([SDE, ODE])
        options = {}
        if method == SDE:
            pool = {
                "eta": lambda: rng.choice([0.0, 1.0, rng.uniform(0, 100), rng.uniform(0, 1e-7), 1e-300]),
                "s_noise": lambda: round(rng.uniform(0, 3), rng.randint(0, 17)),
                "variant": lambda: rng.choice(["midpoint", "heun"]),
                "order": lambda: rng.randint(1, 3),
                "fast": lambda: rng.random() < 0.5,
                "tag": lambda: "".join(rng.choice("ab09_.:+/-") for _ in range(rng.randint(1, 8))),
            }
            for key in rng.sample(sorted(pool), rng.randint(0, len(pool))):
                options[key] = pool[key]()
        segments.append(Segment(count, method, options))
    return Plan(tuple(segments))


def test_text_and_json_round_trip_on_random_plans(methods):
    rng = random.Random(20240521)
    for _ in range(400):
        plan = _random_plan(rng)
        text = plan.to_text()
        assert parse_plan(text) == plan, text
        assert Plan.from_json(plan.to_json()) == plan
        assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
        assert parse_plan(text).to_text() == text  # canonical text is a fixed point


# --------------------------------------------------------------------------- step split


@pytest.mark.parametrize(
    ("text", "n_steps", "expected"),
    [
        (f"40% {SDE}\n* {ODE}", 10, [4, 6]),
        (f"33.3% {SDE}\n33.3% {ODE}\n33.4% {SDE}", 10, [3, 3, 4]),  # largest remainder: .34 wins
        (f"25% {SDE}\n25% {ODE}\n50% {SDE}", 10, [3, 2, 5]),  # tie of .5 remainders: earlier line first
        (f"2 {ODE}\n40% {SDE}\n* {ODE}", 15, [2, 6, 7]),  # fixed first, percent of all steps, * the rest
        (f"* {ODE}\n3 {SDE}", 3, [0, 3]),  # '*' may get 0 steps
        (f"50% {ODE}\n49.9% {SDE}", 10, [5, 5]),  # total rounds half up to 10 = n_steps
        (f"4 {ODE}\n6 {SDE}", 10, [4, 6]),
        (f"25% {SDE}\n* {ODE}", 10, [3, 7]),  # a percentage total of exactly x.5 rounds half up
        (f"5% {ODE}\n* {SDE}", 4, [0, 4]),  # a share that rounds to 0 is skipped
    ],
)
def test_step_split_rounding_rule(methods, text, n_steps, expected):
    bounds = segment_bounds(text, n_steps)
    assert [stop - start for start, stop, _ in bounds] == expected
    assert [seg for _, _, seg in bounds] == list(parse_plan(text).segments)


def test_percentages_summing_to_100_cover_every_step_count_exactly(methods):
    rng = random.Random(7)
    for _ in range(300):
        k = rng.randint(1, 8)
        cuts = sorted(rng.sample(range(1, 1000), k - 1))
        shares = [Fraction(b - a, 10) for a, b in zip([0, *cuts], [*cuts, 1000], strict=True)]
        plan = Plan(tuple(Segment(float(s), rng.choice([SDE, ODE])) for s in shares))
        for n in (1, 2, 3, 7, 10, 24, 61):
            counts = [stop - start for start, stop, _ in segment_bounds(plan, n)]
            assert sum(counts) == n
            for share, count in zip(shares, counts, strict=True):
                exact = share * n / 100
                assert math.floor(exact) <= count <= math.ceil(exact)


def test_segment_bounds_are_contiguous_and_match_resolve_plan(methods):
    plan = parse_plan(f"3 {ODE}\n25% {SDE} eta=0\n* {ODE}\n10% {SDE} order=3")
    bounds = segment_bounds(plan, 20)
    assert bounds[0][0] == 0 and bounds[-1][1] == 20
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    steps = resolve_plan(plan, 20)
    assert len(steps) == 20
    for start, stop, seg in bounds:
        assert all(steps[i][0] == seg.method for i in range(start, stop))


def test_resolve_plan_fills_in_all_default_options(methods):
    steps = resolve_plan(f"50% {SDE} eta=0.25 variant=heun\n* {ODE}", 4)
    assert steps[0] == (SDE, {"eta": 0.25, "s_noise": 1.0, "variant": "heun", "order": 2, "fast": False, "tag": "x"})
    assert steps[2] == (ODE, {})
    steps[0][1]["eta"] = 9.0  # each step has its own dict
    assert steps[1][1]["eta"] == 0.25


@pytest.mark.parametrize(
    ("text", "n_steps", "needles"),
    [
        (f"4 {ODE}\n4 {SDE}", 10, ["add up to 8", "has 10", "write * as the count"]),
        (f"5 {ODE}\n80% {SDE}\n* {ODE}", 10, ["need 13", "fixed 5", "percentages 8"]),
        (f"50% {ODE}\n40% {SDE}", 10, ["add up to 9"]),
        (f"12 {ODE}", 10, ["impossible step split"]),
    ],
)
def test_impossible_step_split_says_totals_and_fix(methods, text, n_steps, needles):
    with pytest.raises(PlanError) as info:
        resolve_plan(text, n_steps)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize("n_steps", [-1, 1.5, True, plan_mod.MAX_STEPS + 1])
def test_bad_step_numbers_are_rejected(methods, n_steps):
    with pytest.raises(PlanError, match="number of steps"):
        resolve_plan(f"* {ODE}", n_steps)


def test_zero_steps_resolve_to_nothing_unless_fixed_counts_need_steps(methods):
    assert resolve_plan(f"40% {SDE}\n* {ODE}", 0) == []
    with pytest.raises(PlanError, match="impossible"):
        resolve_plan(f"1 {SDE}\n* {ODE}", 0)


# --------------------------------------------------------------------------- every registered method


def test_every_registered_method_round_trips_and_resolves_with_its_defaults(methods):
    """The test methods and every method the pack registers (sampler_core.methods, once it exists)."""
    here = Path(plan_mod.__file__).parent
    real = [name for name in METHODS if not name.startswith("zz_test")]
    if (here / "methods").is_dir() or (here / "methods.py").is_file():
        assert real, "sampler_core.methods exists but registered no methods"
    assert {SDE, ODE} <= set(METHODS)
    for name, cls in METHODS.items():
        given = {o.name: o.default for o in cls.options}
        if getattr(cls, "first_step_only", False):  # afs: one first step, then another method
            plan = Plan((Segment(1, name, given), Segment(None, ODE)))
            assert parse_plan(plan.to_text()) == plan and Plan.from_json(plan.to_json()) == plan
            assert resolve_plan(plan, 4) == [(name, cls.defaults())] + [(ODE, METHODS[ODE].defaults())] * 3
            continue
        plan = Plan((Segment(50.0, name, given), Segment(None, name)))
        assert parse_plan(plan.to_text()) == plan and Plan.from_json(plan.to_json()) == plan
        assert parse_plan(name) == Plan((Segment(None, name),))
        assert resolve_plan(plan, 4) == [(name, cls.defaults())] * 4


def test_a_first_step_only_method_is_rejected_anywhere_but_a_one_step_first_line():
    assert resolve_plan(parse_plan("1 afs\n* euler"), 3)[0][0] == "afs"
    for text in ("1 euler\n1 afs\n* heun", "* afs", "afs", "2 afs\n* euler", "10% afs\n* euler"):
        with pytest.raises(PlanError, match="afs can only run on the first step"):
            parse_plan(text)


def test_an_option_combination_the_method_rejects_fails_when_parsing_with_its_line():
    with pytest.raises(PlanError, match=r"line 2.*eta > 0 \(SDE form\) needs pred=data"):
        parse_plan("2 euler\n* usf pred=noise eta=1")


@pytest.mark.parametrize("text, match", [
    ("1e1 euler", r"whole number like 10; a percentage like 40%"),
    ("+3 euler", r"whole number like 10; a percentage like 40%"),
    ("2.5 euler", r"write 2.5% for a percentage"),
    ("\uff14 euler", "non-ASCII digits"),
])
def test_count_errors_suggest_only_what_would_parse(text, match):
    with pytest.raises(PlanError, match=match):
        parse_plan(text)
    if "write 2.5%" in match:
        assert parse_plan("2.5% euler").segments[0].count == 2.5


def test_a_byte_order_mark_before_the_plan_is_ignored():
    assert parse_plan("\ufeff* euler") == parse_plan("* euler")


def test_a_count_too_large_for_any_run_and_a_lone_surrogate_get_plan_errors():
    with pytest.raises(PlanError, match="too large") as info:
        parse_plan("1" + "0" * 5000 + " euler")  # past Python's 4300-digit int limit: still a plan error
    assert info.value.line == 1
    with pytest.raises(PlanError, match="not valid Unicode"):
        parse_plan("* euler \ud800")
    assert parse_plan("999999999 euler").segments[0].count == 999_999_999
