"""ComfyUI nodes of the Sampler Scheduler pack (import only relatively: ComfyUI owns `nodes`)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import ays_sigmas, ksampler, solver_mix, toy_model


def node_list() -> list[type[io.ComfyNode]]:
    return [*ksampler.NODES, *solver_mix.NODES, *ays_sigmas.NODES, *toy_model.NODES]


class SamplerSchedulerExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()
