"""kvmem.bio.three_factor: the three-factor network against plain float64 loops, the
parametrised rule, meta-learning, the recall task, save/load, batching and errors."""

import math

import numpy as np
import pytest
import torch

import kvmem
from kvmem.bio import three_factor as tf
from kvmem.bio.three_factor import (
    PlasticityRule,
    PlasticKeyValueNetwork,
    ThreeFactorMemory,
    meta_learn,
    recall_task,
)



pytestmark = pytest.mark.usefixtures("one_thread")


# -- plain references --------------------------------------------------------------------


def np_softmax(s, beta):
    e = [math.exp(beta * (v - max(s))) for v in s]
    total = sum(e)
    return [v / total for v in e]


def loop_network(xs, ys, qs, gammas, n, beta, key_coef, value_coef, value_gate="local"):
    """One trial, element by element in float64: K[i][j], V[i][k] as Python lists.

    xs [T][d], ys [T][m], qs [T] (global factor), gammas [T][N] (local factor).
    dK_ij = g_i (c0 x_j + c1 h_i + c2 h_i x_j + c3 K_ij), h = softmax(beta K x) before;
    dV_ik = g'_i (c0 h'_i + c1 y_k + c2 h'_i y_k + c3 V_ik), h' = softmax(beta K_new x).
    """
    d, m = len(xs[0]), len(ys[0])
    K = [[0.0] * d for _ in range(n)]
    V = [[0.0] * m for _ in range(n)]
    for x, y, q, gamma in zip(xs, ys, qs, gammas):
        h = np_softmax([sum(K[i][j] * x[j] for j in range(d)) for i in range(n)], beta)
        for i in range(n):
            g = q * gamma[i]
            for j in range(d):
                K[i][j] += g * (key_coef[0] * x[j] + key_coef[1] * h[i] + key_coef[2] * h[i] * x[j] + key_coef[3] * K[i][j])
        h2 = np_softmax([sum(K[i][j] * x[j] for j in range(d)) for i in range(n)], beta)
        for i in range(n):
            g = q * gamma[i] if value_gate == "local" else q
            for k in range(m):
                V[i][k] += g * (value_coef[0] * h2[i] + value_coef[1] * y[k] + value_coef[2] * h2[i] * y[k]
                                + value_coef[3] * V[i][k])
    return np.array(K), np.array(V)


def loop_read(K, V, queries, beta):
    out = []
    for q in queries:
        w = np_softmax([float(np.dot(K[i], q)) for i in range(len(K))], beta)
        out.append([sum(w[i] * V[i][k] for i in range(len(K))) for k in range(V.shape[1])])
    return np.array(out)


def sequential_gammas(t, n, start=0):
    return [[1.0 if (start + s) % n == i else 0.0 for i in range(n)] for s in range(t)]


