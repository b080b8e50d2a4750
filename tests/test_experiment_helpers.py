"""Shared experiment helpers in kvmem.experiments.base against plain references."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from kvmem.experiments.base import auc, config_error, mean_ci, summarise_over_seeds


def test_auc_equals_a_pairwise_loop_with_ties_and_tensors():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)  # many ties
    loop = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc(pos, neg) == pytest.approx(loop, abs=1e-15)
    assert auc(torch.tensor(pos).reshape(8, 5), torch.tensor(neg)) == pytest.approx(loop, abs=1e-15)
    assert math.isnan(auc([], [1.0]))


def test_mean_ci_and_summary_match_the_t_interval():
    x = np.array([0.2, 0.9, 0.4, np.nan, 0.7])
    m, lo, hi = mean_ci(x)
    finite = x[np.isfinite(x)]
    half = stats.t.ppf(0.975, 3) * finite.std(ddof=1) / 2.0
    assert (m, lo, hi) == pytest.approx((finite.mean(), finite.mean() - half, finite.mean() + half))
    assert math.isnan(mean_ci([1.0])[1]) and math.isnan(mean_ci([])[0])
    table = pd.DataFrame({"k": ["a"] * 4 + ["b"], "v": [0.2, 0.9, 0.4, 0.7, 0.3]})
    out = summarise_over_seeds(table, ["k"], ["v"]).set_index("k")
    assert out.loc["a", "v_lo"] == pytest.approx(lo) and out.loc["b", "v_lo"] == out.loc["b", "v_hi"] == 0.3
    with pytest.raises(ValueError, match="seeds: expected a positive integer, got 0"):
        config_error("seeds", "a positive integer", 0)
