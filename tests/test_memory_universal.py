"""UniversalHopfield: slot-memory equivalence, modern and classical Hopfield loops, retrieve."""

import numpy as np
import pytest
import torch

import kvmem
from kvmem.memory.universal import UniversalHopfield


def np_softmax(s, beta):
    e = np.exp(beta * (s - s.max()))
    return e / e.sum()


@pytest.mark.parametrize(
    "sim, sep",
    [
        ("dot", "softmax"),
        ("scaled_dot", {"name": "softmax", "beta": 4.0}),
        ("neg_euclidean", {"name": "softmax", "beta": 2.0}),
        ("neg_manhattan", "hardmax"),
        ("cosine", {"name": "polynomial", "n": 3}),
        ("dot", "identity"),
    ],
)
def test_hetero_read_equals_slot_memory(sim, sep):
    gen = torch.Generator().manual_seed(0)
    k, v, q = torch.randn(9, 6, generator=gen), torch.randn(9, 3, generator=gen), torch.randn(4, 6, generator=gen)
    uhn = UniversalHopfield(similarity=sim, separation=sep, projection="hetero")
    slots = kvmem.SlotMemory(similarity=sim, separation=sep)
    uhn.write(k[:4], v[:4])
    uhn.write(k[4:], v[4:])
    slots.write(k, v)
    a, b = uhn.read(q, details=True), slots.read(q, details=True)
    torch.testing.assert_close(a.values, b.values)
    torch.testing.assert_close(a.weights, b.weights)
    torch.testing.assert_close(a.scores, b.scores)


def test_iterated_softmax_equals_modern_hopfield_loop():
    # Ramsauer et al. (2021): xi <- X^T softmax(beta X xi), X = patterns as rows, in float64.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 10)) / np.sqrt(10)
    xi0 = rng.standard_normal((3, 10))
    beta, steps = 2.5, 5
    ref = xi0.copy()
    for m in range(3):
        xi = xi0[m].copy()
        for _ in range(steps):
            xi = x.T @ np_softmax(x @ xi, beta)
        ref[m] = xi
    mem = UniversalHopfield(similarity="dot", separation={"name": "softmax", "beta": beta}, steps=steps)
    mem.write(torch.from_numpy(x))
    r = mem.retrieve(torch.from_numpy(xi0), tol=0.0)
    assert r.states.dtype == torch.float64
    np.testing.assert_allclose(r.states.numpy(), ref, rtol=1e-12, atol=1e-12)
    # One read is one step of the same update.
    one = np.stack([x.T @ np_softmax(x @ xi0[m], beta) for m in range(3)])
    np.testing.assert_allclose(mem.read(torch.from_numpy(xi0)).numpy(), one, rtol=1e-12, atol=1e-12)


def test_dot_identity_is_correlation_matrix_read():
    rng = np.random.default_rng(2)
    x = np.sign(rng.standard_normal((5, 12)))
    q = rng.standard_normal((4, 12))
    mem = UniversalHopfield(similarity="dot", separation="identity")
    mem.write(torch.from_numpy(x))
    expected = np.stack([x.T @ x @ q[m] for m in range(4)])  # X^T X q, column form
    np.testing.assert_allclose(mem.read(torch.from_numpy(q)).numpy(), expected, rtol=1e-12)


def test_retrieve_converges_and_reports_steps():
    gen = torch.Generator().manual_seed(3)
    pats = torch.sign(torch.randn(4, 40, generator=gen))
    mem = UniversalHopfield(similarity="dot", separation={"name": "softmax", "beta": 1.0}, steps=50)
    mem.write(pats)
    cue = pats.clone()
    cue[:, :8] *= -1
    r = mem.retrieve(cue, tol=1e-6)
    torch.testing.assert_close(r.states, pats, atol=1e-5, rtol=0)
    assert r.converged.all() and (r.steps >= 1).all() and (r.steps < 50).all()
    # Steps budget of zero: nothing happens, nothing converged.
    r0 = mem.retrieve(cue, steps=0)
    assert torch.equal(r0.states, cue) and not r0.converged.any() and (r0.steps == 0).all()
    # Budget of one update with tol 0 on a non-fixed cue: one step, not converged.
    r1 = mem.retrieve(cue, steps=1, tol=0.0)
    torch.testing.assert_close(r1.states, mem.read(cue))
    assert r1.steps.tolist() == [1] * 4 and not r1.converged.any()


def test_retrieve_with_clamp_keeps_known_entries():
    gen = torch.Generator().manual_seed(4)
    pats = torch.sign(torch.randn(6, 20, generator=gen))
    mem = UniversalHopfield(similarity="dot", separation="hardmax", steps=5)
    mem.write(pats)
    cue = pats.clone()
    cue[:, 10:] = 0.0
    known = torch.zeros(6, 20, dtype=torch.bool)
    known[:, :10] = True
    r = mem.retrieve(cue, clamp=known)
    assert torch.equal(r.states[:, :10], cue[:, :10])
    assert torch.equal(r.states, pats)  # hard max completes each half pattern
    with pytest.raises(ValueError, match="^clamp"):
        mem.retrieve(cue, clamp=torch.ones(3, 20, dtype=torch.bool))


