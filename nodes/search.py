"""Sampler Scheduler Search (S3): search a per-step plan + sigmas for this model, conditioning and NFE budget.

The denoiser the search evaluates is the ComfyUI model under the given conditioning and cfg: the whole
search runs inside one sampling call of ``comfy.samplers.CFGGuider`` (model loading, conditioning,
CFG, model patches as for any sampler), as a KSAMPLER whose function receives ComfyUI's wrapped model
``model(x, sigma, **extra_args) -> x0``. Results are saved as a named preset: the plan text and sigmas
(``<user dir>/sampler_scheduler/plans/<name>.json``) and the sigmas as an AYS schedule preset named
``searched-<name>`` that AYS Sigmas lists (by name only: ``auto`` never picks it); the frontend's Import plan
dialog lists the saved plans (:func:`saved_plans`, ``GET /sampler_scheduler/plans``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from ..sampler_core.search import SearchConfig, SearchResult, search_plan
from ..schedules.ays_tables import loglinear_interp
from ..schedules.presets import AYSPreset, PresetError, check_file_free, preset_filename, read_json_file, save_preset
from . import presets_store
from .ays_optimize import check_preset_name
from .comfy_sampler import comfy_noise_sampler, model_settings
from .schedule_logic import check_at_least, check_cfg, parse_user_plan

log = logging.getLogger("sampler_scheduler")

PLAN_PRESET_FORMAT = "sampler-scheduler-plan"
AYS_PREFIX = "searched-"


def plans_dir() -> str:
    """Folder of saved searched plans, next to the AYS schedules of :func:`presets_store.presets_dir`."""
    return os.path.join(os.path.dirname(presets_store.presets_dir()), "plans")


def ays_table(sigmas: torch.Tensor, sigma_min: float) -> list[float]:
    """The searched sigmas as an AYS table (n + 1 positive values; AYS Sigmas puts the final 0 back)."""
    sig = [float(v) for v in sigmas.tolist()[:-1]]
    return sig + [_after(sig[-1], sigma_min)]


def _after(last: float, sigma_min: float) -> float:
    """The table's value after its last positive sigma (replaced by 0 at the table's own step count): sigma_min as in
    the published tables, or half the last sigma when that is (within float32 precision of) sigma_min already."""
    return sigma_min if sigma_min < last * (1 - 1e-4) else last * 0.5


FINE_STEPS = (1000, 200)  # step counts of the fine table tried in turn (the first one float32 can hold)


def fine_ays_table(sigmas: torch.Tensor, sigma_min: float) -> tuple[int, list[float]] | None:
    """The searched schedule for AYS Sigmas at other step counts: its n positive sigmas log-linearly resampled to K
    (:data:`FINE_STEPS`), plus the table's last value. AYS Sigmas resamples a table's n + 1 values, the last one
    replaced by 0; from the n-step table alone the last sampled point of k > n steps would fall between the
    searched last sigma and the value after it, below the model's sigma_min when the search ended there. From the
    fine table every k <= K stays within the searched range. None when n < 2 or float32 cannot hold K points."""
    positive = sigmas[:-1].double()
    if len(positive) < 2:
        return None
    for k in FINE_STEPS:
        if k <= len(positive):
            return None
        fine = loglinear_interp(positive, k)
        table = [float(v) for v in fine] + [_after(float(fine[-1]), sigma_min)]
        t32 = torch.tensor(table, dtype=torch.float64).float()
        if bool((t32[1:] < t32[:-1]).all()) and bool((t32 > 0).all()):
            return k, table
    return None


def check_search_name(name: str) -> str:
    """Validate a Search preset name before the search runs: the AYS optimiser's name rule, and neither its plan
    file nor its AYS preset file may hold another preset (names that map to the same file name)."""
    check_preset_name(name)
    check_file_free(os.path.join(plans_dir(), preset_filename(name)), name, PlanPresetError)
    presets_store.check_name_free(AYS_PREFIX + name)
    return name


def save_search_preset(name: str, result: SearchResult, identity: dict, settings: dict, sigma_min: float) -> str:
    """Write ``plans/<name>.json`` (plan text, plan JSON, sigmas, search record) and the AYS preset
    ``searched-<name>``; returns the plan file's path."""
    check_search_name(name)
    os.makedirs(plans_dir(), exist_ok=True)
    record = result.to_dict()
    # the rows where the best fitness improved (and the last one): a file of bounded size, the curve intact
    # (every row, ~160 bytes each, would pass the plan file's size limit after ~12000 evaluations)
    rows = record["history"]
    record["history"] = [r for k, r in enumerate(rows)
                         if k == 0 or k == len(rows) - 1 or r.get("best") != rows[k - 1].get("best")]
    record["history_rows"] = "rows where the best fitness changed, and the last"
    data = {"format": PLAN_PRESET_FORMAT, "version": 1, "name": name, "model": identity, "search": settings,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **record}
    path = os.path.join(plans_dir(), preset_filename(name))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=plans_dir())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    n = len(result.sigmas) - 1
    tables = {n: ays_table(result.sigmas, sigma_min)}
    fine = fine_ays_table(result.sigmas, sigma_min)
    if fine is not None:
        tables[fine[0]] = fine[1]
    save_preset(presets_store.presets_dir(), AYSPreset(
        name=AYS_PREFIX + name, model={"searched_for": identity},
        conditioning={"source": "Sampler Scheduler Search", "plan": result.plan.to_text(), **settings,
                      **({"fine_table_steps": fine[0]} if fine is not None else {})},
        sigmas=tables))
    return path


