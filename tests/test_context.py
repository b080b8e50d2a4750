"""kvmem.context: TCM integration and random drift against closed forms and plain loops."""

import math

import pytest
import torch

from kvmem.context import drift_similarity, integrate, random_drift, tcm_rho, tcm_update


def test_tcm_update_keeps_unit_norm_and_matches_closed_form():
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    c = c / c.norm(dim=-1, keepdim=True)
    x = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    beta = torch.rand(50, generator=gen, dtype=torch.float64)
    new = tcm_update(c, x, beta)
    torch.testing.assert_close(new.norm(dim=-1), torch.ones(50, dtype=torch.float64))
    # Independent reference: solve ||rho c + b u|| = 1 for rho >= 0 with the quadratic formula.
    for i in range(50):
        u = x[i] / x[i].norm()
        d = float(c[i] @ u)
        b = float(beta[i])
        rho = (-2 * b * d + math.sqrt(4 * b * b * d * d - 4 * (b * b - 1))) / 2
        torch.testing.assert_close(new[i], rho * c[i] + b * u)


def test_tcm_orthogonal_input_and_beta_edges():
    c = torch.tensor([1.0, 0.0, 0.0])
    u = torch.tensor([0.0, 2.0, 0.0])
    torch.testing.assert_close(tcm_update(c, u, 0.0), c)
    torch.testing.assert_close(tcm_update(c, u, 1.0), torch.tensor([0.0, 1.0, 0.0]))
    assert float(tcm_rho(torch.tensor(0.0), 0.6)) == pytest.approx(0.8)


def test_integrate_equals_loop_and_default_start():
    items = torch.eye(6, dtype=torch.float64)[:5]
    ctx = integrate(items, 0.7)
    c = torch.zeros(6, dtype=torch.float64)
    c[-1] = 1
    for t in range(5):
        c = tcm_update(c, items[t], 0.7)
        torch.testing.assert_close(ctx[t], c)
    # Orthogonal one-hot inputs: the weight of item j in context t is beta * rho^(t-j).
    rho = math.sqrt(1 - 0.7**2)
    assert float(ctx[4, 0]) == pytest.approx(0.7 * rho**4)


def test_random_drift_neighbour_cosine_is_exact_and_lag_decay_follows_closed_form():
    c = random_drift(30, 2000, rate=0.3, batch_shape=(4,), generator=1, dtype=torch.float64)
    assert c.shape == (4, 30, 2000)
    torch.testing.assert_close(c.norm(dim=-1), torch.ones(4, 30, dtype=torch.float64))
    neighbour = (c[:, 1:] * c[:, :-1]).sum(-1)
    torch.testing.assert_close(neighbour, torch.full_like(neighbour, math.sqrt(1 - 0.09)))
    lag10 = (c[:, 10:] * c[:, :-10]).sum(-1).mean()
    assert float(lag10) == pytest.approx(float(drift_similarity(10, 0.3)), abs=0.03)


def test_random_drift_seeded_and_validated():
    a = random_drift(5, 10, rate=0.5, generator=3)
    b = random_drift(5, 10, rate=0.5, generator=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, random_drift(5, 10, rate=0.5, generator=4))
    with pytest.raises(ValueError, match="rate"):
        random_drift(5, 10, rate=1.5)
    with pytest.raises(ValueError, match="initial"):
        random_drift(5, 10, rate=0.5, initial=torch.ones(3))
    with pytest.raises(ValueError, match="c_in"):
        tcm_update(torch.ones(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="beta"):
        tcm_update(torch.ones(3), torch.ones(3), -0.1)
    with pytest.raises(ValueError, match="features"):
        tcm_update(torch.ones(3), torch.ones(4), 0.5)
