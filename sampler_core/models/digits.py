"""Small denoiser network for scikit-learn's 8x8 digits, laid out as a 4-channel latent.

Latent layout: one 8x8 digit is one 4x4 tile of a 4-channel latent by space-to-depth
(pixel-unshuffle with factor 2): channel ``c = 2*dy + dx`` at ``(h, w)`` holds pixel
``(2*h + dy, 2*w + dx)``. A latent ``[B, 4, H, W]`` with ``H, W`` multiples of 4 holds a grid
of ``(H/4) * (W/4)`` independent digits; pixel values are in [-1, 1].

The network is an MLP on the 64 values of one tile with EDM preconditioning
(Karras et al. 2022, "Elucidating the Design Space...", Table 1), in VE space
``x = x0 + sigma * eps``::

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4.

This module imports no ComfyUI module and no scikit-learn (see ``train_digits`` for the data).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TILE = 4  # latent tile side holding one digit
CHANNELS = 4  # latent channels
TILE_DIM = CHANNELS * TILE * TILE  # 64 values per digit
SIGMA_DATA = 0.5  # EDM sigma_data
SIGMA_MIN_EMBED = 1e-6  # sigma is clamped to this inside c_noise (sigma = 0 gives D(x) = x exactly)

DEFAULT_WEIGHTS = Path(__file__).with_name("digits_denoiser.safetensors")


def pixels_to_latent(img: torch.Tensor) -> torch.Tensor:
    """Space-to-depth: ``[N, 1, 8a, 8b]`` pixels -> ``[N, 4, 4a, 4b]`` latent (channel ``2*dy + dx``)."""
    if img.ndim != 4 or img.shape[1] != 1:
        raise ValueError(f"expected [N, 1, H, W] pixels, got {tuple(img.shape)}")
    return F.pixel_unshuffle(img, 2)


def latent_to_pixels(lat: torch.Tensor) -> torch.Tensor:
    """Depth-to-space, the exact inverse of :func:`pixels_to_latent`: ``[N, 4, H, W]`` -> ``[N, 1, 2H, 2W]``."""
    if lat.ndim != 4 or lat.shape[1] != CHANNELS:
        raise ValueError(f"expected [N, 4, H, W] latent, got {tuple(lat.shape)}")
    return F.pixel_shuffle(lat, 2)


def latent_to_tiles(lat: torch.Tensor) -> torch.Tensor:
    """``[B, 4, 4m, 4n]`` -> ``[B, m*n, 64]``: each row is one 4x4 tile flattened as (c, h, w)."""
    b, c, h, w = lat.shape
    m, n = h // TILE, w // TILE
    t = lat.reshape(b, c, m, TILE, n, TILE).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(b, m * n, c * TILE * TILE)


def tiles_to_latent(tiles: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Inverse of :func:`latent_to_tiles`: ``[B, m*n, 64]`` -> ``[B, 4, 4m, 4n]``."""
    b = tiles.shape[0]
    t = tiles.reshape(b, m, n, CHANNELS, TILE, TILE).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(b, CHANNELS, m * TILE, n * TILE)


class _Block(nn.Module):
    """Pre-norm residual MLP block with sigma-conditioned scale/shift: ``h + W2 silu(W1 (LN(h)(1+s)+t))``."""

    def __init__(self, width: int, hidden: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mod = nn.Linear(emb, 2 * width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mod(emb).chunk(2, dim=-1)
        y = self.norm(h) * (1.0 + scale) + shift
        return h + self.fc2(F.silu(self.fc1(y)))


class DigitsDenoiser(nn.Module):
    """EDM-preconditioned MLP denoiser of one 8x8 digit (a 64-dim latent tile).

    ``forward(x, sigma)`` / :meth:`denoise` take a latent ``[B, 4, H, W]`` and ``sigma`` (scalar or
    ``[B]``) and return the estimate of ``x0`` with the same shape, device and dtype.
    """

    def __init__(self, width: int = 192, hidden: int = 384, depth: int = 3, n_freq: int = 32) -> None:
        super().__init__()
        self.config = {"width": width, "hidden": hidden, "depth": depth, "n_freq": n_freq}
        self.sigma_data = SIGMA_DATA
        # Fixed geometric frequencies for the Fourier features of c_noise = ln(sigma)/4 (in [-3.5, 1.1]).
        freqs = torch.exp(torch.linspace(0.0, math.log(100.0), n_freq)) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        emb = width
        self.emb = nn.Sequential(nn.Linear(2 * n_freq + 1, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.inp = nn.Linear(TILE_DIM, width)
        self.blocks = nn.ModuleList([_Block(width, hidden, emb) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, TILE_DIM)

    def embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Sigma embedding: ``[c_noise, sin(f c_noise), cos(f c_noise)]`` -> MLP; ``c_noise`` is ``[N, 1]``."""
        a = c_noise * self.freqs
        return self.emb(torch.cat([c_noise, torch.sin(a), torch.cos(a)], dim=-1))

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """The bare network ``F(c_in x, c_noise)`` on flat tiles ``[N, 64]`` with ``c_noise`` ``[N, 1]``."""
        emb = self.embed(c_noise)
        h = self.inp(x_in)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.out_norm(h))

    def denoise_tiles(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """EDM-preconditioned ``D(x, sigma)`` on float32 tiles ``x`` ``[N, 64]`` with ``sigma`` ``[N]``."""
        sd = self.sigma_data
        s = sigma.reshape(-1, 1)
        var = s * s + sd * sd
        c_skip = sd * sd / var
        c_out = s * sd * torch.rsqrt(var)
        c_in = torch.rsqrt(var)
        c_noise = torch.log(s.clamp(min=SIGMA_MIN_EMBED)) / 4.0
        return c_skip * x + c_out * self.raw(c_in * x, c_noise)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``x0 = D(x, sigma)`` for a latent ``[B, 4, H, W]`` (VE space, ``x = x0 + sigma * eps``).

        All tiles are denoised as one batch; ``H``/``W`` that are not multiples of 4 are padded by
        replication and cropped back. Computed in float32 on the input's device (the module moves
        there if needed), returned in the input's dtype.
        """
        if x.ndim != 4 or x.shape[1] != CHANNELS:
            raise ValueError(f"expected a [B, 4, H, W] latent, got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if self.inp.weight.device != x.device or self.inp.weight.dtype != torch.float32:
            self.to(device=x.device, dtype=torch.float32)  # a tiny model: follow the input, stay float32
        xf = x.to(torch.float32)
        sig = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1)
        sig = sig.expand(b) if sig.numel() == 1 else sig
        ph, pw = (-h) % TILE, (-w) % TILE
        if ph or pw:
            xf = F.pad(xf, (0, pw, 0, ph), mode="replicate")
        m, n = xf.shape[2] // TILE, xf.shape[3] // TILE
        tiles = latent_to_tiles(xf).reshape(b * m * n, TILE_DIM)
        out = self.denoise_tiles(tiles, sig.repeat_interleave(m * n))
        lat = tiles_to_latent(out.reshape(b, m * n, TILE_DIM), m, n)[:, :, :h, :w]
        return lat.to(x.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.denoise(x, sigma)


def load_digits_denoiser(path: str | Path | None = None, device: torch.device | str | None = None) -> DigitsDenoiser:
    """Load the shipped (or given) safetensors weights into a :class:`DigitsDenoiser` in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    config = {k: int(meta[k]) for k in ("width", "hidden", "depth", "n_freq") if k in meta}
    model = DigitsDenoiser(**config)
    model.load_state_dict(load_file(str(path)))
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