class PlanPresetError(PresetError):
    """A saved plan file that cannot be used; the message names the file (its name only: the list goes to any
    HTTP client of the server) and the problem."""

    __module__ = "sampler_scheduler"  # ComfyUI shows module.Class in its error dialog: not the install path

    label = "saved plan"

    def __init__(self, source: str | os.PathLike, problem: str) -> None:
        super().__init__(os.path.basename(str(source)), problem)


def read_plan_preset(path: str | os.PathLike) -> dict:
    """One saved plan file (as :func:`save_search_preset` writes it), checked: its name, plan text (it must
    parse), NFE and creation time. :class:`PlanPresetError` says what is wrong."""
    data = read_json_file(path, PlanPresetError)
    if not isinstance(data, dict) or data.get("format") != PLAN_PRESET_FORMAT:
        raise PlanPresetError(path, f"is not a saved plan (no \"format\": \"{PLAN_PRESET_FORMAT}\")")
    name, plan, nfe = data.get("name"), data.get("plan"), data.get("nfe")
    if not isinstance(name, str) or not name:
        raise PlanPresetError(path, "has no name")
    if not isinstance(plan, str):
        raise PlanPresetError(path, "has no plan text")
    try:
        parse_user_plan(plan)
    except ValueError as exc:
        raise PlanPresetError(path, f"its plan does not parse: {exc}") from None
    created = data.get("created")
    return {"name": name, "plan": plan, "nfe": nfe if isinstance(nfe, int) and not isinstance(nfe, bool) else None,
            "created": created if isinstance(created, str) else None}


def saved_plans() -> dict[str, list[dict]]:
    """Every saved plan in :func:`plans_dir` (sorted by file name) for the frontend's import dialog, and per
    file that cannot be used its name and the problem (one bad file never hides the others)."""
    folder = plans_dir()
    try:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".json") and not f.startswith("."))
    except OSError:
        files = []
    plans, errors = [], []
    for f in files:
        try:
            plans.append(read_plan_preset(os.path.join(folder, f)))
        except PresetError as exc:
            errors.append({"file": f, "error": str(exc)})
    return {"plans": plans, "errors": errors}


