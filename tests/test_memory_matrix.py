"""MatrixMemory: write rules against float64 loops, the dual form, convergence, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import kvmem
from kvmem import features, similarity


def unit_rows(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_hebbian_matches_sum_of_outer_products():
    gen = torch.Generator().manual_seed(0)
    k, v = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, 3, generator=gen, dtype=torch.float64)
    mem = kvmem.MatrixMemory(4, 3, rule="hebbian", lr=0.5)
    mem.write(k, v)
    ref = np.zeros((4, 3))
    for n in range(6):
        ref += 0.5 * np.outer(k[n].numpy(), v[n].numpy())
    np.testing.assert_allclose(mem.matrix.numpy(), ref, rtol=1e-12)
    q = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    np.testing.assert_allclose(mem.read(q).numpy(), q.numpy() @ ref, rtol=1e-12)


def test_delta_rule_matches_plain_loop():
    gen = torch.Generator().manual_seed(1)
    k = unit_rows(torch.randn(3, 7, 5, generator=gen, dtype=torch.float64))
    v = torch.randn(3, 7, 2, generator=gen, dtype=torch.float64)
    mem = kvmem.MatrixMemory(5, 2, rule="delta", beta=0.6)
    mem.write(k, v)
    for b in range(3):
        m = np.zeros((5, 2))
        for n in range(7):
            kn, vn = k[b, n].numpy(), v[b, n].numpy()
            m = m + 0.6 * np.outer(kn, vn - kn @ m)
        np.testing.assert_allclose(mem.matrix[b].numpy(), m, rtol=1e-12, atol=1e-14)


def test_decay_rule_matches_plain_loop():
    gen = torch.Generator().manual_seed(2)
    k, v = torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(5, 2, generator=gen, dtype=torch.float64)
    mem = kvmem.MatrixMemory(3, 2, rule="decay", decay=0.7, lr=0.3)
    mem.write(k[:2], v[:2])
    mem.write(k[2:], v[2:], passes=2)
    m = np.zeros((3, 2))
    seq = [0, 1] + [2, 3, 4] * 2
    for n in seq:
        m = 0.7 * m + 0.3 * np.outer(k[n].numpy(), v[n].numpy())
    np.testing.assert_allclose(mem.matrix.numpy(), m, rtol=1e-12)


@pytest.mark.parametrize("passes", [2, 3, 17])
def test_multi_pass_delta_equals_repeated_single_passes(passes):
    gen = torch.Generator().manual_seed(passes)
    k = unit_rows(torch.randn(2, 6, 4, generator=gen, dtype=torch.float64))
    v = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    fast = kvmem.MatrixMemory(4, 3, rule="delta", beta=1.3)
    fast.write(k, v, passes=passes)
    slow = kvmem.MatrixMemory(4, 3, rule="delta", beta=1.3)
    for _ in range(passes):
        slow.write(k, v)
    torch.testing.assert_close(fast.matrix, slow.matrix, rtol=1e-10, atol=1e-12)


def test_one_delta_write_with_unit_key_makes_latest_pair_exact():
    gen = torch.Generator().manual_seed(3)
    mem = kvmem.MatrixMemory(8, 3, rule="delta", beta=1.0)
    k = unit_rows(torch.randn(20, 8, generator=gen))
    v = torch.randn(20, 3, generator=gen)
    mem.write(k, v)
    torch.testing.assert_close(mem.read(k[-1:]), v[-1:], rtol=1e-5, atol=1e-5)
    # Earlier pairs are not exact (20 > 8 pairs interfere).
    assert (mem.read(k[:-1]) - v[:-1]).abs().max() > 1e-2


@pytest.mark.parametrize("n_pairs", [4, 12, 16])
def test_repeated_delta_converges_to_pseudo_inverse(n_pairs):
    d = 16
    gen = torch.Generator().manual_seed(n_pairs)
    k = unit_rows(torch.randn(n_pairs, d, generator=gen, dtype=torch.float64))
    v = torch.randn(n_pairs, 5, generator=gen, dtype=torch.float64)
    mem = kvmem.MatrixMemory(d, 5, rule="delta", beta=1.0)
    mem.write(k, v, passes=10**8)
    # Starting from zero, the limit is the minimum-norm solution K^+ V.
    ref = np.linalg.pinv(k.numpy()) @ v.numpy()
    np.testing.assert_allclose(mem.matrix.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(mem.read(k).numpy(), v.numpy(), atol=1e-6)


def test_hebbian_exact_only_for_orthonormal_keys():
    d = 12
    gen = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    v = torch.randn(d, 3, generator=gen, dtype=torch.float64)
    ortho = kvmem.MatrixMemory(d, 3)
    ortho.write(q.T, v)
    torch.testing.assert_close(ortho.read(q.T), v)
    k = unit_rows(torch.randn(d, d, generator=gen, dtype=torch.float64))
    rand = kvmem.MatrixMemory(d, 3)
    rand.write(k, v)
    assert (rand.read(k) - v).abs().max() > 0.1


@given(
    n=st.integers(1, 6),
    m=st.integers(1, 4),
    dk=st.integers(1, 5),
    dv=st.integers(1, 3),
    batch=st.sampled_from([(), (2,), (2, 3)]),
    phi=st.sampled_from(["identity", "elu_plus_one", "relu", {"name": "dpfp", "nu": 2},
                         {"name": "favor", "num_features": 16, "seed": 3},
                         {"name": "random_fourier", "num_features": 16, "gamma": 0.5, "seed": 1}]),
    seed=st.integers(0, 2**16),
)
def test_dual_form_matrix_hebbian_equals_slot_kernel_identity(n, m, dk, dv, batch, phi, seed):
    """Paper Eqs. 1-3: phi(q) sum phi(k)^T v == sum_n (phi(q).phi(k_n)) v_n."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(*batch, n, dk, generator=gen, dtype=torch.float64)
    v = torch.randn(*batch, n, dv, generator=gen, dtype=torch.float64)
    q = torch.randn(*batch, m, dk, generator=gen, dtype=torch.float64)
    matrix = kvmem.MatrixMemory(dk, dv, feature_map=phi)
    matrix.write(k, v)
    slots = kvmem.SlotMemory(similarity={"name": "kernel", "feature_map": phi}, separation="identity")
    slots.write(k, v)
    torch.testing.assert_close(matrix.read(q), slots.read(q), rtol=1e-9, atol=1e-9)


