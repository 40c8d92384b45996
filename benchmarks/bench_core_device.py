"""Per-step cost of the solver core on one device, with a near-free model (no ComfyUI needed).

    .venv/bin/python -m benchmarks.bench_core_device --device cuda

For a 1x4x128x128 latent and 200 steps it times ``sample_plan`` for a few methods and a
two-segment plan (median of repeated runs, device synchronised around each run), and counts the
host synchronisations of one run with CUDA's sync-debug mode (expected: one, the up-front
``sigmas.tolist()``; none per step). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from sampler_core.loop import sample_plan

PLANS = ["euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "usf order=3 corrector=unic",
         "40% dpmpp_2m_sde eta=1\n* dpmpp_2m"]


def karras(n: int, smin: float = 0.0292, smax: float = 14.6146, rho: float = 7.0) -> torch.Tensor:
    r = torch.linspace(0, 1, n)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    x0 = torch.randn(1, 4, 128, 128, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
    sigmas = karras(args.steps).to(dev)

    def model(x, s, **kw):  # near-free: the cost measured is the loop's
        return x * 0.5

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    for plan in PLANS:
        run = lambda p=plan: sample_plan(model, x0, sigmas, {"seed": 1}, plan=p)  # noqa: E731
        run()
        times = []
        for _ in range(args.reps):
            sync()
            t = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - t)
        syncs = "n/a"
        if dev.type == "cuda":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    run()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = str(sum("synchroniz" in str(w.message).lower() for w in caught))
        rows.append((plan.replace("\n", " / "), statistics.median(times) / args.steps * 1e6, syncs))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"Solver core per-step cost on {name} (torch {torch.__version__}), 1x4x128x128, {args.steps} steps, "
          f"median of {args.reps}\n")
    print("| plan | us per step | host syncs per run |\n|---|---|---|")
    for plan, us, syncs in rows:
        print(f"| {plan} | {us:.1f} | {syncs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
