"""SlotMemory: reads against a float64 loop, overwrite policies, batching and errors."""

import numpy as np
import pytest
import torch

import kvmem
from kvmem import separation, similarity


def loop_read(keys, values, queries, sim, sep):
    """Plain float64 reference: for each query, weights = sep(scores), out = sum w_n v_n."""
    k, v, q = (np.asarray(t, dtype=np.float64) for t in (keys, values, queries))
    out = np.zeros((q.shape[0], v.shape[1]))
    for m in range(q.shape[0]):
        scores = np.array([sim(q[m], k[n]) for n in range(k.shape[0])])
        w = sep(scores)
        for n in range(k.shape[0]):
            out[m] += w[n] * v[n]
    return out


def np_softmax(s, beta):
    e = np.exp(beta * (s - s.max()))
    return e / e.sum()


def test_scaled_dot_softmax_read_matches_loop():
    gen = torch.Generator().manual_seed(1)
    k, v, q = torch.randn(7, 5, generator=gen), torch.randn(7, 3, generator=gen), torch.randn(4, 5, generator=gen)
    mem = kvmem.SlotMemory(similarity="scaled_dot", separation={"name": "softmax", "beta": 3.0})
    mem.write(k, v)
    ref = loop_read(k, v, q, lambda a, b: a @ b / np.sqrt(5), lambda s: np_softmax(s, 3.0))
    np.testing.assert_allclose(mem.read(q).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_details_returns_scores_and_weights():
    gen = torch.Generator().manual_seed(2)
    k, v, q = torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen), torch.randn(3, 4, generator=gen)
    mem = kvmem.SlotMemory(similarity="dot", separation="softmax")
    mem.write(k, v)
    r = mem.read(q, details=True)
    torch.testing.assert_close(r.scores, q @ k.T)
    torch.testing.assert_close(r.weights, torch.softmax(q @ k.T, dim=-1))
    torch.testing.assert_close(r.values, r.weights @ v)


@pytest.mark.parametrize("n_pairs", [1, 3, 50, 400])
def test_hardmax_returns_value_of_best_key_for_any_number_of_pairs(n_pairs):
    gen = torch.Generator().manual_seed(n_pairs)
    k, v = torch.randn(n_pairs, 16, generator=gen), torch.randn(n_pairs, 5, generator=gen)
    q = torch.randn(30, 16, generator=gen)
    mem = kvmem.SlotMemory(similarity="cosine", separation="hardmax")
    mem.write(k, v)
    best = torch.nn.functional.cosine_similarity(q[:, None], k[None], dim=-1).argmax(-1)
    assert torch.equal(mem.read(q), v[best])
    # Stored keys as queries return exactly their own values.
    assert torch.equal(mem.read(k), v)


def test_batch_of_memories_equals_independent_memories():
    gen = torch.Generator().manual_seed(3)
    k, v, q = torch.randn(10, 4, 6, generator=gen), torch.randn(10, 4, 2, generator=gen), torch.randn(10, 3, 6, generator=gen)
    batched = kvmem.SlotMemory(separation={"name": "softmax", "beta": 2.0})
    batched.write(k, v)
    out = batched.read(q)
    for b in range(10):
        single = kvmem.SlotMemory(separation={"name": "softmax", "beta": 2.0})
        single.write(k[b], v[b])
        torch.testing.assert_close(out[b], single.read(q[b]))


def test_shared_queries_broadcast_over_the_batch():
    gen = torch.Generator().manual_seed(4)
    mem = kvmem.SlotMemory()
    mem.write(torch.randn(5, 8, 4, generator=gen), torch.randn(5, 8, 3, generator=gen))
    q = torch.randn(2, 4, generator=gen)
    torch.testing.assert_close(mem.read(q), mem.read(q.expand(5, 2, 4)))


