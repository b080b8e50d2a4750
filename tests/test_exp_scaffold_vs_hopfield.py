"""Experiment scaffold-vs-hopfield: the quick profile's claims, reproducibility, table
consistency, the claim statistics on hand-built curves, falsifiable claims, config errors."""

import copy
import dataclasses
import math

import pandas as pd
import pytest
import torch
from scipy import stats

from kvmem.experiments import scaffold_vs_hopfield as svh
from kvmem.experiments.base import Progress

EXP = svh.EXPERIMENT
CLAIMS = [
    "scaffold_no_memory_cliff",
    "hopfield_cliff_near_0.14N",
    "noisy_cues_corrected",
    "sequence_beyond_hopfield_capacity",
    "scaffold_matches_projection_theory",
]
SMALL = {"seeds": "2", "trials": "2", "probes": "8", "loads": "0.05,0.1,0.15,0.2"}


class Counting(Progress):
    def __init__(self):
        self.announced, self.done = None, 0

    def total(self, n):
        self.announced = n

    def advance(self, n=1):
        self.done += n


@pytest.fixture(scope="module")
def quick():
    progress = Counting()
    return EXP.run(EXP.config("quick"), seed=0, progress=progress), progress


def test_quick_claims_pass(quick):
    result, progress = quick
    claims = EXP.claims(result)
    assert [c.name for c in claims] == CLAIMS
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    assert progress.announced == progress.done > 0
    assert set(EXP.plot(result)) == {"scaffold_vs_hopfield"}


def test_quick_tables_are_consistent(quick):
    result, _ = quick
    config = EXP.config("quick")
    s = result.scalars
    recall, summary = result.tables["recall"], result.tables["summary"]
    counts = [round(a * config.n) for a in config.loads]
    scaffold = recall[recall["model"] == "scaffold"]
    assert len(scaffold) == config.seeds * len(counts) * 2
    hop = recall[recall["model"] == "hopfield"]
    assert sorted(hop["P"].unique()) == [p for p in counts if p <= config.hopfield_max_load * config.n]
    assert recall["overlap"].between(-1, 1).all() and recall["error"].between(0, 1).all()
    assert ((summary["overlap_lo"] <= summary["overlap"] + 1e-12) & (summary["overlap"] <= summary["overlap_hi"] + 1e-12)).all()
    # The synapse budgets: 2 N_h (N_g + N) for the scaffold, N^2 for the Hopfield network.
    n, n_g, n_h = s["n"], s["num_grid"], s["num_hidden"]
    assert s["synapses_scaffold"] == 2 * n_h * (n_g + n) == result.tables["synapses"].query("model == 'scaffold'")["count"].sum()
    assert s["synapses_hopfield"] == n * n
    assert s["synapses_scaffold"] <= n * n < 2 * (n_h + 1) * (n_g + n)
    assert s["scaffold_fixed_fraction"] == 1.0
    # Clean recall is exact up to N_h patterns; the theory column is the closed form.
    clean = summary[(summary["model"] == "scaffold") & (summary["cue"] == "clean")]
    assert (clean.loc[clean["P"] <= n_h, "overlap"] == 1.0).all()
    assert (clean.loc[clean["P"] <= n_h, "theory"] == 1.0).all()
    row = clean[clean["P"] > n_h].iloc[0]
    a = n_h / row["P"]
    assert row["theory_mean_field"] == pytest.approx(1 - 2 * stats.norm.cdf(-math.sqrt(a / (1 - a))), abs=1e-12)
    assert row["theory"] < 1.0
    seq = result.tables["sequence"]
    assert seq["step"].nunique() == s["seq_length"] > 5 * s["hopfield_p_star"]


def test_same_seed_same_result_other_seed_differs():
    config = EXP.config("quick", SMALL)
    a, b = EXP.run(config, seed=5), EXP.run(config, seed=5)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    assert a.scalars == b.scalars
    c = EXP.run(config, seed=6)
    assert not a.tables["recall"]["overlap"].equals(c.tables["recall"]["overlap"])


def test_claim_statistics_on_hand_built_curves():
    curve = pd.DataFrame({"P": [10, 20, 30, 40, 50], "overlap": [1.0, 0.97, 0.5, 0.45, 0.2]})
    assert svh._p_star(curve, 0.95) == 20
    assert svh._p_star(curve, 0.99) == 10
    assert svh._p_star(curve, 1.01) == 0
    drop, p0, p1 = svh._window_drop(curve, 10)
    assert (drop, p0, p1) == (pytest.approx(0.47), 20, 30)
    drop, p0, p1 = svh._window_drop(curve, 30)                         # 0.97 at 20 -> 0.2 at 50
    assert (drop, p0, p1) == (pytest.approx(0.77), 20, 50)
    mean, lo, hi = svh._band(pd.Series([1.0, 2.0, 3.0]).to_numpy())
    assert mean == 2.0 and hi - mean == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert svh._theory(50, 40) == 1.0 and svh._theory(50, 100) == pytest.approx(math.erf(math.sqrt(0.5)))


def test_leverage_theory_against_a_plain_projection():
    gen = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(30, 12, generator=gen, dtype=torch.float64))
    proj = h @ torch.linalg.inv(h.T @ h) @ h.T                         # full column rank: H (H^T H)^-1 H^T
    idx = torch.tensor([0, 5, 7])
    d = proj.diagonal()[idx]
    want = float(torch.erf(torch.sqrt(d / (2 * (1 - d)))).mean())
    assert svh._leverage_theory(h, idx) == pytest.approx(want, abs=1e-10)
    assert abs(float(proj.diagonal().mean()) - 12 / 30) < 1e-10          # the mean leverage is N_h / P
    assert svh._leverage_theory(h[:10], torch.arange(10)) == 1.0       # P <= N_h: every d = 1


def test_claims_can_fail(quick):
    result, _ = quick
    broken = copy.deepcopy(result)
    summary = broken.tables["summary"]
    sc = (summary["model"] == "scaffold") & (summary["cue"] == "clean")
    # A cliff in the scaffold's curve, the Hopfield capacity moved, a start that fails.
    summary.loc[sc & (summary["P"] >= 120), "overlap"] = 0.1
    broken.scalars["hopfield_p_star"] = int(0.3 * broken.scalars["n"])
    broken.tables["sequence_summary"]["start_correct"] = 0.5
    noisy = (summary["model"] == "scaffold") & (summary["cue"] == "noisy")
    summary.loc[noisy, "error"] = 0.2
    failed = {c.name for c in EXP.claims(broken) if not c.passed}
    assert failed == set(CLAIMS)


def test_config_errors():
    with pytest.raises(ValueError, match="loads"):
        EXP.run(EXP.config("quick", {"loads": "0.2,0.1"}))
    with pytest.raises(ValueError, match="window"):
        EXP.run(EXP.config("quick", {"loads": "0.1,0.5,1.0"}))
    with pytest.raises(ValueError, match="positions"):
        EXP.run(dataclasses.replace(EXP.config("quick"), periods=(2, 3, 5)))
    with pytest.raises(ValueError, match="coprime"):
        EXP.run(dataclasses.replace(EXP.config("quick"), periods=(4, 6)))
    with pytest.raises(ValueError, match="seeds"):
        EXP.run(EXP.config("quick", {"seeds": "1"}))
    with pytest.raises(ValueError, match="cue_flip"):
        EXP.run(EXP.config("quick", {"cue_flip": "0.6"}))
    with pytest.raises(ValueError, match="rule"):
        EXP.run(EXP.config("quick", {"rule": "delta"}))
