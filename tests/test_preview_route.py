"""The preview route on a real ComfyUI 0.3.75 server: good input, and every kind of bad input gets a
clear 4xx (never a 500 or a hang), after which good requests still work."""

from __future__ import annotations

import http.client
import json
import math
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from sampler_core.loop import plan_nfe
from sampler_core.plan import parse_plan, resolve_plan
from schedules.ays_tables import AYS_TABLES

PREVIEW = "/sampler_scheduler/preview"
PLAN = "/sampler_scheduler/plan"
SD1_SIGMA_MIN, SD1_SIGMA_MAX = 0.0291675, 14.614642
TWO_PHASE = "40% dpmpp_2m_sde eta=1   # SDE early\n*   dpmpp_2m   # ODE late\n"


def ksampler_request(**overrides) -> dict:
    req = {"plan": TWO_PHASE, "steps": 10, "denoise": 1.0, "scheduler": "karras", "model_type": "sd1"}
    req.update(overrides)
    return req


def assert_bad(status: int, body: dict, expected_status: int = 400, field: str | None = None,
               mentions: str | None = None) -> None:
    assert status == expected_status, body
    assert isinstance(body.get("error"), str) and body["error"], body
    if field is not None:
        assert body.get("field") == field, body
    if mentions is not None:
        assert mentions.lower() in body["error"].lower(), body


def assert_good_preview(status: int, body: dict, steps: int) -> None:
    assert status == 200, body
    sig = body["sigmas"]
    assert len(sig) == steps + 1 and len(body["methods"]) == steps
    assert all(math.isfinite(s) for s in sig)
    assert all(a > b for a, b in zip(sig, sig[1:], strict=False)), sig


def test_preview_of_a_two_phase_plan_gives_decreasing_sigmas_a_method_per_step_and_the_exact_nfe(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request())
    assert_good_preview(status, body, 10)
    sig = body["sigmas"]
    assert sig[0] == pytest.approx(SD1_SIGMA_MAX, rel=1e-4) and sig[-2] == pytest.approx(SD1_SIGMA_MIN, rel=1e-4)
    assert sig[-1] == 0.0
    assert body["methods"] == ["dpmpp_2m_sde"] * 4 + ["dpmpp_2m"] * 6
    assert body["segments"] == [[0, 4, "dpmpp_2m_sde"], [4, 10, "dpmpp_2m"]]
    assert body["nfe"] == plan_nfe(resolve_plan(parse_plan(TWO_PHASE), 10), sig) == 10
    assert parse_plan(body["plan_text"]) == parse_plan(TWO_PHASE)
    assert parse_plan(body["plan_json"]) == parse_plan(TWO_PHASE)


def test_preview_nfe_counts_two_model_calls_per_heun_step_except_the_last(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(plan="* heun", steps=6))
    assert_good_preview(status, body, 6)
    assert body["nfe"] == 2 * 6 - 1
    status, mixed = comfy_server.post_json(PREVIEW, ksampler_request(plan="2 heun\n* euler", steps=6))
    assert_good_preview(status, mixed, 6)
    assert mixed["nfe"] == 2 * 2 + 4
    assert mixed["segments"] == [[0, 2, "heun"], [2, 6, "euler"]]


def test_preview_follows_steps_denoise_and_model_type(comfy_server):
    _, full = comfy_server.post_json(PREVIEW, ksampler_request(steps=20))
    _, half = comfy_server.post_json(PREVIEW, ksampler_request(steps=20, denoise=0.5))
    assert_good_preview(200, half, 20)
    assert half["sigmas"][0] < full["sigmas"][0] * 0.5  # starts part-way down the longer schedule
    status, flow = comfy_server.post_json(PREVIEW, ksampler_request(scheduler="normal", model_type="flow"))
    assert_good_preview(status, flow, 10)
    assert flow["sigmas"][0] == pytest.approx(1.0, abs=1e-3)


def test_ays_preview_gives_the_published_table(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, {"steps": 10, "denoise": 1.0, "preset": "SD1",
                                                    "model_type": "sd1", "plan": None})
    assert_good_preview(status, body, 10)
    assert body["sigmas"][:-1] == pytest.approx(list(AYS_TABLES["SD1"])[:-1], rel=1e-5)
    assert body["sigmas"][-1] == 0.0
    assert body["nfe"] == 10 and set(body["methods"]) == {"euler"}
    status, auto = comfy_server.post_json(PREVIEW, {"steps": 10, "preset": "auto", "model_type": "sdxl"})
    assert_good_preview(status, auto, 10)
    assert auto["sigmas"][:-1] == pytest.approx(list(AYS_TABLES["SDXL"])[:-1], rel=1e-5)


