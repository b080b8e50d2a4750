"""Experiment learned-vs-fixed-keys: quick profile, table invariants, metrics against plain references."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kvmem.experiments import learned_vs_fixed_keys as exp_mod

EXP = exp_mod.EXPERIMENT


@pytest.fixture(scope="module")
def quick():
    config = EXP.config("quick")
    return config, EXP.run(config, seed=0)


def test_registered_with_profiles():
    from kvmem.experiments import base

    assert base.REGISTRY["learned-vs-fixed-keys"] is EXP
    full = EXP.config("full")
    assert full.n_items == 100 and exp_mod.DIM == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.n_items = 3


def test_quick_tables_are_complete_and_bounded(quick):
    config, result = quick
    table = result.tables["retrieval"]
    n_conditions = len(config.noise_levels) + len(config.mask_modes) * len(config.mask_fractions)
    per_cell = len(config.datasets) * len(config.similarities) * len(config.maps)
    assert len(table) == per_cell * n_conditions * config.trials
    assert table["accuracy"].between(0, 1).all() and (table["mse"] >= 0).all()
    geo = result.tables["geometry"]
    assert len(geo) == per_cell * config.trials
    train = result.tables["training"]
    assert set(train["map"]) == set(exp_mod.LEARNED)
    assert result.config == dataclasses.asdict(config)


def test_identity_keys_are_the_inputs(quick):
    _, result = quick
    geo = result.tables["geometry"]
    ident = geo[geo["map"] == "identity"]
    assert np.allclose(ident["key_abs_cos"], ident["input_abs_cos"], atol=1e-12)
    assert np.allclose(ident["key_rsm_corr"], 1.0, atol=1e-12)
    # Euclidean similarity, clean cue: the item is its own nearest key, so recall is exact.
    table = result.tables["retrieval"]
    clean = table[(table["map"] == "identity") & (table["similarity"] == "neg_euclidean")
                  & (table["corruption"] == "noise") & (table["level"] == 0)]
    assert (clean["accuracy"] == 1.0).all()


def test_training_lowers_the_objective_below_the_starting_map(quick):
    _, result = quick
    train = result.tables["training"]
    for _, part in train.groupby(["dataset", "similarity", "map"]):
        part = part.sort_values("step")
        assert part["loss"].iloc[-3:].mean() < 0.8 * part["loss"].iloc[0]


def test_quick_claims_and_figures(quick):
    _, result = quick
    claims = EXP.claims(result)
    assert [c.name for c in claims] == [
        "learned_keys_less_correlated",
        "values_keep_input_structure",
        "learned_beat_identity_under_noise",
        "learned_beat_identity_on_partial_cues",
        "identity_optimal_for_gaussian_noise_euclidean",
    ]
    # The quick profile is the main job's (`kvmem reproduce`): every claim must hold there.
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    figs = EXP.plot(result)
    assert set(figs) == {"accuracy_noise", "accuracy_partial", "geometry", "rsm", "training"}
    import matplotlib.pyplot as plt

    for fig in figs.values():
        plt.close(fig)


def small_config(**changes):
    base = dict(n_items=10, trials=2, datasets=("random", "digits"), similarities=("scaled_dot",),
                maps=("identity", "scaffold", "learned"), noise_levels=(0.0, 0.3), mask_fractions=(0.5,),
                mask_modes=("random",), eval_cues=2, train_steps=10, rsm_items=4)
    base.update(changes)
    return dataclasses.replace(EXP.config("quick"), **base)


def test_same_seed_same_result_and_seed_matters():
    config = small_config()
    a, b, c = (EXP.run(config, seed=s) for s in (4, 4, 5))
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    assert not a.tables["retrieval"]["accuracy"].equals(c.tables["retrieval"]["accuracy"])
    assert a.scalars == b.scalars


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="datasets"):
        EXP.run(small_config(datasets=("mnist",)))
    with pytest.raises(ValueError, match="maps"):
        EXP.run(small_config(maps=()))
    with pytest.raises(ValueError, match="n_items"):
        EXP.run(small_config(n_items=5000))
    with pytest.raises(ValueError, match="mask_fractions"):
        EXP.run(small_config(mask_fractions=(1.5,)))
    with pytest.raises(TypeError, match="trials"):
        EXP.run(small_config(trials=1.5))


# -- metrics against plain references ---------------------------------------------------
def test_geometry_matches_numpy_reference():
    gen = torch.Generator().manual_seed(0)
    items = torch.rand(2, 6, 5, generator=gen, dtype=torch.float64)
    keys = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    values = items + 0.1 * torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    geo = exp_mod._geometry(items, keys, values)
    for t in range(2):
        mats = []
        for z in (items[t], keys[t], values[t]):
            z = z.numpy()
            c = np.array([[z[i] @ z[j] / (np.linalg.norm(z[i]) * np.linalg.norm(z[j])) for j in range(6)] for i in range(6)])
            mats.append(c[np.triu_indices(6, 1)])
        ci, ck, cv = mats
        assert geo["input_abs_cos"][t].item() == pytest.approx(np.abs(ci).mean(), abs=1e-12)
        assert geo["key_abs_cos"][t].item() == pytest.approx(np.abs(ck).mean(), abs=1e-12)
        assert geo["value_abs_cos"][t].item() == pytest.approx(np.abs(cv).mean(), abs=1e-12)
        assert geo["key_rsm_corr"][t].item() == pytest.approx(np.corrcoef(ck, ci)[0, 1], abs=1e-12)
        assert geo["value_rsm_corr"][t].item() == pytest.approx(np.corrcoef(cv, ci)[0, 1], abs=1e-12)


def test_accuracy_matches_loop():
    gen = torch.Generator().manual_seed(1)
    items = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    out = items.repeat(1, 3, 1) + 0.4 * torch.randn(2, 12, 3, generator=gen, dtype=torch.float64)
    acc, mse = exp_mod._accuracy(out, items)
    for t in range(2):
        hits, err = 0, 0.0
        for m in range(12):
            d = [math.dist(out[t, m].tolist(), items[t, n].tolist()) for n in range(4)]
            hits += int(np.argmin(d) == m % 4)
            err += sum((a - b) ** 2 for a, b in zip(out[t, m].tolist(), items[t, m % 4].tolist())) / 3
        assert acc[t].item() == pytest.approx(hits / 12, abs=1e-15)
        assert mse[t].item() == pytest.approx(err / 12, abs=1e-12)


def test_evaluation_cues_are_fresh_and_corrupted_as_named():
    config = small_config(noise_levels=(0.0, 0.5), mask_modes=("random", "bottom"))
    items = torch.rand(config.trials, config.n_items, exp_mod.DIM, generator=torch.Generator().manual_seed(2)) + 0.5
    cues = exp_mod._eval_cues(items, config, torch.Generator().manual_seed(3))
    base = items.repeat(1, config.eval_cues, 1)
    assert torch.equal(cues[("noise", 0.0)], base)
    assert float((cues[("noise", 0.5)] - base).std()) == pytest.approx(0.5, rel=0.05)
    hidden = cues[("mask-random", 0.5)] == 0
    assert (hidden.sum(-1) == 32).all()
    assert (cues[("mask-bottom", 0.5)][..., 32:] == 0).all() and torch.equal(cues[("mask-bottom", 0.5)][..., :32], base[..., :32])


def test_every_purpose_gets_its_own_seed():
    seeds = [exp_mod._seed(s, purpose, d) for s in (0, 1) for purpose in ("data", "eval", "objective") for d in (0, 1)]
    seeds += [exp_mod._seed(s, purpose, d, k, m) for s in (0, 1) for purpose in ("train", "beta")
              for d in (0, 1) for k in (0, 1) for m in range(6)]
    seeds += [exp_mod._seed(s, "maps", d, k) + j for s in (0, 1) for d in (0, 1) for k in (0, 1) for j in (0, 1, 2)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= x < 2**31 for x in seeds)
    assert exp_mod._seed(0, "eval", 0) == exp_mod._seed(0, "eval", 0)
