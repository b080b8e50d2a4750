"""SlotMemory's blocked read (online softmax): equal to the plain read, bounded memory, fallbacks.

References: the plain (unblocked) read in float64, an explicit float64 loop over queries
and keys written from the definition, and a dispatch hook that records every storage an
operation allocates (the blocked read must never allocate a [M, N] score matrix).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kvmem
from kvmem import separation
from kvmem.memory import slots

pytestmark = pytest.mark.usefixtures("one_thread")

STREAMED = [
    "softmax",
    {"name": "softmax", "beta": 4.0},
    {"name": "exponential", "beta": 0.5},
    "identity",
    {"name": "threshold", "theta": 0.3, "normalize": True},
    {"name": "threshold", "theta": 0.3},
    {"name": "polynomial", "n": 3, "normalize": True},
    {"name": "polynomial", "n": 2},
]


def data(n=700, m=9, d=12, dv=5, batch=(), seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(*batch, n, d, generator=gen, dtype=dtype)
    v = torch.randn(*batch, n, dv, generator=gen, dtype=dtype)
    q = torch.randn(*batch, m, d, generator=gen, dtype=dtype)
    return k, v, q


def pair(k, v, sim, sep, block, **kw):
    blocked = kvmem.SlotMemory(sim, sep, block_size=block, **kw)
    plain = kvmem.SlotMemory(sim, sep, block_size=None, **kw)
    blocked.write(k, v)
    plain.write(k, v)
    return blocked, plain


class LargestAllocation(TorchDispatchMode):
    """The largest new storage (bytes) any aten op allocates (views and in-place ops excluded)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("sep", STREAMED, ids=lambda s: s if isinstance(s, str) else f"{s['name']}-{len(s)}")
@pytest.mark.parametrize("sim", ["dot", "scaled_dot", "cosine", "neg_euclidean"])
def test_blocked_read_equals_plain_read_in_float64(sim, sep):
    k, v, q = data(n=700)
    blocked, plain = pair(k, v, sim, sep, block=128)  # 700 = 5 x 128 + 60: a short last block
    got, want = blocked.read(q), plain.read(q)
    scale = want.abs().max().clamp_min(1e-300)
    assert float((got - want).abs().max() / scale) < 1e-12


def test_softmax_with_beta_matches_an_explicit_float64_loop():
    k, v, q = data(n=300, m=4, d=6, dv=3, seed=3)
    beta = 2.5
    mem = kvmem.SlotMemory("scaled_dot", {"name": "softmax", "beta": beta}, block_size=64)
    mem.write(k, v)
    kn, vn, qn = k.numpy(), v.numpy(), q.numpy()
    ref = np.zeros((4, 3))
    for i in range(4):
        s = [sum(qn[i, j] * kn[n, j] for j in range(6)) / math.sqrt(6) for n in range(300)]
        mx = max(s)
        e = [math.exp(beta * (x - mx)) for x in s]
        total = sum(e)
        for n in range(300):
            ref[i] += e[n] / total * vn[n]
    np.testing.assert_allclose(mem.read(q).numpy(), ref, rtol=1e-12, atol=1e-13)