def test_ksampler_ays_scheduler_preview(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(scheduler="ays"))
    assert_good_preview(status, body, 10)
    assert body["sigmas"][:-1] == pytest.approx(list(AYS_TABLES["SD1"])[:-1], rel=1e-5)


@pytest.mark.parametrize("raw, mentions", [
    (b"{not json", "malformed json"),
    (b"", "empty"),
    (b"[1, 2]", "json object"),
    (b'{"steps": NaN, "scheduler": "karras"}', "nan"),
    (b"\xff\xfe\x00", "utf-8"),
    (b"[" * 5000 + b"]" * 5000, "json"),
])
def test_malformed_bodies_get_400_with_a_message(comfy_server, raw, mentions):
    status, data = comfy_server.request("POST", PREVIEW, raw)
    assert_bad(status, json.loads(data), mentions=mentions)


def test_oversize_body_gets_413(comfy_server):
    big = ksampler_request(plan="* euler" + " " * 40_000)
    status, data = comfy_server.request("POST", PREVIEW, json.dumps(big).encode())
    assert_bad(status, json.loads(data), 413, mentions="bytes")


def test_oversize_chunked_body_without_content_length_gets_413(comfy_server):
    url = urlparse(comfy_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = (b'{"plan": "' + b" " * 600 for _ in range(64))  # 38 KB
    conn.request("POST", PREVIEW, body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert_bad(resp.status, body, 413)


@pytest.mark.parametrize("overrides, field, mentions", [
    ({"scheduler": "no_such_scheduler"}, "scheduler", "no_such_scheduler"),
    ({"model_type": "sd9"}, "model_type", "sd9"),
    ({"scheduler": "<b>x</b>"}, "scheduler", "not a valid name"),
    ({"steps": 0}, "steps", "1 to 10000"),
    ({"steps": 10001}, "steps", "1 to 10000"),
    ({"steps": 20, "denoise": 1e-320}, "denoise", "at most 10000"),
    ({"steps": "20"}, "steps", "whole number"),
    ({"steps": True}, "steps", "whole number"),
    ({"steps": 2.5}, "steps", "whole number"),
    ({"denoise": 1.5}, "denoise", "0 to 1"),
    ({"denoise": -0.1}, "denoise", "0 to 1"),
    ({"denoise": "1"}, "denoise", "number"),
    ({"steps": 1000, "denoise": 0.05}, "denoise", "at most 10000"),
    ({"plan": 5}, "plan", "text"),
    ({"scheduler": 3}, "scheduler", "string"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"scheduler": None}, "scheduler", "scheduler"),
])
def test_wrong_types_ranges_and_unknown_names_get_400(comfy_server, overrides, field, mentions):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(**overrides))
    assert_bad(status, body, field=field, mentions=mentions)


def test_unknown_ays_preset_gets_400_naming_the_choices(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, {"steps": 10, "preset": "SD9", "model_type": "sd1"})
    assert_bad(status, body, field="preset", mentions="SD9")
    assert "SDXL" in body["error"]


def test_bad_plan_gets_400_with_line_and_token(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(plan="4 dpmpp_2m\n* eulr eta=0"))
    assert_bad(status, body, field="plan", mentions="unknown method")
    assert body["line"] == 2 and body["token"] == "eulr"
    assert "euler" in body["error"]  # the suggestion
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(plan="* dpmpp_2m_sde eta=lots"))
    assert_bad(status, body, field="plan", mentions="eta")
    assert body["line"] == 1 and body["token"] == "eta=lots"


@pytest.mark.parametrize("raw, mentions", [
    (b'{"steps": 1' + b"0" * 5000 + b', "scheduler": "karras"}', "too many digits"),
    (b'{"steps": 10, "steps": 20, "scheduler": "karras"}', "'steps' appears twice"),
])
def test_a_number_too_long_for_python_or_a_repeated_key_gets_400(comfy_server, raw, mentions):
    status, data = comfy_server.request("POST", PREVIEW, raw)
    assert_bad(status, json.loads(data), mentions=mentions)


@pytest.mark.parametrize("plan_json, mentions", [
    ('"1' + "0" * 5000 + ' euler"', "too large"),
    (r'"* euler \ud800"', "not valid unicode"),  # a lone surrogate, as JSON can carry it
    (r'"1 afs\n* dpmpp_2m"', "afs"),  # afs needs a step after it: with steps 1 a plan problem
])
def test_plans_the_parser_or_the_schedule_rejects_are_reported_on_the_plan_field(comfy_server, plan_json, mentions):
    body = json.dumps(ksampler_request(steps=1, plan="PLAN")).replace('"PLAN"', plan_json)
    status, data = comfy_server.request("POST", PREVIEW, body.encode())
    assert_bad(status, json.loads(data), field="plan", mentions=mentions)


