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
