"""ComfyUI nodes of the Sampler Scheduler pack (import only relatively: ComfyUI owns `nodes`)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import ays_optimize, ays_sigmas, ksampler, search, solver_mix, toy_model

# One feature per module; each module exports NODES.
NODE_MODULES = [
    ksampler,
    solver_mix,
    ays_sigmas,
    ays_optimize,
    toy_model,
    search,
]


def node_list() -> list[type[io.ComfyNode]]:
    return [node for module in NODE_MODULES for node in module.NODES]


class SamplerSchedulerExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()