def test_float32_blocked_read_agrees_with_float64_to_float32_rounding():
    k, v, q = data(n=5000, m=16, d=32, dv=8, seed=4)
    mem = kvmem.SlotMemory("scaled_dot", {"name": "softmax", "beta": 2.0}, block_size=512)
    mem.write(k.float(), v.float())
    ref = torch.softmax(2.0 * (q @ k.T) / math.sqrt(32), dim=-1) @ v
    err = (mem.read(q.float()).double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5


def test_batched_memories_and_broadcast_queries():
    k, v, q = data(n=400, batch=(3,), seed=5)
    blocked, plain = pair(k, v, "dot", "softmax", block=100)
    torch.testing.assert_close(blocked.read(q), plain.read(q), rtol=1e-12, atol=1e-12)
    shared = q[0]  # one set of queries read from all three memories
    out = blocked.read(shared)
    assert out.shape == (3, 9, 5)
    torch.testing.assert_close(out, plain.read(shared), rtol=1e-12, atol=1e-12)
    k2, v2, q2 = data(n=257, batch=(2, 2), seed=6)
    blocked, plain = pair(k2, v2, "cosine", {"name": "exponential", "beta": 3.0}, block=64)
    torch.testing.assert_close(blocked.read(q2), plain.read(q2), rtol=1e-12, atol=1e-12)


def test_blocked_read_never_allocates_more_than_one_block_of_scores():
    m, n, d, block = 32, 4096, 16, 256
    k, v, q = data(n=n, m=m, d=d, dv=d, seed=7, dtype=torch.float32)
    blocked, plain = pair(k, v, "scaled_dot", "softmax", block=block)
    with torch.no_grad():
        with LargestAllocation() as rec_blocked:
            blocked.read(q)
        with LargestAllocation() as rec_plain:
            plain.read(q)
    assert rec_blocked.largest <= m * block * 4  # one [M, block] float32 block
    assert rec_plain.largest >= m * n * 4  # the plain read holds all [M, N] scores


def test_auto_block_size_reads_in_blocks_only_for_large_score_matrices(monkeypatch):
    k, v, q = data(n=2048, m=8, d=8, seed=8, dtype=torch.float32)
    auto = kvmem.SlotMemory("dot", "softmax")  # block_size="auto" is the default
    plain = kvmem.SlotMemory("dot", "softmax", block_size=None)
    auto.write(k, v)
    plain.write(k, v)
    assert auto.block_size == "auto"
    # A small read is the plain read, bit for bit.
    assert torch.equal(auto.read(q), plain.read(q))
    # Lower the threshold: the same read now runs in blocks of the automatic size.
    monkeypatch.setattr(slots, "AUTO_MIN_SCORES", 8 * 2048)
    monkeypatch.setattr(slots, "AUTO_BLOCK_SCORES", 8 * 256)
    assert auto._read_block(q) == 256
    with torch.no_grad(), LargestAllocation() as rec:
        got = auto.read(q)
    assert rec.largest <= 8 * 256 * 4
    torch.testing.assert_close(got, plain.read(q), rtol=1e-5, atol=1e-6)


def test_separations_that_need_all_scores_fall_back_to_the_plain_read():
    k, v, q = data(n=500, seed=9)
    for sep in ("hardmax", {"name": "topk", "k": 3, "beta": 2.0}):
        blocked, plain = pair(k, v, "dot", sep, block=64)
        assert blocked._read_block(q) is None
        assert torch.equal(blocked.read(q), plain.read(q))
    assert separation.HardMax().streaming() is None and separation.TopK(k=2).streaming() is None


def test_details_lru_and_gradients_use_the_plain_read():
    k, v, q = data(n=300, seed=10)
    blocked, plain = pair(k, v, "dot", "softmax", block=64)
    r = blocked.read(q, details=True)
    assert r.weights.shape == (9, 300) and r.scores.shape == (9, 300)
    torch.testing.assert_close(r.values, plain.read(q), rtol=1e-12, atol=1e-12)
    # LRU needs each query's most weighted slot over all slots: plain read, same bookkeeping.
    lru_b, lru_p = pair(k, v, "dot", "softmax", block=64, capacity=300, overwrite="lru")
    assert lru_b._read_block(q) is None
    lru_b.read(q)
    lru_p.read(q)
    assert torch.equal(lru_b.last_used, lru_p.last_used)
    # Gradients flow through the plain read.
    kg = k.clone().requires_grad_(True)
    mem = kvmem.SlotMemory("dot", "softmax", block_size=64)
    mem.write(kg, v)
    assert mem._read_block(q) is None
    mem.read(q).sum().backward()
    assert kg.grad is not None and torch.isfinite(kg.grad).all()
    with torch.no_grad():
        assert mem._read_block(q) == 64


def test_overflowing_folded_scores_fall_back_to_the_shifted_plain_read():
    # beta * q.k is about 1e40, beyond float32: the folded blocked read overflows and the
    # memory answers with the plain read, which shifts by the maximum before scaling.
    k = torch.tensor([[1e19, 0.0], [0.0, 1e19], [7e18, 7e18]] * 100)
    v = torch.arange(300.0).unsqueeze(-1)
    q = torch.tensor([[1.0, 0.2]])
    blocked, plain = pair(k, v, "dot", {"name": "softmax", "beta": 1e21}, block=64)
    assert blocked._blocked_read(q, 64) is None  # the folded path gives up ...
    out = blocked.read(q)  # ... and the read answers with the plain path
    assert torch.isfinite(out).all()
    assert torch.equal(out, plain.read(q))


def test_blocked_read_of_stored_keys_with_sharp_softmax_recalls_their_values():
    gen = torch.Generator().manual_seed(11)
    k = torch.nn.functional.normalize(torch.randn(3000, 64, generator=gen), dim=-1)
    v = torch.randn(3000, 4, generator=gen)
    mem = kvmem.SlotMemory("dot", {"name": "softmax", "beta": 200.0}, block_size=256)
    mem.write(k, v)
    torch.testing.assert_close(mem.read(k[:50]), v[:50], rtol=0, atol=1e-4)


def test_block_size_validation_config_and_copies():
    with pytest.raises(ValueError, match="block_size"):
        kvmem.SlotMemory(block_size=0)
    with pytest.raises(TypeError, match="block_size"):
        kvmem.SlotMemory(block_size="big")
    with pytest.raises(TypeError, match="block_size"):
        kvmem.SlotMemory(block_size=2.5)
    mem = kvmem.SlotMemory("dot", {"name": "softmax", "beta": 2.0}, block_size=128)
    assert mem.config()["block_size"] == 128
    twin = kvmem.SlotMemory(**mem.config())
    assert twin.config() == mem.config()
    k, v, q = data(n=400, seed=12)
    mem.write(k, v)
    torch.testing.assert_close(copy.deepcopy(mem).read(q), mem.read(q), rtol=0, atol=0)
    with pytest.raises(ValueError, match="streaming"):
        separation.Streaming()


def test_save_and_load_keep_the_block_size(tmp_path):
    k, v, q = data(n=400, seed=13)
    mem = kvmem.SlotMemory("dot", "softmax", block_size=100)
    mem.write(k, v)
    kvmem.save(mem, tmp_path / "mem")
    back = kvmem.load(tmp_path / "mem")
    assert back.block_size == 100
    torch.testing.assert_close(back.read(q), mem.read(q), rtol=0, atol=0)
