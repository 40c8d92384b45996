"""Demo: the pack on its built-in models, through real ComfyUI, at equal NFE.

    bash .ci/setup && .venv/bin/python -m benchmarks.demo --out demo_output

For each built-in model (exact Gaussian mixture as an epsilon and as a flow model, and the digits
network) it samples the same noise with ComfyUI's own samplers and with Sampler Scheduler plans at
10 model evaluations, and writes to the output folder:

- ``results.md``: RMSE to a 200-step reference from the same noise (deterministic samplers) and the
  distance to the target distribution (sliced W2 to the exact mixture; Frechet distance to the
  scikit-learn digits in pixel space), with the counted NFE of every run;
- ``digits_<sampler>.png``: the digits each sampler drew (same seeds), and ``gmm_eps.png``.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import comfy_inproc as ci
from benchmarks import metrics

NFE = 10
# (label, ComfyUI sampler name or None, our plan text or None, scheduler)
RUNS = [
    ("ComfyUI euler", "euler", None, "karras"),
    ("ComfyUI dpmpp_2m", "dpmpp_2m", None, "karras"),
    ("ComfyUI dpmpp_2m_sde", "dpmpp_2m_sde", None, "karras"),
    ("ours: SDE 40% -> ODE", None, "40% dpmpp_2m_sde eta=1\n* dpmpp_2m", "karras"),
    ("ours: usf order 3 + UniC", None, "usf order=3 corrector=unic", "karras"),
]


def grid(images: torch.Tensor, cols: int = 8, scale: int = 4) -> Image.Image:
    """[N, H, W, 3] in [0, 1] -> one PIL image."""
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    canvas = torch.zeros(rows * h, cols * w, 3)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[k]
    arr = (canvas.clamp(0, 1).numpy() * 255).astype(np.uint8)
    return Image.fromarray(arr).resize((cols * w * scale // 4, rows * h * scale // 4), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="demo_output", help="folder for results.md and the PNG grids")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0 = time.time()
    version = ci.load_comfy("cpu")
    toy = ci.pack_module("nodes.toy_model")
    from sampler_core.models import gmm as gmm_lib

    rows = []
    shapes = {"gmm-eps": (256, 4, 8, 8), "gmm-flow": (256, 4, 8, 8), "digits": (512, 4, 4, 4)}
    for kind, shape in shapes.items():
        model = ci.make_model(kind)
        noise = torch.randn(*shape, generator=torch.Generator().manual_seed(2024))
        sched_ref = "simple" if kind == "gmm-flow" else "karras"
        ref, _ = ci.run(model, ci.comfy_sampler("dpmpp_2m"), ci.ksampler_sigmas(model, None, sched_ref, 200), noise)
        if kind == "digits":
            data = metrics.digits_data()

            def dist(x: torch.Tensor, data=data) -> float:
                return metrics.digits_fd(x, data)
        else:
            g = gmm_lib.for_latent_cached(shape[1:])
            sw = metrics.GMMSlicedW2(g.means, g.stds, g.weights)

            def dist(x: torch.Tensor, sw=sw) -> float:
                return sw(x.reshape(len(x), -1))
        for label, sampler_name, plan_text, scheduler in RUNS:
            if kind == "gmm-flow":
                scheduler = "simple"
            if sampler_name is not None:
                sampler, stochastic = ci.comfy_sampler(sampler_name), "sde" in sampler_name
                per_step = 1
                sig = ci.ksampler_sigmas(model, sampler_name, scheduler, NFE // per_step)
            else:
                sampler, plan = ci.plan_sampler(plan_text)
                stochastic = "sde" in plan_text
                steps = NFE
                while ci.plan_nfe(plan, ci.ksampler_sigmas(model, None, scheduler, steps), model.flow) > NFE:
                    steps -= 1
                sig = ci.ksampler_sigmas(model, None, scheduler, steps)
            x, calls = ci.run(model, sampler, sig, noise, seed=7)
            rows.append({
                "model": kind, "sampler": label, "scheduler": scheduler, "steps": len(sig) - 1, "nfe": calls,
                "rmse": None if stochastic else metrics.rmse(x, ref), "dist": dist(x),
            })
            if kind == "digits":
                img = toy.decode_latent(x[:64], "digits")
                grid(img).save(out / f"digits_{re.sub('[^a-z0-9]+', '_', label.lower()).strip('_')}.png")
            if kind == "gmm-eps" and label == RUNS[-2][0]:
                grid(toy.decode_latent(x[:32], "gmm-eps")).save(out / "gmm_eps.png")
    lines = [f"# Demo results (ComfyUI {version}, {NFE} model evaluations per sample)", "",
             "| model | sampler | scheduler | steps | NFE | RMSE to reference | distance to target |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rm = "(stochastic)" if r["rmse"] is None else f"{r['rmse']:.4f}"
        lines.append(f"| {r['model']} | {r['sampler']} | {r['scheduler']} | {r['steps']} | {r['nfe']} | {rm} | "
                     f"{r['dist']:.4f} |")
    lines += ["", "Distance: sliced W2 to the exact mixture (GMM), Frechet distance to the digits data in pixel "
              "space (digits). Lower is better.", f"Wall time: {time.time() - t0:.0f} s."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out.resolve()}: results.md and PNG grids")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
