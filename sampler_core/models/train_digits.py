"""Reproducible training of the built-in digits denoiser (EDM loss on scikit-learn's 8x8 digits).

Usage::

    python -m sampler_core.models.train_digits --out sampler_core/models/digits_denoiser.safetensors --seed 0

Writes the EMA weights (safetensors, with metadata) and ``<stem>.loss.json`` (the training loss,
averaged over every ``log_every`` steps). Reproducible: one seeded ``torch.Generator`` drives the
batch indices, sigmas and noise, the thread count is fixed, and the learning-rate schedule
(linear warm-up, then EDM2's inverse-square-root decay) does not depend on the total number of
steps, so a short run's loss curve is a prefix of a long run's.

Loss (Karras et al. 2022, eq. 8 with Table 1): ``E[lambda(sigma) |D(x0 + sigma eps, sigma) - x0|^2]``
with ``lambda = (sigma^2 + sd^2) / (sigma sd)^2``. Sigmas: with probability ``loguniform_frac``
log-uniform over ``[sigma_lo, sigma_hi]`` (covers SD's 0.0292..14.61), else EDM's log-normal
``ln sigma ~ N(P_mean, P_std^2)``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .digits import SIGMA_DATA, DigitsDenoiser, latent_to_tiles, pixels_to_latent


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (the defaults produce the shipped weights)."""

    seed: int = 0
    steps: int = 6000
    batch: int = 256
    lr: float = 2e-3
    warmup: int = 200  # linear LR warm-up steps
    lr_ref: int = 2000  # lr * min(1, sqrt(lr_ref / step)) after warm-up (EDM2, independent of `steps`)
    ema_halflife: float = 400.0  # steps; EMA weights are the ones saved
    log_every: int = 50
    threads: int = 1
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_lo: float = 0.002
    sigma_hi: float = 80.0
    loguniform_frac: float = 0.5
    model: dict = field(default_factory=lambda: {"width": 192, "hidden": 384, "depth": 3, "n_freq": 32})


@dataclass
class TrainResult:
    model: DigitsDenoiser  # EMA weights, eval mode
    losses: list[float]  # mean training loss of each `log_every` window
    seconds: float
    config: TrainConfig


def digits_pixels() -> torch.Tensor:
    """scikit-learn's bundled digits as ``[1797, 1, 8, 8]`` float32 in [-1, 1] (raw values 0..16)."""
    from sklearn.datasets import load_digits

    images = load_digits().images  # (1797, 8, 8), 0..16
    return torch.from_numpy(images).to(torch.float32).div(8.0).sub(1.0).unsqueeze(1)


def digits_labels() -> torch.Tensor:
    """Class labels (0..9) of :func:`digits_pixels`, same order."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target).to(torch.int64)


def digits_tiles() -> torch.Tensor:
    """The digits as flat latent tiles ``[1797, 64]`` (the layout :class:`DigitsDenoiser` works on)."""
    return latent_to_tiles(pixels_to_latent(digits_pixels())).squeeze(1)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of (0-based) ``step``: warm-up, then inverse-sqrt decay; independent of ``cfg.steps``."""
    t = step + 1
    if t <= cfg.warmup:
        return cfg.lr * t / cfg.warmup
    return cfg.lr * min(1.0, math.sqrt(cfg.lr_ref / t))


