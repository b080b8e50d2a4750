"""Key maps (identity, fixed random, learned, mixed), retrieval through them and their training.

Retrieval and the training objective are checked against a plain float64 loop over
queries, keys and coordinates; training against the loss it is meant to lower.
"""

import math

import numpy as np
import pytest
import torch

from kvmem.learning.key_maps import (
    FixedRandomMap,
    IdentityMap,
    LearnedLinearMap,
    MixedMap,
    corrupt,
    retrieve,
    train_key_maps,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- maps ------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity", [None, "sign", "relu", "tanh"])
def test_fixed_random_map_shapes_values_and_frozen(nonlinearity):
    m = FixedRandomMap(5, 7, seed=3, nonlinearity=nonlinearity)
    x = torch.randn(2, 4, 5, generator=gen())
    y = m(x)
    assert y.shape == (2, 4, 7)
    assert list(m.parameters()) == [] and not m.weight.requires_grad
    h = x.double() @ m.weight.double()
    ref = {None: h, "sign": torch.where(h >= 0, 1.0, -1.0).double(), "relu": h.clamp_min(0), "tanh": torch.tanh(h)}[nonlinearity]
    assert torch.allclose(y.double(), ref, atol=1e-5)


def test_fixed_random_map_seeded_and_scaled():
    a, b, c = FixedRandomMap(200, 300, seed=1), FixedRandomMap(200, 300, seed=1), FixedRandomMap(200, 300, seed=2)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    # N(0, 1/in_dim): 60,000 entries put the sample variance within a few percent of 1/200.
    var = float(a.weight.double().var())
    assert abs(var * 200 - 1) < 0.05 and abs(float(a.weight.double().mean())) < 0.002


def test_batched_maps_hold_independent_copies_and_map_trial_by_trial():
    m = LearnedLinearMap(4, 3, seed=5, batch_shape=(3,))
    assert m.weight.shape == (3, 4, 3)
    assert not torch.equal(m.weight[0], m.weight[1])
    # The first copy is the unbatched map with the same seed.
    assert torch.equal(m.weight[0], LearnedLinearMap(4, 3, seed=5).weight)
    x = torch.randn(3, 6, 4, generator=gen())
    y = m(x)
    for t in range(3):
        assert torch.allclose(y[t], x[t] @ m.weight[t])
    # One set of items broadcast to every copy.
    assert m(x[0]).shape == (3, 6, 3)


def test_learned_map_init_and_trainable():
    m = LearnedLinearMap(3, 3, init="identity", scale=0.5)
    assert torch.equal(m.weight, 0.5 * torch.eye(3)) and m.weight.requires_grad
    assert IdentityMap(3)(torch.eye(3)).equal(torch.eye(3))
    assert sum(p.numel() for p in LearnedLinearMap(4, 6).parameters()) == 24


def test_mixed_map_parts():
    x = torch.randn(5, 8, generator=gen(1))
    m = MixedMap(8, 6, seed=4, fixed_dim=2, nonlinearity="sign")
    y = m(x)
    assert y.shape == (5, 6)
    assert torch.equal(y[:, :2], FixedRandomMap(8, 2, seed=4, nonlinearity="sign")(x))
    assert torch.allclose(y[:, 2:], x @ m.learned.weight)
    assert [p.shape for p in m.parameters()] == [torch.Size([8, 4])]
    # Same seed, different learned_seed: one scaffold, different learned starts.
    q = MixedMap(8, 6, seed=4, fixed_dim=2, nonlinearity="sign", learned_seed=99)
    assert torch.equal(q.fixed.weight, m.fixed.weight) and not torch.equal(q.learned.weight, m.learned.weight)
    add = MixedMap(8, 6, seed=4, mode="add", nonlinearity="tanh")
    assert torch.equal(add(x), FixedRandomMap(8, 6, seed=4, nonlinearity="tanh")(x))  # learned part starts at 0


def test_map_input_errors():
    m = LearnedLinearMap(4, 3, batch_shape=(2,))
    with pytest.raises(TypeError, match="x"):
        m([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match=r"x: expected shape \[\.\.\., N, 4\]"):
        m(torch.ones(2, 5, 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        m(torch.ones(4))
    with pytest.raises(ValueError, match="batch_shape"):
        m(torch.ones(3, 5, 4))
    with pytest.raises(ValueError, match="NaN"):
        m(torch.full((2, 1, 4), float("nan")))
    with pytest.raises(ValueError, match="nonlinearity"):
        FixedRandomMap(4, 3, nonlinearity="softplus")
    with pytest.raises(ValueError, match="init"):
        LearnedLinearMap(4, 3, init="identity")
    with pytest.raises(ValueError, match="init"):
        LearnedLinearMap(4, 3, init="zeros")
    with pytest.raises(TypeError, match="in_dim"):
        LearnedLinearMap(4.0, 3)
    with pytest.raises(ValueError, match="out_dim"):
        FixedRandomMap(4, 0)
    with pytest.raises(ValueError, match="fixed_dim"):
        MixedMap(4, 3, fixed_dim=3)
    with pytest.raises(ValueError, match="mode"):
        MixedMap(4, 3, mode="stack")
    with pytest.raises(TypeError, match="batch_shape"):
        FixedRandomMap(4, 3, batch_shape="2")


# -- retrieval against a plain loop ----------------------------------------------------
def loop_retrieve(cues, items, wk, wq, similarity, beta):
    """softmax(beta S(c Wq, x Wk)) x for every cue, one number at a time in float64."""
    cues, items, wk, wq = (np.asarray(a, dtype=np.float64) for a in (cues, items, wk, wq))
    dk = wk.shape[1]

    def project(v, w):
        return [sum(v[i] * w[i, j] for i in range(len(v))) for j in range(w.shape[1])]

    keys = [project(x, wk) for x in items]
    out = np.zeros((len(cues), items.shape[1]))
    for m, c in enumerate(cues):
        q = project(c, wq)
        scores = []
        for k in keys:
            if similarity == "scaled_dot":
                s = sum(q[j] * k[j] for j in range(dk)) / math.sqrt(dk)
            elif similarity == "neg_euclidean":
                s = -math.sqrt(sum((q[j] - k[j]) ** 2 for j in range(dk)))
            else:  # cosine
                s = sum(q[j] * k[j] for j in range(dk)) / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in k)))
            scores.append(beta * s)
        top = max(scores)
        w = [math.exp(s - top) for s in scores]
        total = sum(w)
        for n, x in enumerate(items):
            out[m] += (w[n] / total) * x
    return out


@pytest.mark.parametrize("similarity", ["scaled_dot", "neg_euclidean", "cosine"])
def test_retrieve_matches_plain_loop(similarity):
    items = torch.rand(2, 5, 4, generator=gen(2), dtype=torch.float64)
    cues = items.repeat(1, 2, 1) + 0.3 * torch.randn(2, 10, 4, generator=gen(3), dtype=torch.float64)
    km = LearnedLinearMap(4, 3, seed=1, batch_shape=(2,)).double()
    qm = LearnedLinearMap(4, 3, seed=2, batch_shape=(2,)).double()
    out = retrieve(cues, items, km, qm, similarity=similarity, beta=2.5)
    assert out.shape == (2, 10, 4)
    for t in range(2):
        ref = loop_retrieve(cues[t], items[t], km.weight[t].detach(), qm.weight[t].detach(), similarity, 2.5)
        np.testing.assert_allclose(out[t].detach().numpy(), ref, rtol=0, atol=1e-12)
    # Shared map: W_q = W_k.
    shared = retrieve(cues, items, km, similarity=similarity, beta=2.5)
    ref = loop_retrieve(cues[0], items[0], km.weight[0].detach(), km.weight[0].detach(), similarity, 2.5)
    np.testing.assert_allclose(shared[0].detach().numpy(), ref, rtol=0, atol=1e-12)


def test_retrieve_fixed_maps_and_values():
    items = torch.rand(6, 4, generator=gen(4), dtype=torch.float64)
    values = torch.randn(6, 2, generator=gen(5), dtype=torch.float64)
    m = FixedRandomMap(4, 4, seed=0, nonlinearity="sign").double()
    out = retrieve(items, items, m, values=values, similarity="scaled_dot", beta=1.5)
    keys = m(items)
    w = torch.softmax(1.5 * keys @ keys.T / 2.0, dim=-1)
    assert torch.allclose(out, w @ values, atol=1e-12)
    r = retrieve(items, items, IdentityMap(4), beta=1.0, details=True)
    assert r.weights.shape == (6, 6)


def test_retrieve_errors():
    items = torch.rand(5, 4)
    with pytest.raises(TypeError, match="key_map"):
        retrieve(items, items, torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="query_map"):
        retrieve(items, items, IdentityMap(4), LearnedLinearMap(4, 3))
    with pytest.raises(ValueError, match="beta"):
        retrieve(items, items, IdentityMap(4), beta=0.0)
    with pytest.raises(ValueError, match="x"):
        retrieve(torch.rand(5, 3), items, IdentityMap(4))


# -- training --------------------------------------------------------------------------
def test_corrupt_layout_and_levels():
    items = torch.rand(3, 5, 6, generator=gen(0)) + 1.0  # entries > 0, so hidden ones are exact zeros
    clean = corrupt(items, 2, 0.0, 0.0, gen(1))
    assert clean.shape == (3, 10, 6)
    assert torch.equal(clean[:, 7], items[:, 2])  # cue c N + n is a version of item n
    masked = corrupt(items, 4, 0.0, 1.0, gen(2))
    hidden = (masked == 0).double().mean()
    assert 0.35 < float(hidden) < 0.65  # f ~ U[0, 1], so half hidden on average
    noisy = corrupt(items, 4, 0.8, 0.0, gen(3))
    sd = float((noisy - items.repeat(1, 4, 1)).std())
    assert 0.35 < sd < 0.6  # s ~ U[0, 0.8]: root mean square 0.8 / sqrt(3) = 0.46


def loop_loss(cues, items, copies, wk, wq, similarity, beta):
    out = loop_retrieve(cues, items, wk, wq, similarity, beta)
    target = np.tile(np.asarray(items, dtype=np.float64), (copies, 1))
    return float(((out - target) ** 2).mean())


@pytest.mark.parametrize("similarity", ["scaled_dot", "neg_euclidean"])
def test_training_loss_is_the_retrieval_loss_of_a_plain_loop(similarity):
    items = torch.rand(6, 4, generator=gen(6), dtype=torch.float64)
    km = LearnedLinearMap(4, 4, seed=1).double()
    qm = LearnedLinearMap(4, 4, seed=2).double()
    wk, wq = km.weight.detach().clone(), qm.weight.detach().clone()
    log = train_key_maps(items, km, qm, similarity=similarity, beta=2.0, steps=2, cues_per_item=3,
                         noise_std=0.3, mask_fraction=0.4, seed=11)
    g = gen(11)
    cues0 = corrupt(items, 3, 0.3, 0.4, g)
    assert log.losses.shape == (2,)
    assert log.losses[0].item() == pytest.approx(loop_loss(cues0, items, 3, wk, wq, similarity, 2.0), abs=1e-12)
    assert log.parameters == 32
    assert not torch.equal(km.weight.detach(), wk) and not torch.equal(qm.weight.detach(), wq)


def heldout_loss(items, km, qm, similarity, beta, seed=123):
    cues = corrupt(items, 4, 0.5, 0.5, gen(seed))
    with torch.no_grad():
        out = retrieve(cues, items, km, qm, similarity=similarity, beta=beta)
    return float(((out - items.repeat(1, 4, 1)) ** 2).mean())


@pytest.mark.parametrize("shared", [False, True])
def test_training_reduces_heldout_retrieval_loss(shared):
    items = torch.rand(2, 12, 8, generator=gen(7))
    km = LearnedLinearMap(8, 8, seed=0, batch_shape=(2,))
    qm = None if shared else LearnedLinearMap(8, 8, seed=1, batch_shape=(2,))
    before = heldout_loss(items, km, qm, "scaled_dot", 1.0)
    log = train_key_maps(items, km, qm, steps=100, lr=0.05, noise_std=0.5, mask_fraction=0.5, seed=3)
    after = heldout_loss(items, km, qm, "scaled_dot", 1.0)
    assert log.losses.shape == (100, 2)
    assert after < 0.8 * before, (before, after)
    assert float(log.losses[-20:].mean()) < float(log.losses[:20].mean())


def test_training_same_seed_same_maps():
    items = torch.rand(10, 6, generator=gen(8))
    runs = []
    for _ in range(2):
        km, qm = LearnedLinearMap(6, 6, seed=4), LearnedLinearMap(6, 6, seed=5)
        log = train_key_maps(items, km, qm, steps=15, seed=9)
        runs.append((km.weight.detach().clone(), qm.weight.detach().clone(), log.losses))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_batched_training_keeps_memories_independent():
    # With clean cues the draws do not matter, so memory 0 trained beside memory 1 must end
    # where memory 0 trained alone ends (Adam works entry by entry; the loss is a sum).
    items = torch.rand(2, 7, 5, generator=gen(10))
    kb, qb = LearnedLinearMap(5, 5, seed=1, batch_shape=(2,)), LearnedLinearMap(5, 5, seed=2, batch_shape=(2,))
    ka, qa = LearnedLinearMap(5, 5, seed=1), LearnedLinearMap(5, 5, seed=2)
    assert torch.equal(kb.weight[0], ka.weight) and torch.equal(qb.weight[0], qa.weight)
    train_key_maps(items, kb, qb, steps=25, noise_std=0.0, mask_fraction=0.0, lr=0.05)
    train_key_maps(items[0], ka, qa, steps=25, noise_std=0.0, mask_fraction=0.0, lr=0.05)
    assert torch.allclose(kb.weight[0], ka.weight, atol=1e-5)
    assert torch.allclose(qb.weight[0], qa.weight, atol=1e-5)
    assert not torch.allclose(kb.weight[1], ka.weight, atol=1e-2)


def test_training_leaves_fixed_parts_alone():
    items = torch.rand(10, 6, generator=gen(12))
    km = MixedMap(6, 6, seed=3, fixed_dim=3, nonlinearity="sign")
    qm = MixedMap(6, 6, seed=3, fixed_dim=3, nonlinearity="sign", learned_seed=7)
    fixed, learned = km.fixed.weight.clone(), km.learned.weight.detach().clone()
    train_key_maps(items, km, qm, steps=10)
    assert torch.equal(km.fixed.weight, fixed) and torch.equal(qm.fixed.weight, fixed)
    assert not torch.equal(km.learned.weight.detach(), learned)


def test_euclidean_training_stays_finite_at_zero_distance():
    # A shared map and clean cues put every query exactly on its key: -sqrt(d2) has an
    # infinite slope there, which must not turn the weights into NaN.
    items = torch.rand(8, 5, generator=gen(13))
    km = LearnedLinearMap(5, 5, seed=0)
    log = train_key_maps(items, km, similarity="neg_euclidean", steps=5, noise_std=0.0, mask_fraction=0.0)
    assert torch.isfinite(log.losses).all() and torch.isfinite(km.weight).all()


def test_training_errors():
    items = torch.rand(5, 4)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_key_maps(items, FixedRandomMap(4, 4), IdentityMap(4))
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_key_maps(items, IdentityMap(4))
    with pytest.raises(ValueError, match="mask_fraction"):
        train_key_maps(items, LearnedLinearMap(4, 4), mask_fraction=1.5)
    with pytest.raises(ValueError, match="items"):
        train_key_maps(torch.rand(5, 3), LearnedLinearMap(4, 4))
    with pytest.raises(ValueError, match="values"):
        train_key_maps(items, LearnedLinearMap(4, 4), values=torch.rand(4, 2))
    with pytest.raises(TypeError, match="steps"):
        train_key_maps(items, LearnedLinearMap(4, 4), steps=2.5)
    with pytest.raises(TypeError, match="query_map"):
        train_key_maps(items, LearnedLinearMap(4, 4), "shared")