def test_successive_writes_append_in_order():
    mem = kvmem.SlotMemory(similarity="dot", separation="hardmax")
    mem.write(torch.eye(4)[:2], torch.tensor([[1.0], [2.0]]))
    mem.write(torch.eye(4)[2:], torch.tensor([[3.0], [4.0]]))
    assert len(mem) == 4
    assert mem.read(torch.eye(4)).flatten().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_oldest_policy_is_a_ring_buffer():
    mem = kvmem.SlotMemory(similarity="dot", separation="hardmax", capacity=3, overwrite="oldest")
    keys = torch.eye(5)
    vals = torch.arange(5.0)[:, None]
    mem.write(keys, vals)
    assert len(mem) == 3
    # Pairs 0 and 1 were overwritten by 3 and 4; 2, 3, 4 remain.
    assert sorted(mem.values.flatten().tolist()) == [2.0, 3.0, 4.0]
    assert mem.read(keys[2:]).flatten().tolist() == [2.0, 3.0, 4.0]


def test_lru_policy_spares_recently_read_slots():
    mem = kvmem.SlotMemory(similarity="dot", separation="hardmax", capacity=3, overwrite="lru")
    keys = torch.eye(4)
    mem.write(keys[:3], torch.tensor([[0.0], [1.0], [2.0]]))
    mem.read(keys[0:1])  # slot of pair 0 becomes most recently used
    mem.write(keys[3:4], torch.tensor([[3.0]]))
    # The least recently used slot held pair 1.
    assert sorted(mem.values.flatten().tolist()) == [0.0, 2.0, 3.0]


def test_random_policy_is_seeded_and_per_memory():
    def run(seed):
        mem = kvmem.SlotMemory(capacity=4, overwrite="random", seed=seed)
        mem.write(torch.arange(64.0).reshape(2, 8, 4), torch.arange(16.0).reshape(2, 8, 1))
        return mem.values.clone()

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    vals = run(0)
    # Each memory keeps 4 of its own pairs.
    assert vals.shape == (2, 4, 1)
    assert set(vals[0].flatten().tolist()) <= set(range(8)) and set(vals[1].flatten().tolist()) <= set(range(8, 16))


def test_empty_read_and_bad_input_raise_clear_errors():
    mem = kvmem.SlotMemory()
    with pytest.raises(ValueError, match="empty"):
        mem.read(torch.randn(2, 3))
    with pytest.raises(ValueError, match="values"):
        mem.write(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="keys"):
        mem.write(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="NaN"):
        mem.write(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 1))
    with pytest.raises(TypeError, match="keys"):
        mem.write([[1.0, 2.0]], torch.ones(1, 1))
    mem.write(torch.randn(2, 3, 4), torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match="batch shape"):
        mem.write(torch.randn(3, 3, 4), torch.randn(3, 3, 1))
    with pytest.raises(ValueError, match=r"\[\.\.\., M, 4\]"):
        mem.read(torch.randn(2, 5))
    with pytest.raises(ValueError, match="broadcast"):
        mem.read(torch.randn(7, 2, 4))
    with pytest.raises(ValueError, match="similarity"):
        kvmem.SlotMemory(similarity="nope")
    with pytest.raises(ValueError, match="overwrite"):
        kvmem.SlotMemory(overwrite="newest")


def test_numpy_input_is_accepted():
    mem = kvmem.SlotMemory(similarity="dot", separation="hardmax")
    mem.write(np.eye(3), np.arange(3.0)[:, None])
    out = mem.read(np.eye(3))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.flatten().tolist() == [0.0, 1.0, 2.0]


def test_reads_are_differentiable():
    k = torch.randn(5, 4, requires_grad=True)
    v = torch.randn(5, 2, requires_grad=True)
    mem = kvmem.SlotMemory()
    mem.write(k, v)
    mem.read(torch.randn(3, 4)).sum().backward()
    assert k.grad is not None and v.grad is not None and torch.isfinite(k.grad).all()


def test_components_accept_instances_and_specs():
    a = kvmem.SlotMemory(similarity=similarity.Cosine(), separation=separation.Softmax(beta=4.0))
    b = kvmem.SlotMemory(similarity="cosine", separation={"name": "softmax", "beta": 4.0})
    assert a.config() == b.config()