def run_search(model, positive, negative, cfg: float, latent: dict, nfe: int, evaluations: int, seed: int,
               batch: int, reference_steps: int, restarts: int = 1) -> tuple[SearchResult, float]:
    """The search on ComfyUI's model under this conditioning and cfg (see the module docstring)."""
    shape = comfy.sample.fix_empty_latent_channels(model, latent["samples"]).shape
    lat = torch.zeros((batch, *shape[1:]), dtype=torch.float32)
    noise = comfy.sample.prepare_noise(lat, seed)
    ms = model.get_model_object("model_sampling")
    sigma_min, sigma_max = float(ms.sigma_min), float(ms.sigma_max)
    pbar = comfy.utils.ProgressBar(evaluations * restarts)
    out: dict = {}

    def progress(row: dict, total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        pbar.update_absolute(row["eval"], total)

    def search_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        extra = extra_args or {}
        settings = model_settings(model_k)
        kind = settings.pop("model_kind")

        def denoiser(xx: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return model_k(xx, s, **extra)

        out["result"] = search_plan(
            denoiser, model_kind=kind, sigma_min=sigma_min, sigma_max=sigma_max, nfe=nfe, x_start=x,
            config=SearchConfig(evaluations=evaluations, restarts=restarts), seed=seed, reference_steps=reference_steps,
            sample_kwargs={"noise_sampler_factory": comfy_noise_sampler, **settings}, progress=progress,
            step_hook=comfy.model_management.throw_exception_if_processing_interrupted)
        return x

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    guider.sample(noise, lat, comfy.samplers.KSAMPLER(search_fn), torch.tensor([sigma_max, 0.0]),
                  disable_pbar=True, seed=seed)
    return out["result"], sigma_min


class SamplerSchedulerSearch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerSearch",
            display_name="Sampler Scheduler Search (S3)",
            category="sampling/custom_sampling/sampler_scheduler",
            description=(
                "Searches the per-step solver plan and the sigmas that best reproduce a high-step reference run "
                "of this model (same conditioning and cfg) within an exact NFE budget. Connect 'plan' to the "
                "plan input of the KSampler / Solver Mix and 'sigmas' to their sigmas; both are saved as a "
                "named preset (the sigmas also appear in AYS Sigmas as 'searched-<name>', the plan in the "
                "KSampler's and Solver Mix's Import plan dialog)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model to search a plan for"),
                io.Conditioning.Input("positive", tooltip="Conditioning the plan is searched under"),
                io.Conditioning.Input("negative", tooltip="Negative conditioning (used when cfg is not 1)"),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale the plan will run with"),
                io.Latent.Input("latent", tooltip="Only its shape is used (the size the plan is searched for)"),
                io.Int.Input("nfe", default=6, min=1, max=100, tooltip="Model calls of the plan (met exactly)"),
                io.Int.Input("evaluations", default=200, min=8, max=100000,
                             tooltip="Search budget: sampling runs evaluated for real (each costs 'nfe' calls)"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the search and of its noise samples (same seed, same result; a new node "
                                     "starts with 'fixed' after generate, so a queue does not search again)"),
                io.String.Input("preset_name", default="searched",
                                tooltip="Saved as this name (empty: not saved)"),
                io.Int.Input("batch", default=4, min=1, max=256, optional=True,
                             tooltip="Noise samples the error is measured on"),
                io.Int.Input("reference_steps", default=100, min=10, max=2000, optional=True,
                             tooltip="Steps of the reference run (usf order 3) the plans are compared with"),
                io.Int.Input("restarts", default=1, min=1, max=16, optional=True,
                             tooltip="Independent search runs (seeds seed, seed + 1, ...), each with 'evaluations'; "
                                     "the plan with the lowest error is kept. More robust, proportionally slower"),
            ],
            outputs=[io.String.Output(display_name="plan"), io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, latent, nfe, evaluations, seed, preset_name, batch=4,
                reference_steps=100, restarts=1) -> io.NodeOutput:
        check_cfg(cfg)
        check_at_least(nfe=(nfe, 1), evaluations=(evaluations, 8), batch=(batch, 1),
                       reference_steps=(reference_steps, 10), restarts=(restarts, 1), seed=(seed, 0))
        name = preset_name.strip()
        if name:
            check_search_name(name)  # before the search: a bad name must not cost a whole search
        result, sigma_min = run_search(model, positive, negative, cfg, latent, nfe, evaluations, seed, batch,
                                       reference_steps, restarts)
        text = result.plan.to_text()
        best_base = min((v for v in result.baselines.values()), default=float("nan"))
        msg = (f"NFE {result.nfe}, {len(result.sigmas) - 1} steps: RMSE to the reference {result.fitness:.4g} "
               f"(best single method on Karras: {best_base:.4g}); {result.evaluations} evaluations"
               + (f" in {restarts} runs (the best kept)" if restarts > 1 else "") + f", {result.seconds:.1f} s")
        if result.evaluations < evaluations * restarts:
            msg += f" (every distinct plan for NFE {nfe} was evaluated: the search space is smaller than the budget)"
        if name:
            settings = {"nfe": nfe, "evaluations": evaluations, "seed": seed, "cfg": cfg, "batch": batch,
                        "reference_steps": reference_steps, "restarts": restarts,
                        "latent_shape": list(latent["samples"].shape[1:])}
            path = save_search_preset(name, result, presets_store.model_identity(model), settings, sigma_min)
            msg += f"; saved {path} and AYS preset {AYS_PREFIX + name!r}"
        log.info("Sampler Scheduler Search: %s; plan: %s", msg, text.replace("\n", " | "))
        return io.NodeOutput(text, result.sigmas.clone(), ui={"text": [msg + "\n" + text]})


NODES = [SamplerSchedulerSearch]
