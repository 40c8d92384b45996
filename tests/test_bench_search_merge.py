"""benchmarks.bench_search: merging per-model / per-NFE result folders into one report."""

from __future__ import annotations

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
