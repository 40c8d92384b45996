"""Shared plumbing of the benchmark scripts: logging, and one worker process per model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_workers(module: str, models: list[str], out: Path, passthrough: list[str], env: dict[str, str], jobs: int,
                prefix: str = "") -> tuple[dict[str, Path], dict[str, str]]:
    """Run ``python -m module --worker M --part PART`` for each model, ``jobs`` at a time.

    Each worker writes its results to ``out/{prefix}part_{M}.json`` and its log to
    ``out/logs/{prefix}{M}.log``. Returns (part file by model, failure message by model); workers
    still running when this is interrupted are terminated.
    """
    (out / "logs").mkdir(parents=True, exist_ok=True)
    pending = list(models)
    running: dict[str, tuple[subprocess.Popen, object, float]] = {}
    parts: dict[str, Path] = {}
    failures: dict[str, str] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                m = pending.pop(0)
                parts[m] = out / f"{prefix}part_{m}.json"
                parts[m].unlink(missing_ok=True)
                log_path = out / "logs" / f"{prefix}{m}.log"
                logf = log_path.open("w")
                cmd = [sys.executable, "-m", module, "--worker", m, "--part", str(parts[m]), *passthrough]
                proc = subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, env=env)
                running[m] = (proc, logf, time.perf_counter())
                log(f"started {m} (log: {log_path})")
            time.sleep(1.0)
            for m in list(running):
                proc, logf, t0 = running[m]
                if proc.poll() is None:
                    continue
                logf.close()
                del running[m]
                ok = proc.returncode == 0 and parts[m].is_file()
                if not ok:
                    failures[m] = f"FAILED (rc {proc.returncode}); see {out / 'logs' / f'{prefix}{m}.log'}"
                log(f"finished {m}: {'ok' if ok else failures[m]} in {time.perf_counter() - t0:.0f} s")
    finally:
        for proc, logf, _t in running.values():
            proc.terminate()
            logf.close()
    return parts, failures
