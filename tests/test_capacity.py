"""The capacity paradigm: patterns, scoring against loops, a closed form, and bisection."""

import math

import numpy as np
import pytest
import pandas as pd
import torch

import kvmem
from kvmem.paradigms import capacity
from kvmem.paradigms.capacity import Criterion


def test_patterns_shapes_alphabets_and_seeds():
    bip = capacity.make_patterns(3, 4, 1000, "bipolar", seed=1)
    assert bip.shape == (3, 4, 1000) and set(bip.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(bip.mean())) < 0.05
    sparse = capacity.make_patterns(3, 4, 1000, "sparse", coding_level=0.1, seed=1)
    assert set(sparse.unique().tolist()) == {0.0, 1.0} and abs(float(sparse.mean()) - 0.1) < 0.02
    assert torch.equal(capacity.make_patterns(2, 3, 5, "gaussian", seed=7), capacity.make_patterns(2, 3, 5, "gaussian", seed=7))
    assert not torch.equal(capacity.make_patterns(2, 3, 5, seed=7), capacity.make_patterns(2, 3, 5, seed=8))
    with pytest.raises(ValueError, match="kind"):
        capacity.make_patterns(1, 1, 1, "ternary")
    with pytest.raises(ValueError, match="coding_level"):
        capacity.make_patterns(1, 1, 1, "sparse", coding_level=1.5)


def test_scores_match_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    target = capacity.make_patterns(2, 3, 9, seed=gen)
    out = torch.randn(2, 3, 9, generator=gen)
    s = capacity.score(out, target, "bipolar")
    for t in range(2):
        for p in range(3):
            dec = [1.0 if x >= 0 else -1.0 for x in out[t, p].tolist()]
            wrong = sum(d != y for d, y in zip(dec, target[t, p].tolist()))
            assert math.isclose(float(s["bit_error"][t, p]), wrong / 9)
            assert math.isclose(float(s["overlap"][t, p]), sum(d * y for d, y in zip(dec, target[t, p].tolist())) / 9)
            assert bool(s["exact"][t, p]) == (wrong == 0)
    g = capacity.score(target + 0.1, target, "gaussian")
    np.testing.assert_allclose(g["bit_error"].numpy(), 0.1 * 3 / 3.0, rtol=1e-6)  # |0.1 * 1| / |+-1| per entry


def test_criteria():
    scores = {"bit_error": torch.tensor([0.0, 0.02]), "overlap": torch.tensor([1.0, 0.5]), "exact": torch.tensor([True, False])}
    assert Criterion("bit_error", 0.01).success(scores).tolist() == [True, False]
    assert Criterion("overlap", 0.6).success(scores).tolist() == [True, False]
    assert Criterion("exact").success(scores).tolist() == [True, False]
    assert Criterion("bit_error", 0.01).name == "bit_error<=0.01"
    with pytest.raises(ValueError, match="metric"):
        Criterion("accuracy")


def test_hebbian_one_step_bit_error_matches_signal_to_noise_theory():
    # Matrix memory with keys = values = +-1 patterns answers xi_1 with (N + P - 1) xi_1 plus
    # crosstalk of variance (P - 1)(N - 1): bit error Phi(-(N + P - 1) / sqrt((P - 1)(N - 1))).
    from scipy.stats import norm

    n, p = 400, 161
    expected = capacity.expected_hebbian_bit_error(n, p, zero_diagonal=False)
    assert expected == pytest.approx(norm.cdf(-(n + p - 1) / math.sqrt((p - 1) * (n - 1))), rel=1e-9)
    table = capacity.probe(lambda n: kvmem.MatrixMemory(n, n), n=n, p=p, trials=10)
    assert float(table["bit_error"].mean()) == pytest.approx(expected, rel=0.15)
    assert capacity.expected_hebbian_bit_error(n, p) == pytest.approx(norm.cdf(-math.sqrt(n / (p - 1))), rel=1e-9)


def test_hardmax_slot_memory_is_perfect_and_corruption_is_applied():
    def flip_one(x, gen):
        x = x.clone()
        x[..., 0] = -x[..., 0]
        return x

    table = capacity.probe(lambda n: kvmem.SlotMemory("dot", "hardmax"), n=64, p=200, trials=5, corrupt=flip_one)
    assert (table["exact"] == 1.0).all() and (table["success"] == 1.0).all()


def test_find_capacity_bisects_to_the_exact_limit():
    # A ring buffer of 13 slots recalls all P patterns exactly when P <= 13.
    factory = lambda n: kvmem.SlotMemory("dot", "hardmax", capacity=13)  # noqa: E731
    p_star, probed = capacity.find_capacity(factory, n=32, criterion=Criterion("exact", level=1.0), lo=1, hi=64, trials=3)
    assert p_star == 13
    assert len(probed) <= 2 + math.ceil(math.log2(64))


def test_find_capacity_on_a_noisy_model_stops_at_a_boundary():
    # Bisection guarantees success at P* and failure at P* + 1 (with the same probes).
    crit = Criterion("bit_error", 0.01, 0.5)
    factory = lambda n: kvmem.MatrixMemory(n, n)  # noqa: E731
    p_star, probed = capacity.find_capacity(factory, n=200, criterion=crit, lo=2, hi=200, trials=10)
    rates = dict(zip(probed["p"], probed["success"]))
    assert rates[p_star] >= 0.5 and rates[p_star + 1] < 0.5
    assert 20 < p_star < 150


