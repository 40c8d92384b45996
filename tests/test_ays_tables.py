"""Align Your Steps tables: equality with ComfyUI's AlignYourStepsScheduler and the paper's values."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from schedules.ays_tables import AYS_TABLES, ays_preset_sigmas, ays_sigmas, loglinear_interp

# Appendix table of arXiv 2404.14507 ("Optimized Schedules"), as printed (three decimals).
PAPER_TABLES = {
    "SD1": [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029],
    "SDXL": [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029],
    "DeepFloyd-IF": [160.41, 8.081, 3.315, 1.885, 1.207, 0.785, 0.553, 0.293, 0.186, 0.030, 0.006],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def test_ays_sigmas_equal_comfyui_node_for_sd1_sdxl_svd_steps_1_to_60(comfy_root):
    from comfy_extras import nodes_align_your_steps as comfy_ays

    assert comfy_ays.__file__.startswith(str(comfy_root))
    checked = 0
    for model in ("SD1", "SDXL", "SVD"):
        for steps in range(1, 61):
            for denoise in (1.0, 0.75, 0.5, 0.0):
                expected = comfy_ays.AlignYourStepsScheduler.execute(model, steps, denoise)[0]
                ours = ays_preset_sigmas(model, steps, denoise)
                assert ours.dtype == expected.dtype, (model, steps, denoise)
                assert ours.shape == expected.shape, (model, steps, denoise)
                assert torch.equal(ours, expected), (model, steps, denoise, ours, expected)
                checked += 1
    assert checked == 3 * 60 * 4


def test_tables_are_comfyuis_noise_levels(comfy_root):
    from comfy_extras import nodes_align_your_steps as comfy_ays

    for model in ("SD1", "SDXL", "SVD"):
        assert list(AYS_TABLES[model]) == list(comfy_ays.NOISE_LEVELS[model])


def test_deepfloyd_and_svd_tables_equal_the_paper():
    assert list(AYS_TABLES["DeepFloyd-IF"]) == PAPER_TABLES["DeepFloyd-IF"]
    assert list(AYS_TABLES["SVD"]) == PAPER_TABLES["SVD"]


def test_sd1_sdxl_tables_agree_with_the_papers_rounded_values():
    for model in ("SD1", "SDXL"):
        ours = np.array(AYS_TABLES[model])
        paper = np.array(PAPER_TABLES[model])
        # the paper prints a slightly different three-decimal version: at most 0.0035 apart
        np.testing.assert_allclose(ours, paper, rtol=0, atol=3.5e-3, err_msg=model)


def test_every_table_has_11_strictly_decreasing_positive_sigmas():
    for name, table in AYS_TABLES.items():
        assert len(table) == 11, name
        assert all(b < a for a, b in pairwise(table)), name
        assert table[-1] > 0, name


def test_deepfloyd_sigmas_at_10_steps_are_the_table_with_final_zero():
    sig = ays_preset_sigmas("DeepFloyd-IF", 10)
    expected = torch.tensor(PAPER_TABLES["DeepFloyd-IF"][:-1] + [0.0], dtype=torch.float32)
    assert torch.equal(sig, expected)


def test_loglinear_interp_keeps_knots_and_inserts_geometric_means():
    table = AYS_TABLES["SD1"]
    out = loglinear_interp(table, 21)
    assert out.shape == (21,)
    np.testing.assert_allclose(out[0::2], table, rtol=1e-12)
    np.testing.assert_allclose(out[1::2], np.sqrt(np.array(table[:-1]) * np.array(table[1:])), rtol=1e-12)
    assert np.all(np.diff(out) < 0)


def test_loglinear_interp_rejects_non_positive_sigmas():
    with pytest.raises(ValueError, match="positive"):
        loglinear_interp([3.0, 1.0, 0.0], 5)


def test_ays_sigmas_denoise_handling():
    table = AYS_TABLES["SDXL"]
    assert ays_sigmas(table, 20, 0.0).numel() == 0
    full = ays_sigmas(table, 20, 1.0)
    half = ays_sigmas(table, 20, 0.5)
    assert full.numel() == 21 and full[-1] == 0
    assert half.numel() == 11 and half[-1] == 0
    assert torch.equal(half[:-1], full[10:-1])  # the low-noise tail of the full schedule
    # round() is Python's (half to even): 10 * 0.25 = 2.5 -> 2 steps
    assert ays_sigmas(table, 10, 0.25).numel() == 3
    assert math.isclose(float(full[0]), table[0], rel_tol=1e-6)


def test_ays_sigmas_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        ays_sigmas(AYS_TABLES["SD1"], 0)
