"""HTTP routes for the frontend's schedule preview (``web/sampler_scheduler.js``).

``POST /sampler_scheduler/preview`` answers what a node will run, computed by the same
function the nodes use (:func:`.schedule_logic.preview_schedule`), so what is drawn is what runs::

    request:  {"plan": "40% dpmpp_2m_sde eta=1\\n* dpmpp_2m" | null, "steps": 20, "denoise": 1.0,
               "scheduler": "karras" | "ays" | null, "preset": "auto" | null, "model_type": "sd1"}
    response: {"sigmas": [...], "methods": [...], "segments": [[start, stop, method], ...], "nfe": 27,
               "schedule": "...", "plan_text": "...", "plan_json": "..."}

``POST /sampler_scheduler/plan`` converts plan text or JSON to both canonical forms (export/import):
``{"plan": "..."}`` -> ``{"plan_text": "...", "plan_json": "..."}``.
``GET /sampler_scheduler/options`` lists the preview model types and schedulers.
``GET /sampler_scheduler/plans`` lists the plans the Search node saved (name, plan text, NFE, creation time)
and, per saved file that cannot be used, its name and the problem: the import dialog offers them.

Bad input of any kind is answered with status 400 (413 for a body over :data:`MAX_BODY_BYTES`) and
``{"error": message, "field": ..., "line": ..., "token": ...}``; the computation runs in a worker
thread with a time limit, so a request never blocks the server's event loop or hangs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("sampler_scheduler")

ROUTE_PREVIEW = "/sampler_scheduler/preview"
ROUTE_PLAN = "/sampler_scheduler/plan"
ROUTE_OPTIONS = "/sampler_scheduler/options"
ROUTE_PLANS = "/sampler_scheduler/plans"
MAX_BODY_BYTES = 32 * 1024
MAX_STEPS = 10_000  # the nodes' own limit
MAX_SCHEDULE_STEPS = 10_000  # KSampler's denoise computes int(steps / denoise) sigmas before cutting
MAX_NAME_CHARS = 100
READ_TIMEOUT_S = 10.0
COMPUTE_TIMEOUT_S = 20.0
DEFAULT_MODEL_TYPE = "sd1"
_FIELDS = {"plan", "steps", "denoise", "scheduler", "preset", "model_type"}
_NAME_RE = re.compile(r"[A-Za-z0-9_.+\- ]+\Z")

_executor: ThreadPoolExecutor | None = None
_registered_on: set[int] = set()


class BadRequest(ValueError):
    """Input the route rejects; becomes a JSON error response with ``status``."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None, line: int | None = None,
                 token: str | None = None, segment: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.line = line
        self.token = token
        self.segment = segment

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "line": self.line, "token": self.token,
                "segment": self.segment}


def _from_value_error(exc: ValueError, field: str | None) -> BadRequest:
    """A (Plan)Error from the pack's logic as a 400, keeping the plan location when there is one."""
    line = getattr(exc, "line", None)
    segment = getattr(exc, "segment", None)
    token = getattr(exc, "token", None)
    is_plan = (line is not None or segment is not None or type(exc).__name__ == "PlanError"
               or getattr(exc, "about_plan", False))
    return BadRequest(str(exc), field="plan" if is_plan else field, line=line, token=token, segment=segment)


# --------------------------------------------------------------------------- request parsing


async def read_json_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON value; 413 above ``limit`` bytes (declared or actual), 400 when malformed."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"request body is {request.content_length} bytes; at most {limit} are allowed", status=413)
    buf = bytearray()

    async def read_all() -> None:
        while True:
            chunk = await request.content.read(limit + 1 - len(buf))
            if not chunk:
                return
            buf.extend(chunk)
            if len(buf) > limit:
                raise BadRequest(f"request body is over {limit} bytes", status=413)

    try:
        await asyncio.wait_for(read_all(), READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise BadRequest(f"request body not received within {READ_TIMEOUT_S:g} s", status=408) from None
    except (RequestPayloadError, HttpProcessingError) as exc:  # e.g. a body its Content-Encoding does not decode
        raise BadRequest(f"request body could not be read: {exc}") from None
    try:
        text = bytes(buf).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8 text") from None
    if not text.strip():
        raise BadRequest("request body is empty; send a JSON object")
    from ..schedules.presets import json_problem, no_duplicate_keys

    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except BadRequest:  # NaN / Infinity (_reject_constant)
        raise
    except ValueError as exc:  # a key twice in one object, Python's limit on the digits of an integer
        raise BadRequest(f"malformed JSON: {json_problem(exc)}") from None


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"JSON constant {name} is not allowed; use finite numbers")