def test_capacity_curve_one_row_per_p():
    curve = capacity.capacity_curve(lambda n: kvmem.MatrixMemory(n, n), n=50, ps=[2, 10, 40], trials=4)
    assert curve["p"].tolist() == [2, 10, 40]
    assert curve["bit_error"].is_monotonic_increasing


@pytest.mark.parametrize(
    "factory, kind",
    [
        (lambda n: kvmem.ClassicalHopfield(), "bipolar"),
        (lambda n: kvmem.DenseAssociativeMemory(n=3), "bipolar"),
        (lambda n: kvmem.ModernHopfield(beta=1.0), "bipolar"),
        (lambda n: kvmem.UniversalHopfield("dot", {"name": "softmax", "beta": 1.0}), "bipolar"),
        (lambda n: kvmem.SparseDistributedMemory(n, n, num_locations=2000, activation_prob=0.05, seed=1), "sparse"),
    ],
)
def test_paradigm_drives_every_autoassociative_model(factory, kind):
    from kvmem.paradigms import flip_bits

    def corrupt(x, gen):
        return flip_bits(x, 0.05, code="bipolar" if kind == "bipolar" else "binary", generator=gen)

    table = capacity.probe(factory, n=64, p=3, trials=4, kind=kind, corrupt=corrupt, steps=20)
    assert (table["success"] == 1.0).all(), table


def test_paradigm_sees_the_classical_memory_cliff():
    few = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=200, p=10, trials=4, steps=30)
    many = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=200, p=60, trials=4, steps=30)
    assert float(few["overlap"].mean()) > 0.99 and float(many["overlap"].mean()) < 0.9


def test_mean_criterion_bisects_on_the_mean_bit_error():
    # Hetero-free Hebbian auto-association: the mean bit error rises with P; "over='mean'"
    # must stop where the table's mean crosses the threshold, whatever the per-probe rates.
    crit = Criterion("bit_error", 0.02, over="mean")
    assert crit.name == "mean bit_error<=0.02"
    factory = lambda n: kvmem.MatrixMemory(n, n)  # noqa: E731
    p_star, probed = capacity.find_capacity(factory, n=100, criterion=crit, lo=2, hi=100, trials=8, max_probes=10)
    means = dict(zip(probed["p"], probed["bit_error"]))
    assert means[p_star] <= 0.02 < means[p_star + 1]
    assert probed["within"].tolist() == [m <= 0.02 for m in probed["bit_error"]]
    with pytest.raises(ValueError, match="over"):
        Criterion("exact", over="mean")
    with pytest.raises(ValueError, match="over"):
        Criterion(over="median")


def test_max_probes_probes_the_first_patterns_only():
    crit = Criterion("bit_error", 0.01)
    full = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=64, p=30, trials=4, criterion=crit, seed=5, steps=1)
    part = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=64, p=30, trials=4, criterion=crit, seed=5, steps=1,
                          max_probes=10)
    # A plain recomputation: the same patterns (same seed), one sync step, first 10 probes.
    x = capacity.make_patterns(4, 30, 64, seed=5)
    w = x.transpose(-1, -2) @ x / 64
    w = w - torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))
    wrong = (torch.where(x @ w >= 0, 1.0, -1.0) != x).double().mean(-1)  # [trials, 30]
    assert np.allclose(part["bit_error"].to_numpy(), wrong[:, :10].mean(-1).numpy())
    assert np.allclose(full["bit_error"].to_numpy(), wrong.mean(-1).numpy())
    assert wrong.sum() > 0  # P/N = 0.47: one step leaves errors, so the two tables are informative


def test_retrieve_kwargs_reach_the_dynamics_and_are_refused_without_them():
    crit = Criterion("bit_error", 0.01)
    corrupt = lambda x, g: kvmem.paradigms.flip_bits(x, 0.1, generator=g)  # noqa: E731
    a = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=64, p=4, trials=3, corrupt=corrupt, mode="async", seed=1)
    b = capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=64, p=4, trials=3, corrupt=corrupt, mode="async", seed=1)
    assert a.equals(b) and (a["bit_error"] == 0).all()
    with pytest.raises(ValueError, match="mode"):
        capacity.probe(lambda n: kvmem.ClassicalHopfield(), n=64, p=4, trials=3, corrupt=corrupt, mode="parallel")
    with pytest.raises(TypeError, match="no retrieve dynamics"):
        capacity.probe(lambda n: kvmem.SlotMemory("dot", "hardmax"), n=16, p=4, trials=2, criterion=crit, mode="async")
@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_probe_on_a_device_draws_the_same_probes(device):
    from kvmem import ClassicalHopfield
    from kvmem.paradigms import capacity as cap
    from kvmem.paradigms.corruption import flip_bits

    corrupt = lambda x, g: flip_bits(x, 0.1, generator=g)  # noqa: E731
    here = cap.probe(lambda n: ClassicalHopfield(), n=64, p=6, trials=8, corrupt=corrupt, steps=20, seed=3)
    there = cap.probe(lambda n: ClassicalHopfield(), n=64, p=6, trials=8, corrupt=corrupt, steps=20, seed=3,
                      device=device)
    # Integer-valued Hebbian fields: the same draws give the same states on any device.
    pd.testing.assert_frame_equal(here, there, check_exact=True)
