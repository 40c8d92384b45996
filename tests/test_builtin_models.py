"""Built-in models: the digits denoiser (layout, reproducible training, sample quality) and the
analytic Gaussian mixture (exact posterior mean against closed forms and limits)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from sampler_core.models import gmm as gmm_lib
from sampler_core.models.digits import (
    DEFAULT_WEIGHTS,
    DigitsDenoiser,
    latent_to_pixels,
    load_digits_denoiser,
    pixels_to_latent,
)
from sampler_core.models.train_digits import TrainConfig, digits_labels, digits_pixels, train

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test_artifacts"
LOSS_JSON = DEFAULT_WEIGHTS.with_name("digits_denoiser.loss.json")
SHORT_STEPS = 150


# ----------------------------------------------------------------------------- helpers


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5: ``(smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=torch.float64)]).to(torch.float32)


@torch.no_grad()
def euler_sample(model: DigitsDenoiser, grid: int = 8, steps: int = 30, seed: int = 0) -> torch.Tensor:
    """Euler ODE sampler (dx/dsigma = (x - D(x, sigma)) / sigma) from seeded noise; ``[1, 4, 4g, 4g]``."""
    sigmas = karras_sigmas(steps, 0.03, 14.6)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 4 * grid, 4 * grid, generator=gen) * sigmas[0]
    for i in range(steps):
        d = (x - model.denoise(x, sigmas[i])) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def latent_to_digits(lat: torch.Tensor) -> torch.Tensor:
    """``[1, 4, 4g, 4g]`` latent -> ``[g*g, 64]`` flat 8x8 digits (row-major grid order)."""
    px = latent_to_pixels(lat)[0, 0]
    g = px.shape[0] // 8
    return px.reshape(g, 8, g, 8).permute(0, 2, 1, 3).reshape(g * g, 64)


def save_grid(digits: torch.Tensor, path: Path, scale: int = 4) -> None:
    """Save ``[g*g, 64]`` digits in [-1, 1] as a PNG grid with 1-pixel gaps."""
    from PIL import Image

    g = math.isqrt(digits.shape[0])
    canvas = torch.full((g * 9 + 1, g * 9 + 1), -1.0)
    for k in range(g * g):
        r, c = divmod(k, g)
        canvas[1 + 9 * r : 9 + 9 * r, 1 + 9 * c : 9 + 9 * c] = digits[k].reshape(8, 8)
    img = ((canvas.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(path)


@pytest.fixture(scope="module")
def real_digits() -> torch.Tensor:
    return digits_pixels().reshape(-1, 64)


@pytest.fixture(scope="module")
def digit_classifier(real_digits):
    """Logistic regression on the real digits (in [-1, 1]): its confidence scores digit-likeness."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # BLAS threads spin badly on a busy 2-core machine (0.1 s vs 10 s)
        return LogisticRegression(max_iter=3000).fit(real_digits.numpy(), digits_labels().numpy())


