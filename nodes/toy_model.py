"""Built-in models as real ComfyUI models: no checkpoint file, no download.

``make_toy_model(kind)`` builds a ``comfy.model_base.BaseModel`` whose ``diffusion_model``
is an exact (Gaussian mixture) or shipped (digits) denoiser, wrapped in a real
``ModelPatcher``. ComfyUI hands the exact sigma to the network in
``transformer_options["sigmas"]``; the network returns what the model type expects:
EPS: eps = (x - D) / sigma with x = x_in * sqrt(sigma^2 + 1) (ComfyUI's EPS input scaling);
FLOW (CONST): v = (x - D) / sigma with x = x_in.
"""

from __future__ import annotations

import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models_base
import torch
from comfy_api.latest import io

from ..sampler_core.models import gmm as gmm_lib

TOY_KINDS = ("gmm-eps", "gmm-flow", "digits")
FLOW_SHIFT = 3.0  # SD3-like shifted flow schedule


class ToyLatentFormat(comfy.latent_formats.LatentFormat):
    """4-channel latent, no scaling; a fixed channel -> RGB map for previews."""

    scale_factor = 1.0
    latent_channels = 4

    def __init__(self):
        self.latent_rgb_factors = [[0.45, 0.10, 0.05], [0.05, 0.45, 0.10], [0.10, 0.05, 0.45], [0.15, 0.15, 0.15]]
        self.latent_rgb_factors_bias = [0.0, 0.0, 0.0]