def test_a_plan_json_with_a_number_too_long_for_python_names_the_plan(comfy_server):
    plan = '{"version": 1, "segments": [{"count": 1' + "0" * 5000 + ', "method": "euler"}]}'
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(plan=plan))
    assert_bad(status, body, field="plan", mentions="too many digits")
    assert "set_int_max_str_digits" not in body["error"]


def test_ays_preview_with_a_small_denoise_cuts_its_own_schedule_without_the_ksampler_limit(comfy_server):
    """AYS Sigmas cuts round(steps x denoise) steps from a steps-step table: no int(steps / denoise) schedule."""
    status, body = comfy_server.post_json(PREVIEW, {"steps": 10000, "denoise": 0.5, "preset": "SD1",
                                                    "model_type": "sd1"})
    assert_good_preview(status, body, 5000)
    status, body = comfy_server.post_json(PREVIEW, {"steps": 200, "denoise": 0.01, "preset": "SD1",
                                                    "model_type": "sd1"})
    assert_good_preview(status, body, 2)


@pytest.mark.parametrize("name", ["gmm (v2)", "mine, 3 steps", "schön"])
def test_a_preset_name_the_preset_files_allow_is_looked_up_not_refused(comfy_server, name):
    status, body = comfy_server.post_json(PREVIEW, {"steps": 10, "preset": name, "model_type": "sd1"})
    assert_bad(status, body, field="preset", mentions="unknown AYS preset")


def test_a_body_that_its_content_encoding_does_not_decode_gets_400(comfy_server):
    url = urlparse(comfy_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("POST", PREVIEW, body=b"not gzip at all", headers={"Content-Type": "application/json",
                                                                    "Content-Encoding": "gzip"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert_bad(resp.status, body, mentions="could not be read")


def test_preview_follows_the_ksampler_past_the_model_table(comfy_server):
    # simple at steps / denoise > 1000 repeats sigmas: dropped, as the KSampler node drops them
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(steps=30, denoise=0.02, scheduler="simple"))
    assert status == 200, body
    assert "repeated sigma(s) dropped" in body["schedule"]
    assert_good_preview(status, body, len(body["sigmas"]) - 1)
    assert len(body["sigmas"]) < 31
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(steps=2000))  # the nodes allow 10000 steps
    assert_good_preview(status, body, 2000)


def test_plan_that_cannot_split_the_steps_gets_400(comfy_server):
    status, body = comfy_server.post_json(PREVIEW, ksampler_request(plan="30 euler", steps=10))
    assert_bad(status, body, field="plan", mentions="impossible step split")


def test_plan_route_converts_text_to_json_and_back(comfy_server):
    status, out = comfy_server.post_json(PLAN, {"plan": TWO_PHASE})
    assert status == 200, out
    data = json.loads(out["plan_json"])
    assert data["segments"][0] == {"count": "40%", "method": "dpmpp_2m_sde", "options": {"eta": 1.0}}
    status, back = comfy_server.post_json(PLAN, {"plan": out["plan_json"]})
    assert status == 200 and back["plan_text"] == out["plan_text"]
    assert parse_plan(back["plan_text"]) == parse_plan(TWO_PHASE)
    status, as_object = comfy_server.post_json(PLAN, {"plan": data})
    assert status == 200 and as_object["plan_text"] == out["plan_text"]


def test_plan_route_rejects_bad_plans_and_fields(comfy_server):
    status, body = comfy_server.post_json(PLAN, {"plan": '{"segments": [{"count": "*", "method": "nope"}]}'})
    assert_bad(status, body, field="plan", mentions="unknown method")
    assert body["segment"] == 1 and body["token"] == "nope"
    status, body = comfy_server.post_json(PLAN, {"plan": ""})
    assert_bad(status, body, field="plan", mentions="empty")
    status, body = comfy_server.post_json(PLAN, {"text": "* euler"})
    assert_bad(status, body, mentions="unknown field")


def test_server_answers_good_requests_after_bad_ones_and_in_parallel(comfy_server):
    bad = [b"{", b"[]", json.dumps(ksampler_request(steps=-1)).encode(),
           json.dumps(ksampler_request(plan="* nope")).encode(), b"x" * 100_000]
    for raw in bad:
        status, _ = comfy_server.request("POST", PREVIEW, raw)
        assert status in (400, 413)

    def one(steps: int) -> tuple[int, dict]:
        return comfy_server.post_json(PREVIEW, ksampler_request(steps=steps))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(5, 37)))
    for steps, (status, body) in zip(range(5, 37), results, strict=True):
        assert_good_preview(status, body, steps)
    assert "sampler_scheduler: request" not in comfy_server.log()  # no input reached the catch-all
