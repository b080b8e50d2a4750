"""SparseDistributedMemory and the softmax link: float64 loops, combinatorics vs Monte Carlo."""

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import kvmem
from kvmem.memory.sdm import (
    SparseDistributedMemory,
    fit_softmax_beta,
    log_intersection_probability,
    radius_for_probability,
    softmax_fit,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def bits(gen, *shape):
    return torch.randint(0, 2, shape, generator=gen).float()


def loop_sdm(addresses, radius, keys, values, queries):
    """Plain float64 reference: a double loop over pairs and hard locations."""
    a, k, v, q = (np.asarray(t, dtype=np.float64) for t in (addresses, keys, values, queries))
    counters = np.zeros((a.shape[0], v.shape[1]))
    for p in range(k.shape[0]):
        for loc in range(a.shape[0]):
            if np.sum(a[loc] != k[p]) <= radius:
                counters[loc] += 2.0 * v[p] - 1.0
    out = np.zeros((q.shape[0], v.shape[1]))
    for m in range(q.shape[0]):
        total = np.zeros(v.shape[1])
        for loc in range(a.shape[0]):
            if np.sum(a[loc] != q[m]) <= radius:
                total += counters[loc]
        out[m] = (total > 0).astype(float)
    return counters, out


def test_write_and_read_match_double_loop():
    gen = torch.Generator().manual_seed(0)
    k, v, q = bits(gen, 12, 10), bits(gen, 12, 4), bits(gen, 9, 10)
    mem = SparseDistributedMemory(10, 4, num_locations=60, radius=3, seed=5)
    mem.write(k[:5], v[:5])
    mem.write(k[5:], v[5:])
    counters, out = loop_sdm(mem.addresses, 3, k, v, q)
    np.testing.assert_array_equal(mem.counters.numpy(), counters)
    np.testing.assert_array_equal(mem.read(q).numpy(), out)
    assert int(mem.writes) == 12


def test_details_weights_are_activations_and_scores_negative_hamming():
    gen = torch.Generator().manual_seed(1)
    mem = SparseDistributedMemory(8, 3, num_locations=20, radius=2, seed=1)
    mem.write(bits(gen, 4, 8), bits(gen, 4, 3))
    q = bits(gen, 5, 8)
    r = mem.read(q, details=True)
    dist = np.array([[np.sum(qi != a) for a in mem.addresses.numpy()] for qi in q.numpy()])
    np.testing.assert_array_equal(r.scores.numpy(), -dist)
    np.testing.assert_array_equal(r.weights.numpy(), (dist <= 2).astype(float))
    assert r.weights.dtype == torch.float32 and r.weights.shape == (5, 20)
    torch.testing.assert_close(r.values, mem.read(q))


def test_ties_and_no_active_location_read_zero():
    mem = SparseDistributedMemory(4, 2, num_locations=16, radius=0, seed=0)
    key = mem.addresses[:1].clone()
    mem.write(torch.cat([key, key]), torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    # counters of the one active location: [+1 - 1, +1 + 1] = [0, 2] -> tie reads 0.
    assert mem.read(key).tolist() == [[0.0, 1.0]]
    # A query far from every address activates nothing and reads all zeros.
    far = SparseDistributedMemory(6, 2, num_locations=1, radius=0, seed=0)
    far.write(far.addresses.clone(), torch.ones(1, 2))
    assert far.read(1.0 - far.addresses).tolist() == [[0.0, 0.0]]


def test_addresses_seeded_shared_and_redrawn():
    a = SparseDistributedMemory(16, 2, 50, radius=5, seed=3).addresses
    b = SparseDistributedMemory(16, 2, 50, radius=5, seed=3).addresses
    c = SparseDistributedMemory(16, 2, 50, radius=5, seed=4).addresses
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert "addresses" not in SparseDistributedMemory(16, 2, 50, radius=5).state_dict()


def test_batched_memories_share_addresses_but_not_counters():
    gen = torch.Generator().manual_seed(2)
    k, v = bits(gen, 3, 6, 12), bits(gen, 3, 6, 5)
    q = bits(gen, 3, 4, 12)
    mem = SparseDistributedMemory(12, 5, 80, radius=4, seed=9)
    mem.write(k, v)
    assert mem.batch_shape == (3,)
    for b in range(3):
        single = SparseDistributedMemory(12, 5, 80, radius=4, seed=9)
        single.write(k[b], v[b])
        assert torch.equal(mem.counters[b], single.counters)
        assert torch.equal(mem.read(q)[b], single.read(q[b]))
    # One set of queries broadcasts to every memory.
    assert mem.read(q[0]).shape == (3, 4, 5)


def test_activation_prob_picks_smallest_radius_reaching_p():
    for n, p in [(64, 0.05), (100, 0.001), (20, 0.5), (10, 1.0)]:
        r = radius_for_probability(n, p)
        assert stats.binom.cdf(r, n, 0.5) >= p - 1e-12
        assert r == 0 or stats.binom.cdf(r - 1, n, 0.5) < p
    assert radius_for_probability(10, 1.0) == 10
    mem = SparseDistributedMemory(64, 1, 10, activation_prob=0.05)
    assert mem.radius == 25 and mem.config()["activation_prob"] == 0.05


def test_activation_fraction_close_to_binomial():
    # n = 32, r = 13: P(active) = binom.cdf(13, 32, 1/2) = 0.215; 2000 x 64 activations.
    mem = SparseDistributedMemory(32, 1, 2000, radius=13, seed=0)
    gen = torch.Generator().manual_seed(3)
    frac = float(mem.activation(bits(gen, 64, 32)).mean())
    p = stats.binom.cdf(13, 32, 0.5)
    # Locations are shared by all queries, so use the 2000 locations for a loose 5-sigma bound.
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / 2000)


def test_autoassociative_retrieve_cleans_up_noisy_cue():
    gen = torch.Generator().manual_seed(4)
    n = 64
    patterns = bits(gen, 5, n)
    mem = SparseDistributedMemory(n, n, 2000, activation_prob=0.05, seed=1)
    mem.write(patterns)  # values=None: auto-association
    assert torch.equal(mem.read(patterns), patterns)
    flip = torch.zeros(5, n)
    flip[:, :6] = 1.0
    cue = (patterns + flip) % 2
    r = mem.retrieve(cue, steps=10)
    assert torch.equal(r.states, patterns)
    assert r.converged.all() and (r.steps >= 1).all() and (r.steps <= 9).all()
    # A stored pattern is already a fixed point: zero steps.
    r0 = mem.retrieve(patterns)
    assert r0.steps.tolist() == [0] * 5 and r0.converged.all()


def test_retrieve_steps_counts_updates_against_loop():
    gen = torch.Generator().manual_seed(5)
    mem = SparseDistributedMemory(16, 16, 300, radius=6, seed=2)
    mem.write(bits(gen, 12, 16))
    cue = bits(gen, 6, 16)
    r = mem.retrieve(cue, steps=4)
    for m in range(6):
        x, steps, conv = cue[m:m + 1], 0, False
        for _ in range(4):
            new = mem.read(x)
            if torch.equal(new, x):
                conv = True
                break
            x, steps = new, steps + 1
        assert torch.equal(r.states[m:m + 1], x) and int(r.steps[m]) == steps and bool(r.converged[m]) == conv


def test_save_load_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(6)
    mem = SparseDistributedMemory(20, 3, 100, activation_prob=0.1, seed=7)
    mem.write(bits(gen, 2, 5, 20), bits(gen, 2, 5, 3))
    path = tmp_path / "sdm.safetensors"
    kvmem.save(mem, path)
    back = kvmem.load(path)
    assert isinstance(back, SparseDistributedMemory) and back.config() == mem.config()
    assert torch.equal(back.addresses, mem.addresses) and torch.equal(back.counters, mem.counters)
    q = bits(gen, 4, 20)
    assert torch.equal(back.read(q), mem.read(q))
    mem.reset()
    assert mem.is_empty and mem.batch_shape is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(radius=None), "radius"),
        (dict(radius=3, activation_prob=0.1), "radius"),
        (dict(radius=-1), "radius"),
        (dict(radius=11), "radius"),
        (dict(activation_prob=0.0), "activation_prob"),
        (dict(activation_prob=1.5), "activation_prob"),
        (dict(radius=2, seed=-1), "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseDistributedMemory(10, 2, 20, **kwargs)


def test_bad_inputs_name_the_argument():
    mem = SparseDistributedMemory(6, 2, 20, radius=2)
    with pytest.raises(ValueError, match="empty"):
        mem.read(torch.zeros(1, 6))
    with pytest.raises(ValueError, match="^keys"):
        mem.write(torch.full((2, 6), 0.5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="^values"):
        mem.write(torch.zeros(2, 6), -torch.ones(2, 2))
    with pytest.raises(ValueError, match="^values"):
        mem.write(torch.zeros(2, 6))  # auto-association needs value_dim == address_dim
    with pytest.raises(ValueError, match="^keys"):
        mem.write(torch.zeros(2, 5), torch.zeros(2, 2))
    mem.write(torch.zeros(2, 6), torch.ones(2, 2))
    with pytest.raises(ValueError, match="^queries"):
        mem.read(-torch.ones(1, 6))
    with pytest.raises(ValueError, match="^value_dim"):
        mem.retrieve(torch.zeros(1, 6))
    auto = SparseDistributedMemory(6, 6, 20, radius=2)
    auto.write(torch.zeros(1, 6))
    with pytest.raises(ValueError, match="^cue"):
        auto.retrieve(torch.full((1, 6), 2.0))
    with pytest.raises(ValueError, match="^cue"):
        auto.retrieve(torch.zeros(1, 5))


# -- Bricken & Pehlevan: intersections of Hamming balls ---------------------------------


def test_intersection_probability_matches_enumeration():
    # n = 12: all 4096 addresses, exact count, for every distance.
    n, r = 12, 4
    addrs = np.array(list(itertools.product([0, 1], repeat=n)))
    q = np.zeros(n, dtype=int)
    for d in range(n + 1):
        k = np.zeros(n, dtype=int)
        k[:d] = 1
        both = ((addrs != q).sum(1) <= r) & ((addrs != k).sum(1) <= r)
        expected = both.mean()
        got = math.exp(log_intersection_probability(n, r, d))
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert (d > 2 * r) == (expected == 0)


def test_intersection_probability_matches_monte_carlo():
    # n = 16, r = 5, 400k random addresses: the binomial standard error is
    # sqrt(P(1 - P) / 400k) <= 0.0008; allow 5 standard errors.
    n, r, samples = 16, 5, 400_000
    rng = np.random.default_rng(0)
    addrs = rng.integers(0, 2, size=(samples, n))
    dq = addrs.sum(1)  # q = 0
    for d in (0, 1, 4, 7, 10):
        dk = dq - 2 * addrs[:, :d].sum(1) + d  # k = 1 on the first d coordinates
        est = np.mean((dq <= r) & (dk <= r))
        exact = math.exp(log_intersection_probability(n, r, d))
        assert abs(est - exact) < 5 * math.sqrt(exact * (1 - exact) / samples) + 1e-6


def test_large_dimension_is_finite_in_log_space():
    # 2^-1000 underflows float64; the log-space sum does not.
    lp = log_intersection_probability(1000, 451, 100)
    assert math.isfinite(lp) and lp < 0
    assert log_intersection_probability(1000, 451, 903) == -math.inf


def test_fit_softmax_beta_positive_and_good_fit():
    # n = 64, r = 25: a query activates binom.cdf(25, 64, 1/2) = 0.055 of the locations,
    # close to Kanerva's sparse regime. log P_r(d) is concave and drops steeply near d = 2r,
    # so a line fits it with R^2 = 0.877 over the whole non-zero range d <= 2r and with
    # R^2 = 0.991 over d <= r, the distances that carry nearly all the read weight.
    fit = softmax_fit(64, 25)
    assert fit.beta > 0 and fit.r_squared > 0.85
    assert list(fit.distances) == list(range(51))
    near = softmax_fit(64, 25, max_distance=25)
    assert near.beta > 0 and near.r_squared > 0.95
    # The fit is the least-squares line through the exact log weights.
    slope, intercept = np.polyfit(near.cosines, near.log_weights, 1)
    assert near.beta == pytest.approx(slope, rel=1e-9) and near.intercept == pytest.approx(intercept, rel=1e-9)
    # num_locations only shifts the intercept; beta is unchanged.
    assert fit_softmax_beta(64, 25, num_locations=1000) == pytest.approx(fit.beta, rel=1e-12)
    # Smaller radius: sparser activation, sharper separation.
    assert fit_softmax_beta(64, 20) > fit_softmax_beta(64, 25) > fit_softmax_beta(64, 28)


def test_fit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        fit_softmax_beta(10, 0)
    with pytest.raises(ValueError, match="radius"):
        fit_softmax_beta(10, 11)
    with pytest.raises(TypeError, match="address_dim"):
        fit_softmax_beta(10.5, 3)


def test_docs_page_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "sdm-and-universal.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/sdm-and-universal.md", "exec"), namespace)