def random_gammas(t, batch, n, p, seed):
    """The random local factor's draws: one torch.rand(*batch, N) per presentation."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([(torch.rand(*batch, n, generator=gen) < p).double() for _ in range(t)], dim=-2)


def data(trials, t, d, m=None, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, t, d, generator=gen, dtype=dtype)
    y = torch.randn(trials, t, m or d, generator=gen, dtype=dtype)
    return x, y


# -- ThreeFactorMemory against the loop ------------------------------------------------------


@pytest.mark.parametrize("local", ["sequential", "random"])
def test_writes_and_reads_match_the_plain_loop(local):
    trials, t, d, m, n, beta, p, seed = 3, 9, 5, 4, 4, 0.7, 0.4, 5
    x, y = data(trials, t, d, m)
    store = torch.tensor([1, 1, 0, 1, 0.5, 1, 1, 0, 1], dtype=torch.float64)
    mem = ThreeFactorMemory(n, local=local, p=p, beta=beta, seed=seed)
    mem.write(x, y, store=store)
    queries = torch.randn(trials, 6, d, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    out = mem.read(queries)
    gam = random_gammas(t, (trials,), n, p, seed) if local == "random" else None
    for b in range(trials):
        gammas = sequential_gammas(t, n) if local == "sequential" else gam[b].tolist()
        K, V = loop_network(x[b].tolist(), y[b].tolist(), store.tolist(), gammas, n, beta,
                            tf.HAND_DESIGNED["key"], tf.HAND_DESIGNED["value"])
        np.testing.assert_allclose(mem.keys[b].numpy(), K, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mem.values[b].numpy(), V, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[b].numpy(), loop_read(K, V, queries[b].numpy(), beta), rtol=1e-10, atol=1e-12)
    if local == "random":
        assert 0 < float(gam.mean()) < 1  # the draws did select and skip slots


def test_read_details_are_hidden_activity_and_scores():
    x, y = data(2, 5, 6, 3, seed=1)
    mem = ThreeFactorMemory(4, beta=2.0)
    mem.write(x, y)
    q = torch.randn(2, 3, 6, dtype=torch.float64)
    r = mem.read(q, details=True)
    torch.testing.assert_close(r.scores, q @ mem.keys.transpose(-1, -2))
    torch.testing.assert_close(r.weights, torch.softmax(2.0 * r.scores, dim=-1))
    torch.testing.assert_close(r.weights.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(r.values, r.weights @ mem.values)


def test_sequential_overwrites_the_least_recently_written_slot():
    n, d = 3, 8
    x = torch.sign(torch.randn(n + 2, d, generator=torch.Generator().manual_seed(2))) + 0.0
    mem = ThreeFactorMemory(n)
    mem.write(x, x)
    # Presentations n and n + 1 went to slots 0 and 1; slot 2 still holds presentation 2.
    assert torch.equal(mem.keys, torch.stack([x[n], x[n + 1], x[2]]))
    assert mem.presented == n + 2
    # Each value is its pattern times h'_i, the new key's read weight at its own write.
    h = torch.softmax(mem.keys @ x[n + 1], dim=-1)
    torch.testing.assert_close(mem.values[1], h[1] * x[n + 1])


def test_global_factor_zero_changes_nothing_but_the_pointer_moves():
    x, y = data(1, 4, 6, seed=3)
    mem = ThreeFactorMemory(4)
    mem.write(x[:, :2], y[:, :2])
    k, v = mem.keys.clone(), mem.values.clone()
    mem.write(x[:, 2:3], y[:, 2:3], store=torch.zeros(1, 1))
    assert torch.equal(mem.keys, k) and torch.equal(mem.values, v) and mem.presented == 3
    mem.write(x[:, 3:], y[:, 3:])
    assert torch.equal(mem.keys[0, 3], x[0, 3]) and torch.equal(mem.keys[0, 2], torch.zeros(6, dtype=x.dtype))


@pytest.mark.parametrize("local", ["sequential", "random"])
def test_chunked_writes_equal_one_write(local):
    x, y = data(2, 11, 5, seed=4)
    one = ThreeFactorMemory(4, local=local, p=0.3, seed=7)
    one.write(x, y)
    parts = ThreeFactorMemory(4, local=local, p=0.3, seed=7)
    for a, b in ((0, 3), (3, 4), (4, 11)):
        parts.write(x[:, a:b], y[:, a:b])
    assert torch.equal(one.keys, parts.keys) and torch.equal(one.values, parts.values)


def test_batch_dimensions_are_independent_memories():
    x, y = data(6, 7, 5, seed=6)
    batched = ThreeFactorMemory(3)
    batched.write(x.reshape(2, 3, 7, 5), y.reshape(2, 3, 7, 5))
    q = torch.randn(6, 4, 5, dtype=torch.float64)
    out = batched.read(q.reshape(2, 3, 4, 5)).reshape(6, 4, 5)
    for b in range(6):
        single = ThreeFactorMemory(3)
        single.write(x[b], y[b])
        torch.testing.assert_close(out[b], single.read(q[b]))
    # One set of queries broadcast to every memory.
    assert batched.read(q[0]).shape == (2, 3, 4, 5)


def test_same_seed_same_memory_and_seed_matters():
    x, y = data(4, 12, 6, seed=8)
    a, b, c = (ThreeFactorMemory(5, local="random", p=0.3, seed=s) for s in (1, 1, 2))
    for mem in (a, b, c):
        mem.write(x, y)
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert not torch.equal(a.keys, c.keys)


@pytest.mark.parametrize("local", ["sequential", "random"])
def test_save_load_roundtrip_continues_identically(tmp_path, local):
    x, y = data(2, 10, 4, seed=9)
    mem = ThreeFactorMemory(3, local=local, p=0.5, beta=1.5, seed=3)
    mem.write(x[:, :6], y[:, :6])
    path = tmp_path / "tf.safetensors"
    kvmem.save(mem, path)
    back = kvmem.load(path)
    assert isinstance(back, ThreeFactorMemory) and back.config() == mem.config()
    assert torch.equal(back.keys, mem.keys) and back.presented == 6
    mem.write(x[:, 6:], y[:, 6:])
    back.write(x[:, 6:], y[:, 6:])
    assert torch.equal(back.keys, mem.keys) and torch.equal(back.values, mem.values)


def test_gradients_flow_through_writes_to_the_inputs():
    x, y = data(1, 4, 3, seed=10)
    x.requires_grad_(True)
    mem = ThreeFactorMemory(2)
    mem.write(x, y)
    mem.read(x.detach()[:, :1]).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_autoassociative_recall_is_exact_up_to_n_and_forgets_the_oldest_after():
    x, cue = recall_task(trials=5, length=30, dim=40, seed=2, dtype=torch.float64)
    mem = ThreeFactorMemory(20)
    mem.write(x, x)
    right = (torch.sign(mem.read(cue)) == x).all(-1)  # [5, 30]
    assert bool(right[:, 10:].all())  # the 20 most recent
    assert float(right[:, :10].double().mean()) < 0.2  # overwritten


# -- the parametrised rule and the differentiable network -------------------------------------


@pytest.mark.parametrize("local", ["sequential", "random"])
def test_network_with_hand_designed_rule_equals_the_memory(local):
    x, y = data(3, 13, 6, 4, seed=11)
    mem = ThreeFactorMemory(5, local=local, p=0.3, beta=0.8, seed=4)
    mem.write(x, y)
    net = PlasticKeyValueNetwork(5, PlasticityRule.hand_designed().double(), local=local, p=0.3, beta=0.8)
    k, v = net.memorize(x, y, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(k, mem.keys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v, mem.values, rtol=1e-12, atol=1e-12)
    q = torch.randn(3, 2, 6, dtype=torch.float64)
    torch.testing.assert_close(net.recall(k, v, q), mem.read(q))


@pytest.mark.parametrize("gate", ["local", "global"])
def test_general_rule_matches_the_plain_loop(gate):
    rule = PlasticityRule((0.3, -0.2, 0.5, -0.4), (0.1, 0.05, 0.9, -0.15)).double()
    ck, cv = rule.key.tolist(), rule.value.tolist()  # the coefficients as stored (float32-rounded)
    x, y = data(2, 8, 4, 3, seed=12)
    store = torch.tensor([[1, 0, 1, 1, 1, 0.5, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1]], dtype=torch.float64)
    net = PlasticKeyValueNetwork(3, rule, beta=1.3, value_gate=gate)
    k, v = net.memorize(x, y, store)
    q = torch.randn(2, 5, 4, dtype=torch.float64)
    out = net.recall(k, v, q)
    for b in range(2):
        K, V = loop_network(x[b].tolist(), y[b].tolist(), store[b].tolist(), sequential_gammas(8, 3), 3, 1.3, ck, cv, gate)
        np.testing.assert_allclose(k[b].detach().numpy(), K, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(v[b].detach().numpy(), V, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(out[b].detach().numpy(), loop_read(K, V, q[b].numpy(), 1.3), rtol=1e-10, atol=1e-12)


def test_memorize_continues_from_a_state():
    x, y = data(2, 9, 4, seed=13)
    net = PlasticKeyValueNetwork(3, PlasticityRule((0.5, 0.1, 0.2, -0.6), (0.0, 0.1, 1.0, -0.05)).double(),
                                 value_gate="global")
    full = net.memorize(x, y)
    state = net.memorize(x[:, :4], y[:, :4])
    part = net.memorize(x[:, 4:], y[:, 4:], state=state, step=4)
    torch.testing.assert_close(part[0], full[0])
    torch.testing.assert_close(part[1], full[1])


def test_rule_gradients_match_finite_differences():
    rule = PlasticityRule((0.8, 0.1, 0.2, -0.7), (0.05, -0.1, 0.9, -0.1)).double()
    x, cue = recall_task(2, 6, 5, seed=3, dtype=torch.float64)
    net = PlasticKeyValueNetwork(4, rule, value_gate="global")

    def loss():
        return ((net(x, x, cue) - x) ** 2).mean()

    loss().backward()
    grads = torch.cat([rule.key.grad, rule.value.grad])
    eps, fd = 1e-6, []
    for param in (rule.key, rule.value):
        for i in range(4):
            with torch.no_grad():
                param[i] += eps
                up = float(loss())
                param[i] -= 2 * eps
                down = float(loss())
                param[i] += eps
            fd.append((up - down) / (2 * eps))
    np.testing.assert_allclose(grads.numpy(), np.array(fd), rtol=1e-5, atol=1e-8)
    assert bool(grads.abs().max() > 1e-4)


def test_rule_coefficients_and_constructors():
    hand = PlasticityRule.hand_designed().coefficients()
    assert hand == {"key": {"pre": 1.0, "post": 0.0, "prepost": 0.0, "decay": -1.0},
                    "value": {"pre": 0.0, "post": 0.0, "prepost": 1.0, "decay": -1.0}}
    a, b = PlasticityRule.random(0.2, seed=5), PlasticityRule.random(0.2, seed=5)
    assert a.coefficients() == b.coefficients() != PlasticityRule.random(0.2, seed=6).coefficients()
    assert len(list(a.parameters())) == 2


def test_meta_learning_tiny_run_learns_and_is_reproducible():
    kwargs = dict(dim=10, slots=10, lengths=(5, 20), steps=40, batch=8, lr=0.1, init="hebbian", seed=2)
    a = meta_learn(**kwargs)
    b = meta_learn(**kwargs)
    assert a.rule.coefficients() == b.rule.coefficients() and a.losses == b.losses
    assert a.initial == {"key": {"pre": 0.0, "post": 0.0, "prepost": 1.0, "decay": 0.0},
                         "value": {"pre": 0.0, "post": 0.0, "prepost": 1.0, "decay": 0.0}}
    c = a.rule.coefficients()
    # Hebbian values stay; keys gain a presynaptic term and a decay (an overwrite).
    assert c["value"]["prepost"] > 5 * max(abs(c["value"]["pre"]), abs(c["value"]["post"]))
    assert c["key"]["pre"] > 0.2 and c["key"]["decay"] < -0.2
    # On held-out lists the learned rule recalls far better than the Hebbian start.
    x, cue = recall_task(20, 10, 10, seed=7)
    start = PlasticityRule(*(list(a.initial[s].values()) for s in ("key", "value")))
    with torch.no_grad():
        out = PlasticKeyValueNetwork(10, a.rule, value_gate="global")(x, x, cue)
        out0 = PlasticKeyValueNetwork(10, start, value_gate="global")(x, x, cue)
    assert float(((out - x) ** 2).mean()) < 0.5 * float(((out0 - x) ** 2).mean())
    hand = PlasticKeyValueNetwork(10)(x, x, cue)
    acc = [float((torch.sign(o) == x).double().mean()) for o in (out, out0, hand)]
    assert acc[0] >= acc[2] - 0.02 and acc[0] > acc[1] + 0.1, acc


# -- the recall task -------------------------------------------------------------------------


def test_recall_task_erases_exactly_the_fraction_and_is_seeded():
    x, cue = recall_task(4, 7, 40, seed=1)
    assert x.shape == cue.shape == (4, 7, 40)
    assert bool((x.abs() == 1).all())
    assert bool(((cue == 0).sum(-1) == 24).all())
    assert bool(((cue == x) | (cue == 0)).all())
    x2, cue2 = recall_task(4, 7, 40, seed=1)
    assert torch.equal(x, x2) and torch.equal(cue, cue2)
    assert not torch.equal(x, recall_task(4, 7, 40, seed=2)[0])
    assert bool((recall_task(2, 3, 10, erase=0.0, seed=0)[1].abs() == 1).all())


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(slots=0), ValueError, "slots"),
        (dict(slots=2.5), TypeError, "slots"),
        (dict(slots=4, local="lru"), ValueError, "local"),
        (dict(slots=4, p=0.0), ValueError, "p"),
        (dict(slots=4, p=1.5), ValueError, "p"),
        (dict(slots=4, beta=-1.0), ValueError, "beta"),
        (dict(slots=4, seed=-1), ValueError, "seed"),
    ],
)
def test_constructor_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        ThreeFactorMemory(**kwargs)


def test_write_and_read_errors():
    mem = ThreeFactorMemory(3)
    with pytest.raises(ValueError, match="empty"):
        mem.read(torch.ones(1, 4))
    with pytest.raises(TypeError, match="keys"):
        mem.write([[1.0, 2.0]], torch.ones(1, 2))
    with pytest.raises(ValueError, match="values"):
        mem.write(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="store"):
        mem.write(torch.ones(3, 4), torch.ones(3, 4), store=torch.tensor([1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="store"):
        mem.write(torch.ones(3, 4), torch.ones(3, 4), store=torch.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        mem.write(torch.full((3, 4), float("nan")), torch.ones(3, 4))
    mem.write(torch.ones(3, 4), torch.ones(3, 2))
    with pytest.raises(ValueError, match="keys"):
        mem.write(torch.ones(1, 5), torch.ones(1, 2))
    with pytest.raises(ValueError, match="values"):
        mem.write(torch.ones(1, 4), torch.ones(1, 3))
    with pytest.raises(ValueError, match="queries"):
        mem.read(torch.ones(2, 5))
    with pytest.raises(ValueError, match="batch shape"):
        mem.write(torch.ones(2, 1, 4), torch.ones(2, 1, 2))


def test_rule_network_and_task_errors():
    with pytest.raises(ValueError, match="key"):
        PlasticityRule((1.0, 0.0, 0.0))
    with pytest.raises(TypeError, match="value"):
        PlasticityRule(value=("a", 0, 0, 0))
    with pytest.raises(TypeError, match="rule"):
        PlasticKeyValueNetwork(4, rule={"key": 1})
    with pytest.raises(ValueError, match="value_gate"):
        PlasticKeyValueNetwork(4, value_gate="dendrite")
    net = PlasticKeyValueNetwork(4)
    with pytest.raises(ValueError, match="state"):
        net.memorize(torch.ones(2, 3), torch.ones(2, 3), state=(torch.zeros(4, 2), torch.zeros(4, 3)))
    with pytest.raises(ValueError, match="queries"):
        net.recall(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="lengths"):
        meta_learn(lengths=(5, 2), steps=1)
    with pytest.raises(ValueError, match="init"):
        meta_learn(init="clever", steps=1)
    with pytest.raises(ValueError, match="erase"):
        recall_task(1, 2, 3, erase=1.0)
    with pytest.raises(ValueError, match="generator"):
        recall_task(1, 2, 3, seed=1, generator=torch.Generator())