def digit_scores(samples: torch.Tensor, real: torch.Tensor, clf) -> dict[str, float]:
    """Mean max class probability, number of distinct predicted classes, and mean nearest-neighbour
    distance to the real digits relative to that of clipped Gaussian noise images."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        proba = torch.from_numpy(clf.predict_proba(samples.clamp(-1, 1).double().numpy()))
    noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    nn_samples = torch.cdist(samples, real).min(1).values.mean()
    nn_noise = torch.cdist(noise, real).min(1).values.mean()
    return {
        "max_prob": float(proba.max(1).values.mean()),
        "classes": len(set(proba.argmax(1).tolist())),
        "nn_ratio": float(nn_samples / nn_noise),
    }


def looks_like_digits(s: dict[str, float]) -> bool:
    return s["max_prob"] > 0.8 and s["classes"] >= 8 and s["nn_ratio"] < 0.35


# ----------------------------------------------------------------------------- digits: layout


def test_pixels_to_latent_is_space_to_depth_and_inverts_exactly():
    img = torch.randn(3, 1, 16, 24)
    lat = pixels_to_latent(img)
    assert lat.shape == (3, 4, 8, 12)
    for dy in range(2):
        for dx in range(2):
            assert torch.equal(lat[:, 2 * dy + dx], img[:, 0, dy::2, dx::2])
    assert torch.equal(latent_to_pixels(lat), img)
    lat2 = torch.randn(2, 4, 4, 8)
    assert torch.equal(pixels_to_latent(latent_to_pixels(lat2)), lat2)


def test_denoise_treats_each_tile_as_an_independent_digit():
    model = load_digits_denoiser()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 12, generator=gen)
    sigma = torch.tensor([0.5, 3.0])
    out = model.denoise(x, sigma)
    assert out.shape == x.shape
    for b in range(2):
        for r in range(2):
            for c in range(3):
                tile = x[b : b + 1, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
                alone = model.denoise(tile, sigma[b])
                torch.testing.assert_close(out[b : b + 1, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], alone)
    # a per-item sigma really is per item
    assert not torch.allclose(out[1], model.denoise(x[1:], sigma[0])[0])


def test_denoise_keeps_dtype_is_identity_at_sigma_zero_and_accepts_odd_sizes():
    model = load_digits_denoiser()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model.denoise(x, torch.tensor(0.0)), x)
    half = model.denoise(x.to(torch.bfloat16), torch.tensor(1.0))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), model.denoise(x, 1.0), atol=0.05, rtol=0.05)
    odd = model.denoise(torch.randn(1, 4, 6, 10), torch.tensor(2.0))
    assert odd.shape == (1, 4, 6, 10) and torch.isfinite(odd).all()


def test_denoise_at_huge_sigma_returns_the_mean_digit(real_digits):
    model = load_digits_denoiser()
    x = 80.0 * torch.randn(16, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    out = latent_to_pixels(model.denoise(x, torch.tensor(80.0))).reshape(16, 64)
    mean_digit = real_digits.mean(0)
    assert (out - mean_digit).norm(dim=1).max() < 0.15 * mean_digit.norm()


# ----------------------------------------------------------------------------- digits: training


def test_training_is_reproducible_and_the_shipped_curve_comes_from_the_script():
    first = train(TrainConfig(steps=SHORT_STEPS)).losses
    second = train(TrainConfig(steps=SHORT_STEPS - 50)).losses
    assert len(first) == SHORT_STEPS // TrainConfig.log_every
    # same seed: same curve (3 significant digits), and a shorter run is a prefix of a longer one
    assert second == pytest.approx(first[: len(second)], rel=5e-4)
    shipped = json.loads(LOSS_JSON.read_text())
    # the shipped run used the default config apart from its length, so the short run is its prefix
    assert shipped["config"] == asdict(TrainConfig(steps=shipped["config"]["steps"]))
    assert first == pytest.approx(shipped["loss"][: len(first)], rel=5e-4)
    # and a different seed gives a different curve
    assert train(TrainConfig(steps=50, seed=1)).losses[0] != pytest.approx(first[0], rel=5e-4)


def test_shipped_weights_are_small_safetensors_with_training_metadata():
    from safetensors import safe_open

    assert DEFAULT_WEIGHTS.stat().st_size < 5_000_000
    with safe_open(str(DEFAULT_WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    shipped = json.loads(LOSS_JSON.read_text())
    assert int(meta["seed"]) == shipped["config"]["seed"]
    assert int(meta["steps"]) == shipped["config"]["steps"] == len(shipped["loss"]) * shipped["log_every"]
    assert float(meta["final_loss"]) == pytest.approx(shipped["loss"][-1], rel=1e-5)
    lo, hi = (float(v) for v in meta["sigma_range"].split(","))
    assert lo <= 0.0292 and hi >= 14.61
    # training reduced the loss substantially from its first logged value
    assert shipped["loss"][-1] < 0.6 * shipped["loss"][0]


# ----------------------------------------------------------------------------- digits: samples


def test_shipped_weights_sample_recognisable_varied_digits(real_digits, digit_classifier):
    samples = latent_to_digits(euler_sample(load_digits_denoiser(), grid=8, steps=30, seed=0))
    save_grid(samples, ARTIFACTS / "digits_grid.png")
    scores = digit_scores(samples, real_digits, digit_classifier)
    assert scores["max_prob"] > 0.8, scores
    assert scores["classes"] >= 8, scores
    assert scores["nn_ratio"] < 0.35, scores
    assert looks_like_digits(scores)


def test_digit_criterion_rejects_an_untrained_network(real_digits, digit_classifier):
    torch.manual_seed(0)
    untrained = DigitsDenoiser().eval()
    samples = latent_to_digits(euler_sample(untrained, grid=8, steps=30, seed=0))
    assert not looks_like_digits(digit_scores(samples, real_digits, digit_classifier))
    # nor a "model" that always answers the mean digit (no variety)
    mean = real_digits.mean(0).expand(64, 64)
    assert not looks_like_digits(digit_scores(mean + 0.0, real_digits, digit_classifier))


# ----------------------------------------------------------------------------- Gaussian mixture


def _single(mean: torch.Tensor, std: float) -> gmm_lib.GaussianMixture:
    dt = torch.float64
    return gmm_lib.GaussianMixture(mean[None].to(dt), torch.tensor([std], dtype=dt), torch.ones(1, dtype=dt))


def test_gmm_single_gaussian_denoiser_is_the_closed_form_posterior_mean():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(4, 8, 8, generator=gen, dtype=torch.float64)
    s = 0.7
    model = _single(m, s)
    sigma = torch.tensor([0.0292, 0.5, 1.0, 14.61], dtype=torch.float64)
    x = m + torch.randn(4, 4, 8, 8, generator=gen, dtype=torch.float64) * (s**2 + sigma**2).sqrt()[:, None, None, None]
    expected = m + (s**2 / (s**2 + sigma**2))[:, None, None, None] * (x - m)
    torch.testing.assert_close(model.denoise(x, sigma), expected, rtol=1e-10, atol=1e-10)


def test_gmm_mixture_weights_are_the_bayes_posterior():
    """Two components in 3 dimensions, against an independent torch.distributions computation."""
    dt = torch.float64
    means = torch.tensor([[-1.0, 0.5, 2.0], [1.5, -0.5, 0.0]], dtype=dt).reshape(2, 3, 1, 1)
    stds = torch.tensor([0.3, 0.8], dtype=dt)
    weights = torch.tensor([0.3, 0.7], dtype=dt)
    model = gmm_lib.GaussianMixture(means, stds, weights)
    x = torch.tensor([[0.2, 0.1, 1.0], [2.0, -1.0, 0.3]], dtype=dt).reshape(2, 3, 1, 1)
    sigma = torch.tensor(0.9, dtype=dt)
    flat = means.reshape(2, 3)
    expected = []
    for xi in x.reshape(2, 3):
        v = stds**2 + sigma**2
        logp = (
            torch.stack([torch.distributions.Normal(flat[k], v[k].sqrt()).log_prob(xi).sum() for k in range(2)])
            + weights.log()
        )
        w = torch.softmax(logp, 0)
        post = [flat[k] + stds[k] ** 2 / v[k] * (xi - flat[k]) for k in range(2)]
        expected.append(w[0] * post[0] + w[1] * post[1])
    torch.testing.assert_close(model.denoise(x, sigma).reshape(2, 3), torch.stack(expected), rtol=1e-10, atol=1e-10)


def test_gmm_denoiser_limits_small_sigma_gives_x_large_sigma_gives_mixture_mean():
    model = gmm_lib.GaussianMixture.for_latent((4, 8, 8), seed=0)
    gen = torch.Generator().manual_seed(1)
    x0 = model.sample(3, generator=gen)
    torch.testing.assert_close(model.denoise(x0, 1e-6), x0, rtol=0, atol=1e-9)
    x = x0 + 1e4 * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    out = model.denoise(x, 1e4)
    mean = model.mean().expand_as(out)
    torch.testing.assert_close(out, mean, rtol=0, atol=2e-3)
    # the components really differ, so the limit above is not trivially met by any component mean
    assert (model.means - model.mean()).abs().amax() > 0.5


def test_gmm_flow_form_equals_ve_form_at_rescaled_sigma():
    """x = (1-s) x0 + s eps  <=>  x/(1-s) = x0 + s/(1-s) eps, so D_flow(x, s) = D_VE(x/(1-s), s/(1-s))."""
    model = gmm_lib.GaussianMixture.for_latent((4, 8, 8), seed=2)
    gen = torch.Generator().manual_seed(2)
    s = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    x0 = model.sample(4, generator=gen)
    x = (1 - s)[:, None, None, None] * x0 + s[:, None, None, None] * torch.randn(
        x0.shape, generator=gen, dtype=x0.dtype
    )
    flow = model.denoise_flow(x, s)
    ve = model.denoise(x / (1 - s)[:, None, None, None], s / (1 - s))
    torch.testing.assert_close(flow, ve, rtol=1e-9, atol=1e-9)
    # at s = 1 (pure noise) the flow form stays finite and gives the mixture mean
    torch.testing.assert_close(model.denoise_flow(x, torch.ones(4)), model.mean().expand_as(x), rtol=0, atol=1e-12)


def test_gmm_denoiser_returns_the_input_dtype():
    model = gmm_lib.GaussianMixture.for_latent((4, 8, 8), seed=0)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float32)
    out = model.denoise(x, torch.tensor([1.0, 2.0]))
    assert out.dtype == torch.float32 and out.shape == x.shape