class ToyNet(torch.nn.Module):
    """Diffusion-model stand-in: an exact or learned VE denoiser D(x, sigma), returned as eps or v."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in TOY_KINDS:
            raise ValueError(f"unknown built-in model {kind!r}; choose one of {', '.join(TOY_KINDS)}")
        self.kind = kind
        self.flow = kind == "gmm-flow"
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self._net = None
        self._gmm: dict[tuple, gmm_lib.GaussianMixture] = {}
        if kind == "digits":
            from ..sampler_core.models.digits import load_digits_denoiser

            self._net = load_digits_denoiser()

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def mixture(self, shape: tuple[int, ...], device: torch.device) -> gmm_lib.GaussianMixture:
        key = (tuple(shape), str(device))
        if key not in self._gmm:
            self._gmm[key] = gmm_lib.for_latent_cached(tuple(shape)).to(device)
        return self._gmm[key]

    def ve_denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self._net is not None:
            self._net.to(x.device)
            return self._net.denoise(x, sigma)
        return self.mixture(x.shape[1:], x.device).denoise(x, sigma)

    @staticmethod
    def batch_sigmas(xc: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        """The exact sigma of every row of ``xc`` (ComfyUI passes it in ``transformer_options["sigmas"]``)."""
        sigma = transformer_options["sigmas"].to(xc.device, torch.float32).reshape(-1)
        if sigma.numel() != xc.shape[0]:  # cond and uncond batched together: sigmas of one chunk
            sigma = sigma.repeat(xc.shape[0] // sigma.numel())
        return sigma

    def forward(self, xc, t, context=None, control=None, transformer_options={}, **kwargs):
        if xc.ndim != 4:
            raise ValueError(f"the built-in {self.kind} model takes image latents [batch, channels, height, width], "
                             f"got a {xc.ndim}-D latent of shape {list(xc.shape)}: use the Built-in Test Model "
                             "node's LATENT or an empty image latent")
        sigma = self.batch_sigmas(xc, transformer_options)
        s = sigma.reshape(-1, *([1] * (xc.ndim - 1)))
        xc = xc.float()
        if self.flow:
            x = xc
            d = self.mixture(x.shape[1:], x.device).denoise_flow(x, sigma).float()
        else:
            x = xc * (s**2 + 1.0).sqrt()
            d = self.ve_denoise(x, sigma).float()
        return (x - d) / s


class ToyConfig(comfy.supported_models_base.BASE):
    unet_config = {"disable_unet_model_creation": True}
    unet_extra_config = {}
    latent_format = ToyLatentFormat
    memory_usage_factor = 0.01
    supported_inference_dtypes = [torch.float32]


def make_toy_model(kind: str) -> comfy.model_patcher.ModelPatcher:
    """A real ComfyUI MODEL (ModelPatcher) for one of :data:`TOY_KINDS`."""
    net = ToyNet(kind)
    config = ToyConfig({"disable_unet_model_creation": True})
    if net.flow:
        config.sampling_settings = {"shift": FLOW_SHIFT, "multiplier": 1000}
        model_type = comfy.model_base.ModelType.FLOW
    else:
        model_type = comfy.model_base.ModelType.EPS
    model = comfy.model_base.BaseModel(config, model_type=model_type, device=torch.device("cpu"))
    model.diffusion_model = net
    model.toy_kind = kind
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def empty_conditioning() -> list:
    """A CONDITIONING the built-in models accept (they are unconditional)."""
    return [[torch.zeros(1, 1, 8), {}]]


def decode_latent(samples: torch.Tensor, kind: str) -> torch.Tensor:
    """LATENT [B,4,H,W] -> IMAGE [B, 8H, 8W, 3] in [0, 1] (ComfyUI's image layout)."""
    x = samples.float().cpu()
    if kind == "digits":
        from ..sampler_core.models.digits import latent_to_pixels

        px = latent_to_pixels(x)  # [B, 1, 2H, 2W] in [-1, 1]
        img = ((px + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1)
        img = torch.nn.functional.interpolate(img, scale_factor=4, mode="nearest")
    else:
        rgb = torch.tensor(ToyLatentFormat().latent_rgb_factors, dtype=torch.float32)  # [4, 3]
        img = torch.einsum("bchw,cr->brhw", x, rgb)
        img = (img / 3 + 0.5).clamp(0, 1)
        img = torch.nn.functional.interpolate(img, scale_factor=8, mode="nearest")
    return img.permute(0, 2, 3, 1).contiguous()


class SamplerSchedulerToyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerToyModel",
            display_name="Built-in Test Model (Sampler Scheduler)",
            category="sampling/custom_sampling/sampler_scheduler/built-in",
            description=(
                "A model that needs no checkpoint: an exact Gaussian-mixture denoiser (epsilon/SD-like sigmas or "
                "rectified flow/SD3-like) or a small network trained on scikit-learn's 8x8 digits. For demos, "
                "tests and comparing samplers at equal NFE."
            ),
            inputs=[
                io.Combo.Input("model", options=list(TOY_KINDS), default="gmm-eps",
                               tooltip="gmm-eps: exact GMM, SD1.5-like sigmas 0.029..14.6; gmm-flow: exact GMM, "
                                       "flow model (x = (1-s) x0 + s eps, shift 3); digits: learned 8x8 digits, "
                                       "one digit per 4x4 latent tile"),
                io.Int.Input("width", default=64, min=32, max=2048, step=32,
                             tooltip="Width of the empty latent (pixels; the latent is width/8)"),
                io.Int.Input("height", default=64, min=32, max=2048, step=32,
                             tooltip="Image height in pixels (the latent is height / 8)"),
                io.Int.Input("batch_size", default=4, min=1, max=256, tooltip="Images per batch"),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL"),
                io.Conditioning.Output(display_name="CONDITIONING",
                                       tooltip="Empty conditioning (the built-in models are unconditional)"),
                io.Latent.Output(display_name="LATENT", tooltip="An empty latent of the requested size"),
            ],
        )

    @classmethod
    def execute(cls, model: str, width: int, height: int, batch_size: int) -> io.NodeOutput:
        if model == "digits" and (width % 32 or height % 32):
            raise ValueError("digits model: width and height must be multiples of 32 (one digit per 4x4 latent tile)")
        latent = torch.zeros(batch_size, 4, height // 8, width // 8)
        return io.NodeOutput(make_toy_model(model), empty_conditioning(), {"samples": latent})


class SamplerSchedulerToyDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SamplerSchedulerToyDecode",
            display_name="Built-in Model Decode (Sampler Scheduler)",
            category="sampling/custom_sampling/sampler_scheduler/built-in",
            description="Turns a latent of the built-in models into an image, so samples can be previewed and saved.",
            inputs=[
                io.Latent.Input("samples", tooltip="Latents sampled with the built-in model"),
                io.Combo.Input("model", options=list(TOY_KINDS), default="gmm-eps",
                               tooltip="Which built-in model made the latent"),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples: dict, model: str) -> io.NodeOutput:
        lat = samples["samples"]
        if lat.ndim != 4 or lat.shape[1] != 4:
            raise ValueError(f"expected a 4-channel image latent [B,4,H,W], got shape {tuple(lat.shape)}")
        if not torch.isfinite(lat).all():
            raise ValueError("latent contains NaN or infinite values")
        if model == "digits" and (lat.shape[2] % 4 or lat.shape[3] % 4):
            raise ValueError("digits latents need height and width (latent units) that are multiples of 4")
        return io.NodeOutput(decode_latent(lat, model))


NODES = [SamplerSchedulerToyModel, SamplerSchedulerToyDecode]
