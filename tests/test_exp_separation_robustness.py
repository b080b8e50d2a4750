"""separation-robustness: quick-profile claims, reproducibility, table shape, and the scoring
checked against plain float64 loops."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kvmem import UniversalHopfield
from kvmem.experiments import separation_robustness as sr
from kvmem.paradigms import flip_bits

CLAIMS = ["hardmax_perfect_without_noise", "max_lowest_error_without_noise", "max_fragile_with_noise",
          "max_recall_not_beaten", "distance_beats_dot_on_digits"]


@pytest.fixture(scope="module")
def quick():
    return sr.run(sr.QUICK, seed=5)


def test_quick_claims_pass_and_figures(quick):
    claims = sr.claims(quick)
    assert [c.name for c in claims] == CLAIMS
    assert all(c.passed for c in claims), [c.to_dict() for c in claims if not c.passed]
    import matplotlib.pyplot as plt

    figs = sr.plot(quick)
    assert set(figs) == {"separation_accuracy", "separation_mse", "similarity"}
    for fig in figs.values():
        plt.close(fig)


def test_same_seed_same_result_and_other_seed_differs(quick):
    again = sr.run(sr.QUICK, seed=5)
    for name, table in quick.tables.items():
        assert table.equals(again.tables[name]), name
    assert quick.scalars == again.scalars
    small = dataclasses.replace(sr.QUICK, datasets=("random",), corruptions=("gaussian",), trials=4)
    a, b = (sr.run(small, seed=s).tables["robustness"] for s in (5, 6))
    assert not np.allclose(a["mse"], b["mse"])


def test_table_shape_and_ranges(quick):
    cfg = sr.QUICK
    table = quick.tables["robustness"]
    n_levels = len(cfg.gaussian_levels) + len(cfg.flip_levels) + len(cfg.mask_levels)
    # Every similarity gets hard max + the softmax grid; the sweep similarity also gets identity,
    # top-k, threshold, each polynomial and exponential.
    per_sim = 1 + len(cfg.softmax_betas)
    n_seps = len(cfg.similarities) * per_sim + 4 + len(cfg.poly_ns)
    assert cfg.sweep_similarity in cfg.similarities
    assert len(table) == len(cfg.datasets) * len(cfg.n_items) * n_levels * n_seps
    assert not table.duplicated(["dataset", "n_items", "corruption", "level", "similarity", "separation"]).any()
    assert table["accuracy"].between(0, 1).all() and (table["mse"] >= 0).all()
    assert table["cosine"].between(-1 - 1e-6, 1 + 1e-6).all()
    assert (table[[c for c in table if c.endswith("_sem")]] >= 0).all().all()
    assert (table["trials"] == cfg.trials).all()
    assert set(table.loc[table["sweep"], "similarity"]) == {cfg.sweep_similarity}
    cross = quick.tables["crossover"]
    assert len(cross) == len(cfg.datasets) * len(cfg.n_items) * len(cfg.corruptions)
    # ratio_top is the MSE of the named smooth separation over hard max's, both at the largest level.
    for _, row in cross.iterrows():
        at = table[(table["dataset"] == row["dataset"]) & (table["n_items"] == row["n_items"])
                   & (table["corruption"] == row["corruption"]) & (table["level"] == row["top_level"]) & table["sweep"]]
        hard = float(at.loc[at["separation"] == "hardmax", "mse"].iloc[0])
        smooth = at[at["separation"] != "hardmax"]
        assert row["smooth_mse_top"] == smooth["mse"].min()
        assert math.isclose(row["ratio_top"], row["smooth_mse_top"] / hard)


def _loop_read_and_score(items, cues, weights_fn, normalize):
    """Plain float64 loops: z_i = sum_n w_in x_n (weights / their sum), then the three scores."""
    t_count, p, d = items.shape
    acc, mse, cos = [], [], []
    for t in range(t_count):
        hits, errs, coss = 0, 0.0, 0.0
        for i in range(p):
            w = weights_fn(cues[t, i], items[t])
            if normalize:
                total = sum(w)
                w = [wn / total for wn in w] if total > 0 else [0.0] * p
            z = [sum(w[n] * items[t, n, k] for n in range(p)) for k in range(d)]
            dists = [sum((z[k] - items[t, j, k]) ** 2 for k in range(d)) for j in range(p)]
            hits += int(min(range(p), key=lambda j: dists[j]) == i)
            errs += sum((z[k] - items[t, i, k]) ** 2 for k in range(d)) / d
            nz = math.sqrt(sum(v * v for v in z))
            nx = math.sqrt(sum(float(v) ** 2 for v in items[t, i]))
            coss += sum(z[k] * items[t, i, k] for k in range(d)) / max(nz * nx, 1e-12)
        acc.append(hits / p)
        mse.append(errs / p)
        cos.append(coss / p)
    return np.array(acc), np.array(mse), np.array(cos)


def _cos(a, b):
    return float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b)))


@pytest.mark.parametrize(
    "separation, weights",
    [
        ({"name": "softmax", "beta": 4.0},
         lambda q, xs: [math.exp(4.0 * _cos(q, x)) for x in xs]),
        ("hardmax",
         lambda q, xs: (lambda s: [1.0 if j == max(range(len(s)), key=lambda n: (s[n], -n)) else 0.0
                                   for j in range(len(s))])([_cos(q, x) for x in xs])),
        ("identity", lambda q, xs: [_cos(q, x) for x in xs]),
        ({"name": "threshold", "theta": 0.6, "normalize": True},
         lambda q, xs: [1.0 if _cos(q, x) >= 0.6 else 0.0 for x in xs]),
    ],
)
def test_read_and_score_match_plain_loops(separation, weights):
    gen = torch.Generator().manual_seed(1)
    items = (torch.rand(3, 5, 6, generator=gen) < 0.5).double()
    items[:, :, 0] = 1.0  # no all-zero item, so every cosine is defined
    cues = items + 0.4 * torch.randn(items.shape, generator=gen, dtype=torch.float64)
    out = sr.read("cosine", separation, items, cues, normalize=True)
    got = sr.score(out, items)
    acc, mse, cos = _loop_read_and_score(items.numpy(), cues.numpy(), weights, normalize=True)
    np.testing.assert_allclose(got["accuracy"].numpy(), acc)
    np.testing.assert_allclose(got["mse"].numpy(), mse, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["cosine"].numpy(), cos, rtol=1e-10, atol=1e-12)


def test_score_on_a_hand_made_case():
    items = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    # Read 0 is exact; read 1 sits nearer item 2 than item 1 (wrong); read 2 is off by (0.1, -0.1).
    out = torch.tensor([[[0.0, 0.0], [0.1, 0.8], [0.1, 0.9]]])
    got = sr.score(out, items)
    assert got["accuracy"].tolist() == [pytest.approx(2 / 3)]
    expected_mse = (0.0 + (0.81 + 0.64) / 2 + (0.01 + 0.01) / 2) / 3
    assert got["mse"].item() == pytest.approx(expected_mse)
    # cosine: 0 for the all-zero read, cos((0.1, 0.8), (1, 0)), cos((0.1, 0.9), (0, 1))
    expected_cos = (0.0 + 0.1 / math.hypot(0.1, 0.8) + 0.9 / math.hypot(0.1, 0.9)) / 3
    assert got["cosine"].item() == pytest.approx(expected_cos)


def test_unnormalised_read_is_the_universal_hopfield_read():
    gen = torch.Generator().manual_seed(2)
    items = torch.rand(4, 7, 9, generator=gen)
    cues = items + 0.3 * torch.randn(items.shape, generator=gen)
    for sim, sep in (("neg_manhattan", {"name": "softmax", "beta": 2.0}), ("dot", "hardmax"), ("cosine", "identity")):
        mem = UniversalHopfield(similarity=sim, separation=sep)
        mem.write(items)
        torch.testing.assert_close(sr.read(sim, sep, items, cues), mem.read(cues))
    # Weights that already sum to one are unchanged by the normalisation.
    torch.testing.assert_close(sr.read("dot", "hardmax", items, cues, normalize=True),
                               sr.read("dot", "hardmax", items, cues))


def test_score_gap_against_a_loop():
    gen = torch.Generator().manual_seed(3)
    items = torch.rand(2, 4, 5, generator=gen, dtype=torch.float64)
    gaps = []
    for t in range(2):
        for i in range(4):
            for j in range(4):
                if i != j:
                    di = float(-(items[t, i] - items[t, i]).abs().sum())
                    dj = float(-(items[t, i] - items[t, j]).abs().sum())
                    gaps.append(di - dj)
    assert sr.score_gap("neg_manhattan", items) == pytest.approx(sum(gaps) / len(gaps), rel=1e-12)


def test_corruptions():
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 5, 40, generator=gen) < 0.5).float()
    # On binary patterns the flip corruption is flip_bits with code="binary" and the same seed.
    assert torch.equal(sr.corrupt(x, "flip", 0.3, seed=9), flip_bits(x, 0.3, code="binary", seed=9))
    # One seed: nested corrupted positions and one Gaussian direction across levels.
    for kind in ("flip", "mask"):
        low, high = sr.corrupt(x, kind, 0.2, seed=9) != x, sr.corrupt(x, kind, 0.5, seed=9) != x
        assert bool((low <= high).all()) and int(high.sum()) > int(low.sum())
    torch.testing.assert_close(sr.corrupt(x, "gaussian", 1.0, seed=9) - x, 2 * (sr.corrupt(x, "gaussian", 0.5, seed=9) - x))
    masked = sr.corrupt(x, "mask", 0.5, seed=9)
    assert bool((masked <= x).all()) and bool(((x - masked).sum(-1) <= 20).all())
    with pytest.raises(ValueError, match="kind"):
        sr.corrupt(x, "blur", 0.1, seed=0)


def test_digits_are_the_bundled_data_in_unit_range():
    from sklearn.datasets import load_digits

    x = sr.load_digits_unit()
    assert tuple(x.shape) == (1797, 64)
    np.testing.assert_array_equal(x.numpy() * 16, load_digits().data)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"trials": 0}, "trials"),
        ({"datasets": ("mnist",)}, "datasets"),
        ({"datasets": ()}, "datasets"),
        ({"corruptions": ("gaussian", "gaussian")}, "corruptions"),
        ({"n_items": (1,)}, "n_items"),
        ({"n_items": (2000,)}, "n_items"),
        ({"flip_levels": (0.2, 1.5)}, "flip_levels"),
        ({"gaussian_levels": (-0.1,)}, "gaussian_levels"),
        ({"similarities": ("dot", "bogus")}, "similarities"),
        ({"sweep_similarity": "bogus"}, "sweep_similarity"),
        ({"softmax_betas": (0.0,)}, "softmax_betas"),
        ({"density": 1.0}, "density"),
        ({"poly_ns": (0,)}, "poly_ns"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_bad_config_values_are_rejected_by_name(change, match):
    with pytest.raises(ValueError, match=match):
        sr.run(dataclasses.replace(sr.QUICK, **change))


def test_config_type_and_overrides():
    with pytest.raises(TypeError, match="config"):
        sr.validate({"trials": 3})
    cfg = sr.EXPERIMENT.config("quick", {"n_items": "4,8", "datasets": "random", "softmax_betas": "2"})
    assert cfg.n_items == (4, 8) and cfg.datasets == ("random",) and cfg.softmax_betas == (2.0,)
    sr.validate(cfg)
    sr.validate(sr.EXPERIMENT.config("full"))
