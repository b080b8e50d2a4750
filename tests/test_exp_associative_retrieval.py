"""Experiment associative-retrieval-capacity: quick profile, invariants, losses against MatrixMemory."""

import dataclasses

import pytest
import torch

import kvmem
from kvmem.experiments import associative_retrieval_capacity as arc

EXP = arc.EXPERIMENT


@pytest.fixture(scope="module")
def quick():
    config = EXP.config("quick")
    return config, EXP.run(config, seed=0)


def test_registered_with_profiles():
    from kvmem.experiments import base

    assert base.REGISTRY["associative-retrieval-capacity"] is EXP
    full = EXP.config("full")
    assert full.key_dim == 64 and {"elu+1", "dpfp1", "dpfp2", "dpfp3", "softmax"} <= set(full.feature_maps)
    assert any(name.startswith("favor") for name in full.feature_maps)
    assert set(full.replace_n_pairs) <= set(full.n_pairs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.key_dim = 3


def test_quick_claims_pass_and_tables_are_complete(quick):
    config, result = quick
    claims = EXP.claims(result)
    assert [c.name for c in claims] == ["capacity_grows_with_dpfp_nu", "delta_beats_sum_when_keys_recur",
                                        "softmax_bounds_fast_weights"]
    assert all(c.passed for c in claims), claims
    cap, rep = result.tables["capacity"], result.tables["replace"]
    n_fast = sum(name != "softmax" for name in config.feature_maps)
    n_soft = len(config.feature_maps) - n_fast
    assert len(cap) == len(config.n_pairs) * (2 * n_fast + n_soft)
    assert len(rep) == len(config.replace_n_pairs) * (2 * n_fast + n_soft)
    for table in (cap, rep):
        assert table["accuracy"].between(0, 1).all() and (table["loss"] >= 0).all()
    assert result.config == dataclasses.asdict(config)
    dims = result.tables["summary"].set_index(["feature_map", "rule"])["feature_dim"]
    assert dims[("dpfp3", "sum")] == 2 * config.key_dim * 3 and dims[("elu+1", "sum")] == config.key_dim
    assert set(EXP.plot(result)) == {"capacity"}


def test_same_seed_same_result():
    config = arc.Config(key_dim=8, n_pairs=(4, 12), feature_maps=("dpfp1", "softmax"), train_steps=10,
                        delta_orders=2, replace_n_pairs=(4,), replace_sequences=3)
    a, b = EXP.run(config, seed=5), EXP.run(config, seed=5)
    for name in ("capacity", "replace", "summary"):
        assert a.tables[name].equals(b.tables[name])
    c = EXP.run(config, seed=6)
    assert not a.tables["capacity"]["loss"].equals(c.tables["capacity"]["loss"])


def test_losses_agree_with_matrix_memory():
    """The op-based evaluation equals writing and reading a MatrixMemory pair by pair."""
    config = arc.Config(key_dim=6, delta_orders=1)
    fmap = arc.parse_map("dpfp1", 6)
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    order_gen = torch.Generator().manual_seed(1)
    rows = {r["rule"]: r for r in arc.capacity_rows(keys, fmap, config, order_gen)}
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    values = torch.eye(10, dtype=torch.float64)
    for rule, kwargs in (("sum", {"rule": "hebbian", "normalize": True}),
                         ("delta", {"rule": "delta", "beta": 1.0, "key_norm": "l2"})):
        mem = kvmem.MatrixMemory(6, 10, feature_map={"name": "dpfp", "nu": 1}, **kwargs)
        for j in order.tolist():
            mem.write(keys[j : j + 1], values[j : j + 1])
        out = mem.read(keys)
        loss = float((0.5 * ((values - out) ** 2).sum(-1)).mean())
        acc = float((out.argmax(-1) == torch.arange(10)).double().mean())
        assert rows[rule]["loss"] == pytest.approx(loss, rel=1e-9, abs=1e-12), rule
        assert rows[rule]["accuracy"] == acc


def test_replace_sequences_latest_values():
    keys, values, latest, present = arc.make_replace_sequences(5, 4, torch.Generator().manual_seed(2))
    assert keys.shape == values.shape == (4, 10) and latest.shape == present.shape == (4, 5)
    for s in range(4):
        last = {}
        for key, value in zip(keys[s].tolist(), values[s].tolist()):
            last[key] = value
        assert set(last) == {j for j in range(5) if present[s, j]}
        assert all(latest[s, key] == value for key, value in last.items())


def test_delta_rule_replaces_and_sum_rule_averages_with_orthogonal_keys():
    # One-hot keys through DPFP nu=1 give disjoint features: within capacity the delta rule
    # returns the latest value exactly, the sum rule the average of all values of the key.
    keys = torch.zeros(3, 4, dtype=torch.float64)
    keys[0, 0:2], keys[1, 2:4], keys[2, [0, 3]] = 1.0, -1.0, torch.tensor([-1.0, 1.0], dtype=torch.float64)
    fmap = arc.parse_map("dpfp1", 4)
    k_idx = torch.tensor([[0, 1, 0, 2, 1, 0]])
    v_idx = torch.tensor([[0, 1, 2, 2, 0, 1]])
    latest = torch.tensor([[1, 0, 2]])
    rows = {r["rule"]: r for r in arc.replace_rows(keys, fmap, (k_idx, v_idx, latest, torch.ones(1, 3, dtype=torch.bool)))}
    assert rows["delta"]["loss"] == pytest.approx(0.0, abs=1e-12) and rows["delta"]["accuracy"] == 1.0
    # Key 0 holds values 0, 2, 1 (one third each), key 1 values 1, 0, key 2 value 2.
    expected = (0.5 * (2 / 9 + 4 / 9) + 0.5 * (0.25 + 0.25) + 0.0) / 3
    assert rows["sum"]["loss"] == pytest.approx(expected, rel=1e-9)


def test_bad_settings():
    with pytest.raises(ValueError, match="feature_maps"):
        arc.parse_map("gauss", 8)
    with pytest.raises(ValueError, match="replace_n_pairs"):
        EXP.run(arc.Config(key_dim=4, n_pairs=(4,), feature_maps=("dpfp1",), replace_n_pairs=(8,)))
    with pytest.raises(ValueError, match="profile"):
        EXP.config("medium")
