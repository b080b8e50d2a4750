"""Tests for kvmem.similarity.

Every registered similarity is compared with an independent float64 reference: a
plain double loop over queries and keys (numpy, one pair at a time), on batched
inputs whose leading dimensions broadcast. Also covered: Hamming distance as a bit
count for both codes and its rejection of entries outside the code, the check on
the last dimension, and the registry (names, mapping specs, errors, spec round trips,
including a Kernel with a nested feature-map spec).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmem import features, similarity

# ---------------------------------------------------------------------------
# float64 references: one (query, key) pair at a time
# ---------------------------------------------------------------------------


def ref_dot(q, k):
    return sum(float(a) * float(b) for a, b in zip(q, k))


def ref_scaled_dot(q, k):
    return ref_dot(q, k) / math.sqrt(len(q))


def ref_cosine(q, k):
    nq = math.sqrt(ref_dot(q, q))
    nk = math.sqrt(ref_dot(k, k))
    if nq == 0.0 or nk == 0.0:
        return 0.0
    return ref_dot(q, k) / (nq * nk)


def ref_neg_euclidean(q, k):
    return -math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(q, k)))


def ref_neg_manhattan(q, k):
    return -sum(abs(float(a) - float(b)) for a, b in zip(q, k))


def ref_rbf(gamma):
    def f(q, k):
        return math.exp(-gamma * sum((float(a) - float(b)) ** 2 for a, b in zip(q, k)))

    return f


def ref_hamming(q, k):
    return -float(sum(1 for a, b in zip(q, k) if a != b))


def ref_elu_plus_one_kernel(q, k):
    def phi(v):
        return [x + 1.0 if x > 0 else math.exp(x) for x in map(float, v)]

    return ref_dot(phi(q), phi(k))


def reference_scores(pair_fn, queries, keys):
    """Apply ``pair_fn`` to every (query, key) pair, broadcasting leading dims."""
    q = np.asarray(queries, dtype=np.float64)
    k = np.asarray(keys, dtype=np.float64)
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    qb = np.broadcast_to(q, batch + q.shape[-2:])
    kb = np.broadcast_to(k, batch + k.shape[-2:])
    m, n = q.shape[-2], k.shape[-2]
    out = np.empty(batch + (m, n), dtype=np.float64)
    for idx in np.ndindex(*batch):
        for i in range(m):
            for j in range(n):
                out[idx + (i, j)] = pair_fn(qb[idx + (i,)], kb[idx + (j,)])
    return out


# name/spec, reference, and whether inputs must be codes
REAL_CASES = [
    ("dot", ref_dot),
    ("scaled_dot", ref_scaled_dot),
    ("cosine", ref_cosine),
    ("neg_euclidean", ref_neg_euclidean),
    ("neg_manhattan", ref_neg_manhattan),
    ({"name": "rbf", "gamma": 1.0}, ref_rbf(1.0)),
    ({"name": "rbf", "gamma": 0.3}, ref_rbf(0.3)),
    ({"name": "kernel", "feature_map": "identity"}, ref_dot),
    ({"name": "kernel", "feature_map": "elu_plus_one"}, ref_elu_plus_one_kernel),
]

# (queries shape, keys shape): leading dims equal, broadcast, or missing on one side
SHAPES = [
    ((5, 3), (4, 3)),
    ((2, 5, 3), (2, 4, 3)),
    ((2, 1, 3, 4), (3, 6, 4)),
    ((1, 3, 4), (2, 5, 4)),
    ((3, 4), (2, 2, 5, 4)),
]


def _case_id(case):
    spec = case[0]
    return spec if isinstance(spec, str) else "-".join(f"{v}" for v in spec.values())


@pytest.mark.parametrize("case", REAL_CASES, ids=_case_id)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_real_similarities_match_double_loop(case, shapes):
    spec, ref = case
    gen = torch.Generator().manual_seed(1234)
    q = torch.randn(*shapes[0], generator=gen, dtype=torch.float64)
    k = torch.randn(*shapes[1], generator=gen, dtype=torch.float64)
    out = similarity.get(spec)(q, k)
    expected = reference_scores(ref, q.numpy(), k.numpy())
    assert out.dtype == torch.float64
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", REAL_CASES, ids=_case_id)
def test_real_similarities_float32_close_to_reference(case):
    spec, ref = case
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, 8, generator=gen)
    k = torch.randn(1, 6, 8, generator=gen)
    out = similarity.get(spec)(q, k)
    assert out.dtype == torch.float32
    expected = reference_scores(ref, q.double().numpy(), k.double().numpy())
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    batch_q=st.lists(st.integers(1, 2), max_size=2),
    batch_k=st.lists(st.integers(1, 2), max_size=2),
    m=st.integers(1, 3),
    n=st.integers(1, 3),
    d=st.integers(1, 4),
    which=st.sampled_from(range(len(REAL_CASES))),
    seed=st.integers(0, 2**31 - 1),
)
def test_broadcasting_property(batch_q, batch_k, m, n, d, which, seed):
    # Make the two batch shapes broadcast-compatible: where both have a dim, they agree or one is 1.
    bq, bk = list(batch_q), list(batch_k)
    for i in range(1, min(len(bq), len(bk)) + 1):
        if bq[-i] != bk[-i]:
            bk[-i] = 1
    spec, ref = REAL_CASES[which]
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*bq, m, d, generator=gen, dtype=torch.float64)
    k = torch.randn(*bk, n, d, generator=gen, dtype=torch.float64)
    out = similarity.get(spec)(q, k)
    expected = reference_scores(ref, q.numpy(), k.numpy())
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_cosine_zero_vector_scores_zero():
    q = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    k = torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = similarity.get("cosine")(q, k)
    assert torch.isfinite(out).all()
    expected = torch.tensor([[0.0, 0.0], [(3.0 + 8.0) / 15.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_distances_of_a_point_to_itself_are_zero():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert similarity.get("neg_euclidean")(x, x).diagonal().abs().max() < 1e-7
    assert similarity.get("neg_manhattan")(x, x).diagonal().abs().max() == 0.0
    torch.testing.assert_close(similarity.get("rbf")(x, x).diagonal(), torch.ones(6, dtype=torch.float64))


def test_kernel_with_favor_equals_explicit_feature_dot():
    phi = features.get({"name": "favor", "num_features": 16, "seed": 5})
    sim = similarity.get({"name": "kernel", "feature_map": {"name": "favor", "num_features": 16, "seed": 5}})
    gen = torch.Generator().manual_seed(0)
    q = 0.3 * torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    k = 0.3 * torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    fq, fk = phi(q).numpy(), phi(k).numpy()
    expected = reference_scores(ref_dot, fq, fk)
    np.testing.assert_allclose(sim(q, k).numpy(), expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# Hamming
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("code,values", [("bipolar", (-1.0, 1.0)), ("binary", (0.0, 1.0))])
@pytest.mark.parametrize("shapes", [((4, 7), (5, 7)), ((2, 1, 3, 6), (3, 4, 6))], ids=str)
def test_hamming_counts_differing_bits(code, values, shapes):
    gen = torch.Generator().manual_seed(11)
    lo, hi = values

    def codes(shape):
        bits = torch.randint(0, 2, shape, generator=gen).double()
        return lo + (hi - lo) * bits

    q, k = codes(shapes[0]), codes(shapes[1])
    out = similarity.get({"name": "hamming", "code": code})(q, k)
    expected = reference_scores(ref_hamming, q.numpy(), k.numpy())
    assert tuple(out.shape) == expected.shape
    # Integer counts: exact equality.
    np.testing.assert_array_equal(out.numpy(), expected)


@settings(max_examples=30, deadline=None)
@given(
    q_bits=st.lists(st.booleans(), min_size=1, max_size=12),
    k_bits=st.lists(st.booleans(), min_size=1, max_size=12),
    code=st.sampled_from(["bipolar", "binary"]),
)
def test_hamming_single_pair_property(q_bits, k_bits, code):
    d = min(len(q_bits), len(k_bits))
    q_bits, k_bits = q_bits[:d], k_bits[:d]
    lo = -1.0 if code == "bipolar" else 0.0
    q = torch.tensor([[1.0 if b else lo for b in q_bits]])
    k = torch.tensor([[1.0 if b else lo for b in k_bits]])
    out = similarity.Hamming(code=code)(q, k)
    assert out.item() == -sum(a != b for a, b in zip(q_bits, k_bits))


@pytest.mark.parametrize(
    "code,bad",
    [
        ("bipolar", 0.0),
        ("bipolar", 0.5),
        ("bipolar", 2.0),
        ("binary", -1.0),
        ("binary", 0.5),
        ("binary", float("nan")),
    ],
)
@pytest.mark.parametrize("where", ["queries", "keys"])
def test_hamming_rejects_entries_outside_code(code, bad, where):
    good = 1.0
    q = torch.full((2, 4), good)
    k = torch.full((3, 4), good)
    if where == "queries":
        q[1, 2] = bad
    else:
        k[0, 3] = bad
    with pytest.raises(ValueError, match=where):
        similarity.Hamming(code=code)(q, k)


def test_hamming_rejects_unknown_code():
    with pytest.raises(ValueError):
        similarity.Hamming(code="ternary")
    with pytest.raises(ValueError):
        similarity.get({"name": "hamming", "code": "ternary"})


# ---------------------------------------------------------------------------
# Shape check
# ---------------------------------------------------------------------------

ALL_SPECS = [
    "dot",
    "scaled_dot",
    "cosine",
    "neg_euclidean",
    "neg_manhattan",
    {"name": "rbf", "gamma": 2.0},
    {"name": "hamming", "code": "bipolar"},
    {"name": "hamming", "code": "binary"},
    {"name": "kernel", "feature_map": "identity"},
    {"name": "kernel", "feature_map": {"name": "dpfp", "nu": 2}},
    {"name": "kernel", "feature_map": {"name": "favor", "num_features": 8, "seed": 3}},
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_mismatched_last_dim_raises(spec):
    q = torch.ones(2, 3)
    k = torch.ones(4, 5)
    with pytest.raises(ValueError, match="last dimension"):
        similarity.get(spec)(q, k)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_registry_names_cover_all_similarities():
    assert set(similarity.registry.names()) >= {
        "dot",
        "scaled_dot",
        "cosine",
        "neg_euclidean",
        "neg_manhattan",
        "rbf",
        "hamming",
        "kernel",
    }


def test_get_by_name_and_mapping():
    assert isinstance(similarity.get("cosine"), similarity.Cosine)
    rbf = similarity.get({"name": "rbf", "gamma": 2.0})
    assert isinstance(rbf, similarity.RBF)
    assert rbf.gamma == 2.0
    assert rbf == similarity.RBF(gamma=2.0)
    assert rbf != similarity.RBF(gamma=1.0)


def test_get_returns_instances_unchanged():
    sim = similarity.RBF(gamma=0.5)
    assert similarity.get(sim) is sim


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        similarity.get("no_such_similarity")
    message = str(info.value)
    assert "no_such_similarity" in message
    for name in similarity.registry.names():
        assert name in message


def test_unknown_parameter_is_type_error():
    with pytest.raises(TypeError, match="bogus"):
        similarity.get({"name": "rbf", "bogus": 1})
    with pytest.raises(TypeError):
        similarity.get({"name": "dot", "gamma": 1.0})


def test_mapping_without_name_is_value_error():
    with pytest.raises(ValueError):
        similarity.get({"gamma": 1.0})


@pytest.mark.parametrize("spec", [3, 2.0, None, ["rbf"], ("dot",), features.Identity()], ids=repr)
def test_wrong_spec_type_is_type_error(spec):
    with pytest.raises(TypeError):
        similarity.get(spec)


@pytest.mark.parametrize("gamma", [0, 0.0, -1.0, float("inf"), float("nan"), "1.0"])
def test_rbf_rejects_bad_gamma(gamma):
    with pytest.raises((ValueError, TypeError)):
        similarity.RBF(gamma=gamma)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_spec_round_trip(spec):
    sim = similarity.get(spec)
    s = sim.spec()
    # The spec must be plain JSON, and rebuild an equal similarity, also after JSON.
    assert json.loads(json.dumps(s)) == s
    assert s["name"] == sim.registry_name
    assert similarity.get(s) == sim
    assert similarity.get(json.loads(json.dumps(s))) == sim


def test_kernel_spec_nests_feature_map_spec():
    sim = similarity.get({"name": "kernel", "feature_map": {"name": "favor", "num_features": 8, "seed": 3}})
    assert isinstance(sim.feature_map, features.Favor)
    assert sim.spec() == {"name": "kernel", "feature_map": {"name": "favor", "num_features": 8, "seed": 3}}
    rebuilt = similarity.get(sim.spec())
    assert rebuilt == sim
    # A different nested parameter gives a different similarity.
    other = similarity.get({"name": "kernel", "feature_map": {"name": "favor", "num_features": 8, "seed": 4}})
    assert other != sim


def test_kernel_rejects_bad_feature_map():
    with pytest.raises(ValueError):
        similarity.get({"name": "kernel", "feature_map": "no_such_map"})
    with pytest.raises(TypeError):
        similarity.get({"name": "kernel", "feature_map": 3})


def test_neg_euclidean_gradient_is_finite_when_a_query_sits_on_a_key():
    from kvmem import similarity

    keys = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    q = keys[:1].clone().requires_grad_(True)  # exactly on key 0
    s = similarity.get("neg_euclidean")(q, keys)
    assert s[0, 0] == 0 and torch.isclose(s[0, 1], -torch.tensor(10.0, dtype=torch.float64).sqrt())
    s.sum().backward()
    # d/dq of -|q - k1| is -(q - k1)/|q - k1|; the term of k0 contributes its subgradient 0.
    expected = -(keys[0] - keys[1]) / (keys[0] - keys[1]).norm()
    assert torch.isfinite(q.grad).all() and torch.allclose(q.grad[0], expected)