def test_batched_memories_are_independent():
    gen = torch.Generator().manual_seed(5)
    k = torch.randn(3, 5, 8, generator=gen)
    q = torch.randn(4, 8, generator=gen)
    mem = UniversalHopfield(separation={"name": "softmax", "beta": 3.0}, steps=3)
    mem.write(k)
    r = mem.retrieve(q, tol=0.0)
    assert r.states.shape == (3, 4, 8) and r.steps.shape == (3, 4)
    for b in range(3):
        single = UniversalHopfield(separation={"name": "softmax", "beta": 3.0}, steps=3)
        single.write(k[b])
        torch.testing.assert_close(r.states[b], single.retrieve(q, tol=0.0).states)


def test_auto_values_must_be_none_or_keys():
    k = torch.randn(3, 4)
    mem = UniversalHopfield()
    mem.write(k, k.clone())
    assert "values" not in mem.state_dict() and len(mem) == 3
    with pytest.raises(ValueError, match="^values"):
        mem.write(k, k + 1)
    assert len(mem) == 3


def test_save_load_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(6)
    for projection in ("auto", "hetero"):
        mem = UniversalHopfield(similarity="neg_euclidean", separation={"name": "softmax", "beta": 5.0},
                                projection=projection, steps=4)
        k = torch.randn(2, 6, 5, generator=gen)
        mem.write(k, None if projection == "auto" else torch.randn(2, 6, 3, generator=gen))
        path = tmp_path / f"{projection}.safetensors"
        kvmem.save(mem, path)
        back = kvmem.load(path)
        assert isinstance(back, UniversalHopfield) and back.config() == mem.config()
        q = torch.randn(3, 5, generator=gen)
        assert torch.equal(back.read(q), mem.read(q))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="^projection"):
        UniversalHopfield(projection="both")
    with pytest.raises(ValueError, match="^steps"):
        UniversalHopfield(steps=0)
    with pytest.raises(ValueError, match="^separation"):
        UniversalHopfield(separation="nope")
    with pytest.raises(ValueError, match="empty"):
        UniversalHopfield().read(torch.zeros(1, 3))
    hetero = UniversalHopfield(projection="hetero")
    with pytest.raises(ValueError, match="^values"):
        hetero.write(torch.zeros(2, 3))
    hetero.write(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="^projection"):
        hetero.retrieve(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="^values"):
        hetero.write(torch.zeros(2, 3), torch.zeros(2, 2))
    auto = UniversalHopfield()
    auto.write(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="^cue"):
        auto.retrieve(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="^cue"):
        auto.retrieve([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="^tol"):
        auto.retrieve(torch.zeros(1, 3), tol=-1.0)


def test_universal_with_dot_softmax_agrees_with_modern_hopfield():
    import kvmem

    gen = torch.Generator().manual_seed(21)
    x = torch.randn(3, 7, 10, generator=gen, dtype=torch.float64)
    cue = x[:, :4] + 0.3 * torch.randn(3, 4, 10, generator=gen, dtype=torch.float64)
    uni = kvmem.UniversalHopfield(similarity="dot", separation={"name": "softmax", "beta": 0.7})
    mhn = kvmem.ModernHopfield(beta=0.7)
    uni.write(x)
    mhn.write(x)
    torch.testing.assert_close(uni.read(cue), mhn.read(cue), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(uni.retrieve(cue, steps=50, tol=1e-10).states,
                               mhn.retrieve(cue, steps=50).states, rtol=1e-5, atol=1e-5)


def test_every_retrieve_returns_the_one_retrieval_type():
    import kvmem

    gen = torch.Generator().manual_seed(0)
    x = torch.where(torch.rand(2, 5, 32, generator=gen) < 0.5, 1.0, -1.0)
    models = [kvmem.ClassicalHopfield(), kvmem.ModernHopfield(beta=4.0), kvmem.UniversalHopfield("dot", "hardmax")]
    for model in models:
        model.write(x)
        r = model.retrieve(x)
        assert type(r) is kvmem.Retrieval, type(model).__name__
        assert r.steps.dtype == torch.long and r.steps.shape == (2, 5) and r.converged.shape == (2, 5)
        # Stored +-1 patterns at P/N = 5/32 are fixed points of all three: no state moves.
        assert (r.steps == 0).all() and r.converged.all() and r.iterations == 1
    sdm = kvmem.SparseDistributedMemory(32, 32, num_locations=200, activation_prob=0.1, seed=0)
    sdm.write((x[0] > 0).float())
    assert type(sdm.retrieve((x[0] > 0).float())) is kvmem.Retrieval
