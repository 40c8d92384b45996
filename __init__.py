"""Sampler Scheduler: per-step solver schedules, USF/S3 and Align Your Steps for ComfyUI.

ComfyUI imports this folder as a package and calls :func:`comfy_entrypoint` (schema API).
"""

from __future__ import annotations

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import SamplerSchedulerExtension
    from .nodes.preview_route import register_routes

    register_routes()  # before ComfyUI adds its routes, so /api/... copies exist too
    return SamplerSchedulerExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
