"""benchmarks.bench_search: merging per-model / per-NFE result folders into one report."""

from __future__ import annotations

import json

from benchmarks.bench_search import merge_models


def _row(ratio: float, n: int) -> dict:
    return {"ratio": ratio, "predictor": {"n": n, "target": 0.1 if n else None}}


def test_merge_replaces_the_rows_a_later_part_holds_and_keeps_the_rest():
    old = {"models": {"gmm-eps": {"info": {"batch": 4096}, "nfe": {"5": _row(0.7, 20), "8": _row(0.5, 20)}},
                      "digits": {"info": {"batch": 1024}, "nfe": {"5": _row(0.55, 20)}}},
           "meta": {"search_batch": 4096, "search_batch_digits": 1024}}
    new = {"models": {"gmm-eps": {"info": {"batch": 16384}, "nfe": {"5": _row(0.58, 0)}}},
           "meta": {"search_batch": 16384}}
    merged = merge_models([old, new])
    assert merged["gmm-eps"]["nfe"]["5"]["ratio"] == 0.58  # replaced
    assert merged["gmm-eps"]["nfe"]["5"]["predictor"]["n"] == 20  # the rerun skipped the comparison: kept
    assert merged["gmm-eps"]["nfe"]["8"]["ratio"] == 0.5
    assert merged["digits"]["nfe"]["5"]["ratio"] == 0.55
    assert old["models"]["gmm-eps"]["nfe"]["5"]["ratio"] == 0.7  # inputs keep their results
    # every row shows the batches of its own run
    def batches(kind: str, nfe: str) -> tuple:
        return merged[kind]["nfe"][nfe]["search_batch"], merged[kind]["nfe"][nfe]["eval_batch"]

    assert batches("gmm-eps", "5") == (16384, 16384)
    assert batches("gmm-eps", "8") == (4096, 4096)
    assert batches("digits", "5") == (1024, 1024)


def test_merge_takes_a_new_predictor_comparison_when_the_later_row_has_one():
    old = {"models": {"gmm-flow": {"info": {}, "nfe": {"5": _row(0.7, 20)}}}}
    new = {"models": {"gmm-flow": {"info": {}, "nfe": {"5": _row(0.6, 5)}}}}
    assert merge_models([old, new])["gmm-flow"]["nfe"]["5"]["predictor"]["n"] == 5


def test_merging_a_merged_result_keeps_the_command_of_each_of_its_parts(tmp_path):
    from benchmarks import bench_search

    def part(kind: str, nfe: str, evals: int, restarts: int = 1) -> dict:
        row = dict(_row(0.5, 0), rmse_eval=0.1, comfy_calls=int(nfe), plan="* usf", sigmas=[1.0, 0.0],
                   search_seconds=1.0, restarts=restarts, evaluations=evals * restarts,
                   best_comfy={"name": "euler", "scheduler": "karras", "steps": 5, "rmse": 0.2})
        return {"meta": {"command": "python -m benchmarks.bench_search", "evaluations": evals, "restarts": restarts,
                         "search_batch": 4096, "search_batch_digits": 1024, "wall_s": 60.0, "cpu": "x86_64",
                         "date": "2026-11-24 01:00 UTC", "torch": "2", "threads": 1, "comfyui": "0.3.75",
                         "predictor_seeds": 0, "predictor_evaluations": 300, "predictor_batch": 128},
                "models": {kind: {"info": {"batch": 4096}, "nfe": {nfe: row}}}}

    def write(name: str, res: dict) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
        return str(tmp_path / name)

    a = write("a", part("gmm-eps", "5", 1500))
    b = write("b", part("gmm-flow", "8", 1500, restarts=3))
    md = str(tmp_path / "r.md")
    assert bench_search.main(["--merge", f"{a},{b}", "--out", str(tmp_path / "ab"), "--results-md", md]) == 0
    c = write("c", part("digits", "5", 300))
    assert bench_search.main(["--merge", f"{tmp_path / 'ab'},{c}", "--out", str(tmp_path / "abc"),
                              "--results-md", md]) == 0
    meta = json.loads((tmp_path / "abc" / "results.json").read_text())["meta"]
    assert meta["parts"] == ["--models gmm-eps --nfes 5 --evaluations 1500 (gmm-eps: search 4096 / eval 4096)",
                             "--models gmm-flow --nfes 8 --evaluations 1500 --restarts 3 (gmm-flow: search 4096 / "
                             "eval 4096)",
                             "--models digits --nfes 5 --evaluations 300 (digits: search 1024 / eval 4096)"]
    assert meta["command"] == bench_search.MERGED + "; ".join(meta["parts"]) + ")"
    assert "best of 3 runs by search fitness, 1500 evaluations each" in (tmp_path / "r.md").read_text()


class _Run:
    """A search result as far as the predictor curve reads it: the best-so-far per real evaluation."""

    def __init__(self, bests: list[float]) -> None:
        self.history = [{"eval": i + 1, "best": b} for i, b in enumerate(bests)]


def test_predictor_curve_levels_come_from_the_runs_without_the_predictor():
    from benchmarks import bench_search
    from sampler_core import search as S

    # 300 evaluations; without the predictor the best falls linearly, with it twice as fast (then flat)
    without = [_Run([1.0 - i / 300 + 0.01 * s for i in range(300)]) for s in range(3)]
    fast = [_Run([max(1.0 - 2 * i / 300, 0.0) + 0.01 * s for i in range(300)]) for s in range(3)]
    curve = bench_search.predictor_curve(S, fast, without, never=301)
    assert [c["evals"] for c in curve] == list(bench_search.CURVE_MARKS)
    by_k = {c["evals"]: c for c in curve}
    # the level at k is the middle seed's best after k evaluations (index k - 1)
    assert abs(by_k[100]["level"] - (1.0 - 99 / 300 + 0.01)) < 1e-12
    assert by_k[100]["median_evals_without"] == 100
    # twice as fast: about half the evaluations (the middle seed's best reaches 1 - 99/300 + 0.01 at index 50)
    assert by_k[100]["median_evals_with"] == 51
    assert by_k[100]["median_best_with"] < by_k[100]["level"]
    # a predictor that never gets there counts as never (budget + 1)
    stuck = [_Run([1.5] * 300) for _ in range(3)]
    assert bench_search.predictor_curve(S, stuck, without, never=301)[0]["median_evals_with"] == 301