def test_normalized_read_matches_katharopoulos_formula():
    gen = torch.Generator().manual_seed(6)
    k, v, q = (torch.randn(s, generator=gen, dtype=torch.float64) for s in ((9, 4), (9, 2), (3, 4)))
    mem = kvmem.MatrixMemory(4, 2, feature_map="elu_plus_one", normalize=True)
    mem.write(k, v)
    phi = features.get("elu_plus_one")
    w = phi(q) @ phi(k).T
    torch.testing.assert_close(mem.read(q), (w @ v) / w.sum(-1, keepdim=True))


def test_key_norm_l2_keeps_delta_stable_for_large_keys():
    gen = torch.Generator().manual_seed(7)
    k = 10 * torch.randn(5, 6, generator=gen)
    v = torch.randn(5, 2, generator=gen)
    with pytest.raises(ValueError, match="beta"):
        kvmem.MatrixMemory(6, 2, rule="delta").write(k, v)
    mem = kvmem.MatrixMemory(6, 2, rule="delta", key_norm="l2")
    mem.write(k, v)
    torch.testing.assert_close(mem.read(k[-1:]), v[-1:], rtol=1e-5, atol=1e-5)


def test_failed_write_leaves_memory_unchanged():
    mem = kvmem.MatrixMemory(3, 1, rule="delta")
    mem.write(torch.eye(3), torch.ones(3, 1))
    before = mem.matrix.clone()
    with pytest.raises(ValueError):
        mem.write(5 * torch.eye(3), torch.ones(3, 1))
    assert torch.equal(mem.matrix, before)
    assert int(mem.writes) == 3


def test_constructor_validation():
    with pytest.raises(ValueError, match="rule"):
        kvmem.MatrixMemory(3, 2, rule="oja")
    with pytest.raises(ValueError, match="beta"):
        kvmem.MatrixMemory(3, 2, rule="delta", beta=2.0)
    with pytest.raises(ValueError, match="decay"):
        kvmem.MatrixMemory(3, 2, rule="decay", decay=1.5)
    with pytest.raises(ValueError, match="normalize"):
        kvmem.MatrixMemory(3, 2, rule="delta", normalize=True)
    with pytest.raises(TypeError, match="key_dim"):
        kvmem.MatrixMemory(3.5, 2)
    mem = kvmem.MatrixMemory(3, 2)
    with pytest.raises(ValueError, match="empty"):
        mem.read(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., N, 3\]"):
        mem.write(torch.ones(2, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., N, 2\]"):
        mem.write(torch.ones(2, 3), torch.ones(2, 5))


def test_same_seed_same_random_feature_memory():
    def build():
        mem = kvmem.MatrixMemory(4, 2, feature_map={"name": "favor", "num_features": 32, "seed": 9})
        torch.manual_seed(123)  # global RNG must not matter
        mem.write(torch.ones(3, 4) * 0.1, torch.ones(3, 2))
        return mem.matrix

    a = build()
    torch.manual_seed(999)
    assert torch.equal(a, build())


def test_slot_memory_with_kernel_similarity_spec_round_trip():
    s = similarity.get({"name": "kernel", "feature_map": {"name": "dpfp", "nu": 2}})
    assert similarity.get(s.spec()) == s


def test_thousand_memories_in_one_call_equal_one_by_one():
    gen = torch.Generator().manual_seed(11)
    k = unit_rows(torch.randn(1000, 6, 8, generator=gen, dtype=torch.float64))
    v = torch.randn(1000, 6, 3, generator=gen, dtype=torch.float64)
    mem = kvmem.MatrixMemory(8, 3, rule="delta", beta=0.9)
    mem.write(k, v)
    out = mem.read(k)
    for b in (0, 499, 999):
        single = kvmem.MatrixMemory(8, 3, rule="delta", beta=0.9)
        single.write(k[b], v[b])
        torch.testing.assert_close(out[b], single.read(k[b]))
