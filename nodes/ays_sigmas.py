"""Align Your Steps Sigmas: published tables, saved optimised schedules, or a fallback for any model."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..schedules.ays_tables import AYS_TABLES, ays_sigmas
from . import presets_store
from .schedule_logic import ays_table_for, model_family_table

log = logging.getLogger("sampler_scheduler")


def preset_options() -> list[str]:
    return ["auto", *AYS_TABLES, *presets_store.preset_names()]


class SamplerSchedulerAYSSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerAYSSigmas",
            display_name="Align Your Steps Sigmas",
            category="sampling/custom_sampling/schedulers",
            description=(
                "Align Your Steps schedules. auto: the published table for SD1/SDXL/SVD models; otherwise a saved "
                "optimised schedule for this model, or the SD1 table's time spacing mapped onto the model's own "
                "sigma range (the console says which)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model whose sigma range, published table or saved "
                                                "schedules are used"),
                io.Combo.Input("preset", options=preset_options(), default="auto",
                               tooltip="auto picks by model type; published tables; schedules saved by the "
                                       "AYS optimiser"),
                io.Int.Input("steps", default=10, min=1, max=10000,
                             tooltip="Number of steps: the table as published at its own step count, otherwise "
                                     "resampled log-linearly"),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="< 1 keeps the last round(steps x denoise) steps, as ComfyUI's AYS node"),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, **_: object) -> tuple:
        """Saved presets change outside the graph (the optimiser, the Search node, a hand edit): run again when
        the preset folder changed, not only when an input did."""
        return presets_store.folder_signature()

    @classmethod
    def execute(cls, model, preset: str, steps: int, denoise: float) -> io.NodeOutput:
        ms = model.get_model_object("model_sampling")
        saved = presets_store.saved_for(model, steps, preset)
        table, used = ays_table_for(ms, preset, model_family_table(model), saved)
        sigmas = ays_sigmas(table, steps, denoise)
        msg = f"AYS: {used}; {len(sigmas) - 1 if len(sigmas) else 0} steps (NFE {max(len(sigmas) - 1, 0)} with euler)"
        log.info("Sampler Scheduler %s", msg)
        return io.NodeOutput(sigmas, ui={"text": [msg]})


NODES = [SamplerSchedulerAYSSigmas]
