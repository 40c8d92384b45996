"""Solver Mix (per segment): a plan -> SAMPLER for SamplerCustom / SamplerCustomAdvanced."""

from __future__ import annotations

from comfy_api.latest import io

from .comfy_sampler import plan_sampler
from .ksampler import PLAN_TOOLTIP
from .schedule_logic import DEFAULT_PLAN, parse_user_plan


class SamplerSchedulerSolverMix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerSolverMix",
            display_name="Solver Mix (per segment)",
            category="sampling/custom_sampling/samplers",
            description=(
                "A SAMPLER that runs a different solver on each segment of the sigmas it is given. Percentages "
                "and * are resolved against the number of steps at run time; the NFE is printed when it runs."
            ),
            inputs=[io.String.Input("plan", multiline=True, default=DEFAULT_PLAN, tooltip=PLAN_TOOLTIP)],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, plan: str) -> io.NodeOutput:
        parsed = parse_user_plan(plan)
        return io.NodeOutput(plan_sampler(parsed), ui={"text": [parsed.to_text()]})


NODES = [SamplerSchedulerSolverMix]