def sample_sigmas(n: int, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Mixture of log-uniform ``[sigma_lo, sigma_hi]`` and log-normal ``(P_mean, P_std)`` sigmas."""
    u = torch.rand(n, generator=gen)
    z = torch.randn(n, generator=gen)
    pick = torch.rand(n, generator=gen) < cfg.loguniform_frac
    log_lo, log_hi = math.log(cfg.sigma_lo), math.log(cfg.sigma_hi)
    log_uniform = log_lo + (log_hi - log_lo) * u
    log_normal = cfg.p_mean + cfg.p_std * z
    return torch.exp(torch.where(pick, log_uniform, log_normal))


def edm_loss(model: DigitsDenoiser, x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``mean(lambda(sigma) (D(x0 + sigma eps, sigma) - x0)^2)``, ``lambda = (s^2 + sd^2) / (s sd)^2``."""
    s = sigma.reshape(-1, 1)
    weight = (s * s + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2
    d = model.denoise_tiles(x0 + s * eps, sigma)
    return (weight * (d - x0) ** 2).mean()


def train(cfg: TrainConfig | None = None, verbose: bool = False) -> TrainResult:
    """Train a :class:`DigitsDenoiser` on CPU; deterministic for a given config (and torch build)."""
    cfg = cfg or TrainConfig()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, verbose)
    finally:
        torch.set_num_threads(old_threads)


def _train(cfg: TrainConfig, verbose: bool) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)  # parameter initialisation
    model = DigitsDenoiser(**cfg.model)
    ema = DigitsDenoiser(**cfg.model)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)  # batches, sigmas, noise
    data = digits_tiles()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
    ema_beta = 0.5 ** (1.0 / cfg.ema_halflife)
    losses: list[float] = []
    window = 0.0
    for step in range(cfg.steps):
        idx = torch.randint(data.shape[0], (cfg.batch,), generator=gen)
        x0 = data[idx]
        sigma = sample_sigmas(cfg.batch, cfg, gen)
        eps = torch.randn(x0.shape, generator=gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = edm_loss(model, x0, sigma, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        beta = min(ema_beta, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - beta)
        window += float(loss.detach())  # CPU training script: a host read per step is fine here
        if (step + 1) % cfg.log_every == 0:
            losses.append(window / cfg.log_every)
            window = 0.0
            if verbose and len(losses) % 20 == 0:
                print(f"step {step + 1:6d}  loss {losses[-1]:.4f}  lr {lr_at(step, cfg):.2e}", flush=True)
    ema.eval()
    return TrainResult(model=ema, losses=losses, seconds=time.perf_counter() - start, config=cfg)


def save(result: TrainResult, out: str | Path) -> tuple[Path, Path]:
    """Write the EMA weights (safetensors + metadata) and ``<stem>.loss.json`` next to them."""
    from safetensors.torch import save_file

    cfg = result.config
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    final = result.losses[-1] if result.losses else float("nan")
    meta = {
        "format": "sampler_scheduler.digits_denoiser.v1",
        "seed": str(cfg.seed),
        "steps": str(cfg.steps),
        "final_loss": f"{final:.6g}",
        "sigma_range": f"{cfg.sigma_lo},{cfg.sigma_hi}",
        "sigma_data": str(SIGMA_DATA),
        "train_seconds": f"{result.seconds:.1f}",
        "torch_version": torch.__version__,
        **{k: str(v) for k, v in cfg.model.items()},
    }
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out), metadata=meta)
    curve = out.with_name(out.name.split(".")[0] + ".loss.json")
    payload = {
        "config": asdict(cfg),
        "log_every": cfg.log_every,
        "final_loss": float(f"{final:.6g}"),
        "train_seconds": round(result.seconds, 1),
        "torch_version": torch.__version__,
        "loss": [float(f"{v:.6g}") for v in result.losses],
    }
    curve.write_text(json.dumps(payload, indent=1) + "\n")
    return out, curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("digits_denoiser.safetensors")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    args = parser.parse_args(argv)
    cfg = TrainConfig(seed=args.seed, steps=args.steps, threads=args.threads)
    result = train(cfg, verbose=True)
    weights, curve = save(result, args.out)
    size = weights.stat().st_size / 1e6
    print(f"trained {cfg.steps} steps in {result.seconds:.1f} s; final loss {result.losses[-1]:.4f}")
    print(f"wrote {weights} ({size:.2f} MB) and {curve}")


if __name__ == "__main__":
    main()
