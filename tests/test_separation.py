"""Tests for kvmem.separation.

Each separation is compared, row by row, with a float64 reference written in plain
Python from its definition: softmax(beta s), one-hot argmax with ties to the lowest
index, top-k softmax (ties at the k-th place to the lowest index), the step function
1[s >= theta] (optionally divided by the number of active keys), relu(s)**n (optionally
normalised) and exp(beta (s - max s)). Also covered: numerical robustness of softmax and
the exponential separation for huge scores and large beta in float32, parameter
validation, and the registry (get / spec round trip).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmem import separation

# ---------------------------------------------------------------------------
# Row-wise float64 references
# ---------------------------------------------------------------------------


def ref_softmax(row, beta):
    mx = max(row)
    e = [math.exp(beta * (s - mx)) for s in row]
    total = sum(e)
    return [v / total for v in e]


def ref_hardmax(row):
    mx = max(row)
    first = next(i for i, s in enumerate(row) if s == mx)
    return [1.0 if i == first else 0.0 for i in range(len(row))]


def ref_topk(row, k, beta):
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
    mx = row[order[0]]
    e = {i: math.exp(beta * (row[i] - mx)) for i in order}
    total = sum(e.values())
    return [e[i] / total if i in e else 0.0 for i in range(len(row))]


def ref_threshold(row, theta, normalize):
    w = [1.0 if s >= theta else 0.0 for s in row]
    count = sum(w)
    if normalize and count > 0:
        w = [v / count for v in w]
    return w


def ref_polynomial(row, n, normalize):
    w = [max(s, 0.0) ** n for s in row]
    total = sum(w)
    if normalize and total > 0:
        w = [v / total for v in w]
    return w


def ref_exponential(row, beta):
    mx = max(row)
    return [math.exp(beta * (s - mx)) for s in row]


def rowwise(fn, scores):
    s = np.asarray(scores, dtype=np.float64)
    flat = s.reshape(-1, s.shape[-1])
    out = np.asarray([fn([float(v) for v in row]) for row in flat], dtype=np.float64)
    return out.reshape(s.shape)


def _scores(*shape, seed=0, scale=1.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)


# (spec, reference on one row)
CASES = [
    ("identity", lambda r: list(r)),
    ("softmax", lambda r: ref_softmax(r, 1.0)),
    ({"name": "softmax", "beta": 3.5}, lambda r: ref_softmax(r, 3.5)),
    ("hardmax", ref_hardmax),
    ({"name": "topk", "k": 1}, lambda r: ref_topk(r, 1, 1.0)),
    ({"name": "topk", "k": 3, "beta": 2.0}, lambda r: ref_topk(r, 3, 2.0)),
    ({"name": "topk", "k": 100, "beta": 0.5}, lambda r: ref_topk(r, 100, 0.5)),
    ({"name": "threshold", "theta": 0.2}, lambda r: ref_threshold(r, 0.2, False)),
    ({"name": "threshold", "theta": -0.5, "normalize": True}, lambda r: ref_threshold(r, -0.5, True)),
    ({"name": "polynomial", "n": 1}, lambda r: ref_polynomial(r, 1, False)),
    ({"name": "polynomial", "n": 3}, lambda r: ref_polynomial(r, 3, False)),
    ({"name": "polynomial", "n": 2, "normalize": True}, lambda r: ref_polynomial(r, 2, True)),
    ("exponential", lambda r: ref_exponential(r, 1.0)),
    ({"name": "exponential", "beta": 4.0}, lambda r: ref_exponential(r, 4.0)),
]


def _id(spec):
    return spec if isinstance(spec, str) else "-".join(str(v) for v in spec.values())


@pytest.mark.parametrize("spec,ref", CASES, ids=[_id(c[0]) for c in CASES])
@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 5)], ids=str)
def test_matches_reference(spec, ref, shape):
    s = _scores(*shape, seed=1)
    out = separation.get(spec)(s)
    assert out.shape == s.shape
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), rowwise(ref, s), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec,ref", CASES, ids=[_id(c[0]) for c in CASES])
def test_float32_close_to_reference(spec, ref):
    s = _scores(3, 8, seed=2, dtype=torch.float32)
    out = separation.get(spec)(s)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), rowwise(ref, s.double()), rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(-3, 3), min_size=5, max_size=5), min_size=1, max_size=3),
    which=st.sampled_from(range(len(CASES))),
)
def test_reference_with_ties_property(rows, which):
    # Small integer scores make ties frequent (hardmax / topk tie-breaking, theta boundary).
    spec, ref = CASES[which]
    s = torch.tensor(rows, dtype=torch.float64) / 2.0
    out = separation.get(spec)(s)
    np.testing.assert_allclose(out.numpy(), rowwise(ref, s), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# Softmax
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_softmax_rows_sum_to_one(beta):
    w = separation.Softmax(beta=beta)(_scores(3, 4, 9, seed=3, scale=5.0))
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4, dtype=torch.float64))


@pytest.mark.parametrize("beta", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("scale", [1.0, 1e10, 1e30])
def test_softmax_finite_for_huge_scores_float32(beta, scale):
    s = _scores(4, 16, seed=4, scale=scale, dtype=torch.float32)
    w = separation.Softmax(beta=beta)(s)
    assert w.dtype == torch.float32
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(4))
    np.testing.assert_allclose(w.double().numpy(), rowwise(lambda r: ref_softmax(r, beta), s.double()), atol=1e-6)


def test_softmax_extreme_float32_scores():
    s = torch.tensor([[3e38, -3e38, 1e30], [-3e38, -3e38, -3e38]], dtype=torch.float32)
    w = separation.Softmax(beta=1e4)(s)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


@pytest.mark.parametrize("value", [0.0, -7.0, 1e30, -1e30])
@pytest.mark.parametrize("beta", [1.0, 1e4])
def test_softmax_all_equal_scores_uniform(value, beta):
    s = torch.full((2, 5), value, dtype=torch.float32)
    w = separation.Softmax(beta=beta)(s)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.full((2, 5), 0.2))


# ---------------------------------------------------------------------------
# Hardmax
# ---------------------------------------------------------------------------


def test_hardmax_one_hot_ties_to_lowest_index():
    s = torch.tensor(
        [
            [0.1, 0.9, 0.3],
            [0.5, 0.5, 0.5],
            [0.0, 2.0, 2.0],
            [-1.0, -1.0, -3.0],
        ]
    )
    w = separation.get("hardmax")(s)
    expected = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.equal(w, expected)


def test_hardmax_exactly_one_hot_batched():
    s = torch.randint(0, 3, (4, 5, 6), generator=torch.Generator().manual_seed(5)).double()
    w = separation.get("hardmax")(s)
    assert torch.equal(w.sum(-1), torch.ones(4, 5, dtype=torch.float64))
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(w.numpy(), rowwise(ref_hardmax, s))


# ---------------------------------------------------------------------------
# Top-k
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_topk_is_renormalised_softmax_over_k_best(k, beta):
    s = _scores(3, 7, seed=6)
    w = separation.TopK(k=k, beta=beta)(s)
    full = separation.Softmax(beta=beta)(s)
    for row_w, row_full, row_s in zip(w, full, s):
        best = torch.argsort(row_s, descending=True)[:k]
        mask = torch.zeros_like(row_s, dtype=torch.bool)
        mask[best] = True
        assert (row_w[~mask] == 0).all()
        torch.testing.assert_close(row_w[mask], row_full[mask] / row_full[mask].sum())
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("k", [7, 8, 1000])
def test_topk_with_k_at_least_n_is_softmax(k):
    s = _scores(2, 3, 7, seed=7)
    torch.testing.assert_close(separation.TopK(k=k, beta=2.0)(s), separation.Softmax(beta=2.0)(s))


def test_topk_ties_at_kth_place_go_to_lowest_index():
    s = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 0.0, 1.0, 0.0]])
    w = separation.TopK(k=2, beta=1.0)(s)
    expected = torch.tensor(
        [[0.0, 0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.5, 0.0]]
    )
    torch.testing.assert_close(w, expected)
    w3 = separation.TopK(k=3, beta=1.0)(s[2:])
    e = math.e
    torch.testing.assert_close(w3, torch.tensor([[1.0, e, 0.0, e, 0.0]]) / (1.0 + 2 * e))


def test_topk_finite_for_huge_scores():
    s = _scores(3, 10, seed=8, scale=1e30, dtype=torch.float32)
    w = separation.TopK(k=3, beta=1e4)(s)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3))


# ---------------------------------------------------------------------------
# Threshold, polynomial, exponential
# ---------------------------------------------------------------------------


def test_threshold_step_function():
    s = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [-3.0, -2.0, -1.5, -0.1]])
    w = separation.Threshold(theta=0.0)(s)
    assert torch.equal(w, (s >= 0.0).to(s.dtype))
    assert torch.equal(w, torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))


def test_threshold_normalize_divides_by_count_and_keeps_zero_rows():
    s = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [-3.0, -2.0, -1.5, -0.1], [5.0, 5.0, 5.0, 5.0]])
    w = separation.Threshold(theta=0.0, normalize=True)(s)
    expected = torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    torch.testing.assert_close(w, expected)
    assert torch.isfinite(w).all()


def test_threshold_hamming_radius():
    # theta = -r activates keys within Hamming radius r (scores are negative distances).
    distances = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    w = separation.Threshold(theta=-2)(-distances)
    assert torch.equal(w, torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_polynomial_is_rectified_power(n):
    s = _scores(3, 6, seed=9, scale=2.0)
    w = separation.RectifiedPolynomial(n=n)(s)
    torch.testing.assert_close(w, torch.relu(s) ** n, rtol=1e-12, atol=0)
    wn = separation.RectifiedPolynomial(n=n, normalize=True)(s)
    np.testing.assert_allclose(wn.numpy(), rowwise(lambda r: ref_polynomial(r, n, True), s), rtol=1e-12)


def test_polynomial_normalize_all_nonpositive_row_stays_zero():
    s = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 3.0, -1.0]])
    w = separation.RectifiedPolynomial(n=2, normalize=True)(s)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.9, 0.0]]))
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_exponential_ratios(beta):
    s = _scores(2, 6, seed=10)
    w = separation.Exponential(beta=beta)(s)
    assert (w > 0).all() and (w <= 1).all()
    # The maximum gets weight exactly 1.
    assert torch.equal(w.amax(-1), torch.ones(2, dtype=torch.float64))
    for a in range(2):
        for i in range(6):
            for j in range(6):
                expected = math.exp(beta * (float(s[a, i]) - float(s[a, j])))
                assert math.isclose(float(w[a, i] / w[a, j]), expected, rel_tol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 1e4])
def test_exponential_finite_for_large_scores(beta):
    s = torch.tensor([[1e30, 1e30 - 1e24, -1e30], [200.0, 100.0, 150.0]], dtype=torch.float32)
    w = separation.Exponential(beta=beta)(s)
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w.double().numpy(), rowwise(lambda r: ref_exponential(r, beta), s.double()), atol=1e-6)
    assert w[0, 0] == 1.0 and w[1, 0] == 1.0


# ---------------------------------------------------------------------------
# Validation and registry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "softmax", "beta": 0},
        {"name": "softmax", "beta": -1.0},
        {"name": "softmax", "beta": float("inf")},
        {"name": "softmax", "beta": float("nan")},
        {"name": "softmax", "beta": "1"},
        {"name": "topk", "k": 0},
        {"name": "topk", "k": -1},
        {"name": "topk", "k": 1.5},
        {"name": "topk", "k": 2, "beta": 0.0},
        {"name": "threshold", "theta": float("inf")},
        {"name": "threshold", "theta": float("-inf")},
        {"name": "threshold", "theta": float("nan")},
        {"name": "threshold", "theta": "0"},
        {"name": "polynomial", "n": 0},
        {"name": "polynomial", "n": 2.0},
        {"name": "exponential", "beta": 0.0},
        {"name": "exponential", "beta": -2.0},
    ],
    ids=str,
)
def test_parameter_validation(spec):
    with pytest.raises((ValueError, TypeError)):
        separation.get(spec)


def test_validation_error_types():
    with pytest.raises(ValueError):
        separation.Softmax(beta=0.0)
    with pytest.raises(ValueError):
        separation.TopK(k=0)
    with pytest.raises(TypeError):
        separation.TopK(k=2.0)
    with pytest.raises(ValueError):
        separation.RectifiedPolynomial(n=0)
    with pytest.raises(ValueError):
        separation.Threshold(theta=float("nan"))
    with pytest.raises(ValueError):
        separation.Exponential(beta=-1.0)


ALL_SPECS = [
    "identity",
    "softmax",
    {"name": "softmax", "beta": 8.0},
    "hardmax",
    {"name": "topk", "k": 3, "beta": 2.0},
    {"name": "threshold", "theta": -2.0, "normalize": True},
    {"name": "threshold", "theta": 0.5},
    {"name": "polynomial", "n": 3, "normalize": True},
    {"name": "exponential", "beta": 0.25},
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_spec_round_trip(spec):
    sep = separation.get(spec)
    s = sep.spec()
    assert json.loads(json.dumps(s)) == s
    assert s["name"] == sep.registry_name
    assert separation.get(s) == sep
    assert separation.get(sep) is sep
    if isinstance(spec, dict):
        for key, value in spec.items():
            assert s[key] == value


def test_registry_get_and_errors():
    assert separation.get({"name": "softmax", "beta": 8.0}) == separation.Softmax(beta=8.0)
    assert separation.get({"name": "softmax", "beta": 8.0}) != separation.Softmax(beta=4.0)
    assert set(separation.registry.names()) >= {
        "identity",
        "softmax",
        "hardmax",
        "topk",
        "threshold",
        "polynomial",
        "exponential",
    }
    with pytest.raises(ValueError) as info:
        separation.get("argmax")
    for name in separation.registry.names():
        assert name in str(info.value)
    with pytest.raises(TypeError, match="gamma"):
        separation.get({"name": "softmax", "gamma": 1.0})
    with pytest.raises(TypeError):
        separation.get(8.0)
    with pytest.raises(ValueError):
        separation.get({"beta": 8.0})
