"""MatrixMemory's chunked and streaming writes against plain float64 loops over the pairs.

The reference is written from each rule's definition, pair after pair in numpy float64:
Hebbian M += lr k^T v, decay M = d M + lr k^T v, delta M += beta k^T (v - k M). Chunked
writes (``chunk_size``) and streams of blocks (``write_stream``) must end in the same M,
whatever the chunk and block boundaries, with errors leaving the memory unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kvmem
from kvmem.memory import matrix as matrix_module
from kvmem.ops import delta_rule

pytestmark = pytest.mark.usefixtures("one_thread")

RULES = [("hebbian", {"lr": 0.5}), ("decay", {"decay": 0.97, "lr": 0.3}), ("delta", {"beta": 0.8})]


def pairs(n, dk=6, dv=3, batch=(), seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(*batch, n, dk, generator=gen, dtype=dtype)
    k = k / k.norm(dim=-1, keepdim=True)
    return k, torch.randn(*batch, n, dv, generator=gen, dtype=dtype)


def loop(rule, params, keys, values, matrix=None):
    """Pair-by-pair float64 reference for one memory: keys [N, Dk], values [N, Dv]."""
    k, v = keys.double().numpy(), values.double().numpy()
    m = np.zeros((k.shape[1], v.shape[1])) if matrix is None else matrix.copy()
    for kn, vn in zip(k, v):
        if rule == "hebbian":
            m = m + params["lr"] * np.outer(kn, vn)
        elif rule == "decay":
            m = params["decay"] * m + params["lr"] * np.outer(kn, vn)
        else:
            m = m + params["beta"] * np.outer(kn, vn - kn @ m)
    return m


@pytest.mark.parametrize("rule, params", RULES)
@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 1000])
def test_chunked_write_equals_a_plain_float64_loop(rule, params, chunk):
    k, v = pairs(300, seed=1)
    mem = kvmem.MatrixMemory(6, 3, rule=rule, **params)
    mem.write(k[:20], v[:20])  # a first, unchunked write: the chunked one continues from it
    mem.write(k[20:], v[20:], chunk_size=chunk)
    np.testing.assert_allclose(mem.matrix.numpy(), loop(rule, params, k, v), rtol=1e-11, atol=1e-12)
    assert int(mem.writes) == 300


@pytest.mark.parametrize("rule, params", RULES)
def test_write_stream_of_irregular_blocks_equals_one_write(rule, params):
    k, v = pairs(500, batch=(2,), seed=2)
    bounds = [0, 1, 64, 65, 200, 333, 500]
    blocks = ((k[:, a:b], v[:, a:b]) for a, b in zip(bounds, bounds[1:]))
    streamed = kvmem.MatrixMemory(6, 3, rule=rule, **params)
    assert streamed.write_stream(blocks, chunk_size=96) == 500
    for b in range(2):
        np.testing.assert_allclose(streamed.matrix[b].numpy(), loop(rule, params, k[b], v[b]), rtol=1e-11, atol=1e-12)
    whole = kvmem.MatrixMemory(6, 3, rule=rule, **params)
    whole.write(k, v)
    torch.testing.assert_close(streamed.normalizer, whole.normalizer, rtol=1e-12, atol=1e-12)
    assert int(streamed.writes) == int(whole.writes) == 500


@pytest.mark.parametrize("rule, params", RULES)
def test_chunked_passes_equal_repeated_passes(rule, params):
    k, v = pairs(90, seed=3)
    mem = kvmem.MatrixMemory(6, 3, rule=rule, **params)
    mem.write(k, v, passes=3, chunk_size=32)
    ref = None
    for _ in range(3):
        ref = loop(rule, params, k, v, ref)
    np.testing.assert_allclose(mem.matrix.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert int(mem.writes) == 270


def test_chunked_delta_write_agrees_with_the_ops_delta_rule_state():
    k, v = pairs(1000, dk=16, dv=8, seed=4)
    mem = kvmem.MatrixMemory(16, 8, rule="delta", beta=0.5)
    mem.write(k, v, chunk_size=256)
    _, state = delta_rule(k, k, v, 0.5, mode="recurrent")
    torch.testing.assert_close(mem.matrix, state, rtol=1e-11, atol=1e-12)


def test_feature_maps_and_key_norm_are_applied_per_chunk():
    gen = torch.Generator().manual_seed(5)
    k, v = 3 * torch.randn(200, 4, generator=gen, dtype=torch.float64), torch.randn(200, 2, generator=gen,
                                                                                     dtype=torch.float64)
    for rule, fmap, params in (("delta", "elu_plus_one", {"beta": 0.9}), ("hebbian", "dpfp", {"lr": 1.0})):
        a = kvmem.MatrixMemory(4, 2, rule=rule, feature_map=fmap, key_norm="l2", **params)
        b = kvmem.MatrixMemory(4, 2, rule=rule, feature_map=fmap, key_norm="l2", **params)
        a.write(k, v)
        b.write(k, v, chunk_size=33)
        torch.testing.assert_close(b.matrix, a.matrix, rtol=1e-11, atol=1e-12)
        phi = a.features(k)
        np.testing.assert_allclose(b.matrix.numpy(), loop(rule, {"lr": 1.0, **params}, phi, v), rtol=1e-11, atol=1e-12)


def test_float32_chunked_delta_stays_close_to_float64_over_many_pairs():
    k, v = pairs(20000, dk=32, dv=8, seed=6, dtype=torch.float32)
    mem = kvmem.MatrixMemory(32, 8, rule="delta", beta=1.0)
    mem.write(k, v, chunk_size=4096)
    ref = kvmem.MatrixMemory(32, 8, rule="delta", beta=1.0)
    ref.write(k.double(), v.double(), chunk_size=4096)
    # The float64 chunked state is itself checked against the loop above; here only the
    # float32 rounding is measured, over 20,000 contracting updates.
    assert float((mem.matrix.double() - ref.matrix).abs().max() / ref.matrix.abs().max()) < 1e-4
    # beta = 1 and unit keys: the newest pair is recalled exactly (to float32 rounding).
    torch.testing.assert_close(mem.read(k[-1:]), v[-1:], rtol=0, atol=1e-4)


def test_delta_block_size_does_not_change_the_result(monkeypatch):
    k, v = pairs(200, seed=7)
    ref = loop("delta", {"beta": 0.8}, k, v)
    for block in (1, 5, 16, 128):
        monkeypatch.setattr(matrix_module, "DELTA_BLOCK", block)
        mem = kvmem.MatrixMemory(6, 3, rule="delta", beta=0.8)
        mem.write(k, v, chunk_size=150)
        np.testing.assert_allclose(mem.matrix.numpy(), ref, rtol=1e-11, atol=1e-12)


def test_an_unstable_chunk_leaves_the_memory_unchanged():
    k, v = pairs(100, seed=8)
    mem = kvmem.MatrixMemory(6, 3, rule="delta", beta=1.5)
    mem.write(k[:10], v[:10])
    before = mem.matrix.clone()
    bad = k.clone()
    bad[80] *= 3.0  # beta |k|^2 = 13.5 in the third chunk: the first two were fine
    with pytest.raises(ValueError, match="beta"):
        mem.write(bad, v, chunk_size=32)
    assert torch.equal(mem.matrix, before) and int(mem.writes) == 10
    with pytest.raises(ValueError, match="beta"):
        mem.write_stream([(k[:50], v[:50]), (bad[50:], v[50:])], chunk_size=32)
    assert torch.equal(mem.matrix, before) and int(mem.writes) == 10


def test_non_finite_entries_are_caught_chunk_by_chunk():
    k, v = pairs(300, seed=10, dtype=torch.float32)
    mem = kvmem.MatrixMemory(6, 3)
    mem.write(k[:5], v[:5])
    before = mem.matrix.clone()
    for bad_k, bad_v in ((k.clone(), v), (k, v.clone())):
        (bad_k if bad_k is not k else bad_v)[250, 1] = float("inf")
        with pytest.raises(ValueError, match="NaN or infinite"):
            mem.write(bad_k, bad_v, chunk_size=64)
        assert torch.equal(mem.matrix, before) and int(mem.writes) == 5
    # The delta rule and a feature map that would hide an infinity (relu(-inf) = 0) as well.
    for mem in (kvmem.MatrixMemory(6, 3, rule="delta", beta=0.5), kvmem.MatrixMemory(6, 3, feature_map="relu")):
        bad = k.clone()
        bad[100, 0] = float("nan") if mem.rule == "delta" else float("-inf")
        with pytest.raises(ValueError, match="keys: contains NaN or infinite"):
            mem.write(bad, v, chunk_size=64)
        assert mem.is_empty
    # Finite entries whose sum overflows float32 are not mistaken for infinities.
    huge = torch.full((4, 3), 3e38)
    big = kvmem.MatrixMemory(6, 3, lr=1e-30)
    big.write(torch.eye(6)[:4] * 1e-8, huge, chunk_size=2)
    assert torch.isfinite(big.matrix).all() and int(big.writes) == 4


def test_stream_input_errors_name_the_block():
    k, v = pairs(20, seed=9)
    mem = kvmem.MatrixMemory(6, 3)
    with pytest.raises(ValueError, match="block 1"):
        mem.write_stream([(k, v), (k[:, :5], v)])
    with pytest.raises(ValueError, match="block 1"):
        mem.write_stream([(k, v), (k[:5], v)])
    with pytest.raises(ValueError, match="batch shape"):
        mem.write_stream([(k, v), (k.expand(2, 20, 6), v.expand(2, 20, 3))])
    with pytest.raises(TypeError, match="block 0"):
        mem.write_stream([k])
    with pytest.raises(TypeError, match="pairs"):
        mem.write_stream(3)
    with pytest.raises(ValueError, match="at least one block"):
        mem.write_stream([])
    with pytest.raises(ValueError, match="NaN"):
        mem.write_stream([(k * float("nan"), v)])
    with pytest.raises(ValueError, match="chunk_size"):
        mem.write(k, v, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        mem.write_stream([(k, v)], chunk_size=1.5)
    assert mem.is_empty
    mem.write(k, v)
    with pytest.raises(ValueError, match="batch shape"):
        mem.write_stream([(k.expand(3, 20, 6), v.expand(3, 20, 3))])
    # A stream into a float64 memory converts float32 blocks to float64.
    mem.write_stream([(k.float(), v.float())])
    assert mem.matrix.dtype == torch.float64 and int(mem.writes) == 40


def test_delta_block_follows_the_device():
    # CPU blocks stay small (cheap Gram matrices and solves); a GPU takes fewer, larger steps.
    assert matrix_module.delta_block("cpu") == matrix_module.DELTA_BLOCK
    assert matrix_module.delta_block(torch.device("cuda", 0)) == matrix_module.DELTA_BLOCK_GPU
    assert matrix_module.DELTA_BLOCK_GPU > matrix_module.DELTA_BLOCK


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rule", ["hebbian", "delta"])
def test_cuda_chunked_write_matches_the_cpu(rule):
    k, v = pairs(3000, seed=9)
    k, v = k.float(), v.float()
    cpu = kvmem.MatrixMemory(6, 3, rule=rule, beta=0.8)
    cpu.write(k, v, chunk_size=1000)
    gpu = kvmem.MatrixMemory(6, 3, rule=rule, beta=0.8)  # the state follows the data onto the GPU
    gpu.write(k.cuda(), v.cuda(), chunk_size=1000)
    torch.testing.assert_close(gpu.matrix.cpu(), cpu.matrix, rtol=1e-4, atol=1e-4)