def _preset_name(obj: dict[str, Any]) -> str | None:
    """A preset name as the preset files allow it (1..100 printable characters, no path separator); whether such a
    preset exists is checked when the preview is computed."""
    value = obj.get("preset")
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'preset' must be a string, got {type(value).__name__}", field="preset")
    from ..schedules.presets import name_problem

    if name_problem(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise BadRequest(f"'preset' {shown!r} is not a valid preset name", field="preset", token=shown)
    return value


def _name(obj: dict[str, Any], key: str, *, required: bool, default: str | None = None) -> str | None:
    value = obj.get(key, default)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required", field=key)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, got {type(value).__name__}", field=key)
    if not value or len(value) > MAX_NAME_CHARS or not _NAME_RE.match(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise BadRequest(f"'{key}' {shown!r} is not a valid name", field=key, token=shown)
    return value


def _plan_field(obj: dict[str, Any], *, required: bool) -> str | None:
    plan = obj.get("plan")
    if plan is None:
        if required:
            raise BadRequest("'plan' is required: plan text or its JSON form", field="plan")
        return None
    if isinstance(plan, dict):  # the JSON form given as an object
        return json.dumps(plan)
    if not isinstance(plan, str):
        raise BadRequest(f"'plan' must be text (or a JSON plan object), got {type(plan).__name__}", field="plan")
    return plan


def validate_preview_request(obj: Any) -> dict[str, Any]:
    """Checked keyword arguments for ``preview_schedule`` (types, ranges, name syntax; names are checked
    against the real choices by ``preview_schedule`` itself)."""
    if not isinstance(obj, dict):
        raise BadRequest(f"request must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k not in _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0][:40]!r}; valid fields: {', '.join(sorted(_FIELDS))}",
                         field=unknown[0][:40])
    steps = obj.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise BadRequest(f"'steps' must be a whole number from 1 to {MAX_STEPS}", field="steps")
    if not 1 <= steps <= MAX_STEPS:
        raise BadRequest(f"'steps' must be from 1 to {MAX_STEPS}, got {steps}", field="steps")
    denoise = obj.get("denoise", 1.0)
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not math.isfinite(denoise):
        raise BadRequest("'denoise' must be a number from 0 to 1", field="denoise")
    if not 0.0 <= denoise <= 1.0:
        raise BadRequest(f"'denoise' must be from 0 to 1, got {denoise:g}", field="denoise")
    scheduler = _name(obj, "scheduler", required=False)
    preset = _preset_name(obj)
    # the KSampler's denoise computes int(steps / denoise) sigmas first; AYS Sigmas only cuts steps + 1 of them
    if scheduler is not None and 0.0 < denoise < 0.9999 and steps / denoise > MAX_SCHEDULE_STEPS:
        raise BadRequest(f"denoise {denoise:g} with {steps} steps needs a schedule of {steps / denoise:.4g} steps; "
                         f"the preview computes at most {MAX_SCHEDULE_STEPS} (raise denoise or lower steps)",
                         field="denoise")
    if scheduler is None and preset is None:
        raise BadRequest("give a 'scheduler' (KSampler) or a 'preset' (AYS sigmas)", field="scheduler")
    return {
        "plan_text": _plan_field(obj, required=False),
        "steps": steps,
        "denoise": float(denoise),
        "scheduler": scheduler,
        "preset": preset,
        "model_type": _name(obj, "model_type", required=False, default=DEFAULT_MODEL_TYPE),
    }


# --------------------------------------------------------------------------- computation


def _logic():
    from . import schedule_logic

    return schedule_logic


def saved_tables(preset: str | None, steps: int) -> dict[str, list[float]] | None:
    """The saved optimised AYS schedule named ``preset`` (the preview has no model, so ``auto`` gets none)."""
    if preset is None or preset == "auto":
        return None
    from . import presets_store

    return presets_store.saved_for(None, steps, preset) or None


def compute_preview(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run ``preview_schedule`` and check its output is plain JSON data; ValueError -> BadRequest."""
    logic = _logic()
    if kwargs["model_type"] not in logic.PREVIEW_MODEL_TYPES:
        raise BadRequest(f"unknown model_type {kwargs['model_type']!r}; choose one of "
                         f"{', '.join(logic.PREVIEW_MODEL_TYPES)}", field="model_type", token=kwargs["model_type"])
    if kwargs["scheduler"] is not None and kwargs["scheduler"] not in logic.scheduler_names():
        raise BadRequest(f"unknown scheduler {kwargs['scheduler']!r}; choose one of "
                         f"{', '.join(logic.scheduler_names())}", field="scheduler", token=kwargs["scheduler"])
    field = "preset" if kwargs["preset"] is not None else "scheduler"
    try:
        out = logic.preview_schedule(**kwargs, saved=saved_tables(kwargs["preset"], kwargs["steps"]))
    except ValueError as exc:
        raise _from_value_error(exc, field) from None
    result = json.loads(json.dumps(out, allow_nan=False))
    result["steps"] = len(result["methods"])
    result["model_type"] = kwargs["model_type"]
    return result


def convert_plan(obj: Any) -> dict[str, Any]:
    """``{"plan": text or JSON}`` -> both canonical forms of the plan."""
    if not isinstance(obj, dict):
        raise BadRequest(f"request must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k != "plan")
    if unknown:
        raise BadRequest(f"unknown field {unknown[0][:40]!r}; the only field is 'plan'", field=unknown[0][:40])
    text = _plan_field(obj, required=True)
    logic = _logic()
    try:
        plan = logic.parse_user_plan(text)
    except ValueError as exc:
        raise _from_value_error(exc, "plan") from None
    return {"plan_text": plan.to_text(), "plan_json": plan.to_json()}


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sampler_scheduler_preview")
    return _executor


async def _run(fn, arg, what: str = "the preview") -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(_pool(), fn, arg), COMPUTE_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise BadRequest(f"{what} took longer than {COMPUTE_TIMEOUT_S:g} s", status=503) from None


def _error_response(exc: BadRequest) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


async def _answer(request: web.Request, work, what: str = "compute the preview") -> web.Response:
    """Common handler body: every failure becomes a JSON error response (never a 500)."""
    try:
        return web.json_response(await work(request))
    except BadRequest as exc:
        return _error_response(exc)
    except Exception as exc:  # a bug, or an input our checks missed: still a clear answer, and logged
        log.exception("sampler_scheduler: request %s failed", request.path)
        return _error_response(BadRequest(f"could not {what}: {type(exc).__name__}: {exc}"))


async def handle_preview(request: web.Request) -> web.Response:
    async def work(req: web.Request) -> dict[str, Any]:
        kwargs = validate_preview_request(await read_json_body(req))
        return await _run(compute_preview, kwargs)

    return await _answer(request, work)


async def handle_plan(request: web.Request) -> web.Response:
    async def work(req: web.Request) -> dict[str, Any]:
        return await _run(convert_plan, await read_json_body(req))

    return await _answer(request, work)


async def handle_options(request: web.Request) -> web.Response:
    async def work(req: web.Request) -> dict[str, Any]:
        logic = _logic()
        return {"model_types": list(logic.PREVIEW_MODEL_TYPES), "default_model_type": DEFAULT_MODEL_TYPE,
                "schedulers": list(logic.scheduler_names())}

    return await _answer(request, work)


def list_saved_plans(_: Any = None) -> dict[str, Any]:
    from .search import saved_plans

    return saved_plans()


async def handle_plans(request: web.Request) -> web.Response:
    async def work(req: web.Request) -> dict[str, Any]:
        return await _run(list_saved_plans, None, "listing the saved plans")

    return await _answer(request, work, "list the saved plans")


def register_routes() -> bool:
    """Add the routes to ComfyUI's running PromptServer (once); False when there is none (e.g. in-process
    tests). ``server`` is looked up, never imported: importing it outside ComfyUI's main has side effects."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(instance, "routes", None)
    if routes is None:
        return False
    if id(instance) in _registered_on:
        return True
    routes.post(ROUTE_PREVIEW)(handle_preview)
    routes.post(ROUTE_PLAN)(handle_plan)
    routes.get(ROUTE_OPTIONS)(handle_options)
    routes.get(ROUTE_PLANS)(handle_plans)
    _registered_on.add(id(instance))
    return True
