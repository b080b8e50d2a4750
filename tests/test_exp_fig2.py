"""fig2-key-value-optimization: the model against plain float64 loops, the notebooks' draws, the quick profile."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kvmem.experiments import fig2_key_value_optimization as fig2
from kvmem.experiments.fig2_key_value_optimization import (
    Config,
    class_targets,
    draw_task,
    kv_readout,
    retrieval_readout,
    train,
)

# ---------------------------------------------------------------- plain float64 references


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def loop_loss(queries, stored, logits, targets):
    """The notebooks' loss written out: out_j = sum_i softmax_i(k_i . q_j / sqrt(2)) sigmoid(v_i)."""
    n, dim = len(stored), len(stored[0])
    total = 0.0
    for j in range(n):
        w = [math.exp(sum(stored[i][d] * queries[j][d] for d in range(dim)) / math.sqrt(dim)) for i in range(n)]
        z = sum(w)
        for d in range(len(targets[0])):
            out = sum(w[i] / z * _sigmoid(logits[i][d]) for i in range(n))
            total += (out - targets[j][d]) ** 2
    return total / (n * len(targets[0]))


def loop_grad(keys, logits, targets):
    """Analytic gradient of the loss with the key side held fixed (only the query side differentiated)."""
    n, dim, dv = len(keys), len(keys[0]), len(targets[0])
    gk = [[0.0] * dim for _ in range(n)]
    gv = [[0.0] * dv for _ in range(n)]
    sig = [[_sigmoid(logits[i][d]) for d in range(dv)] for i in range(n)]
    for j in range(n):
        s = [sum(keys[i][d] * keys[j][d] for d in range(dim)) / math.sqrt(dim) for i in range(n)]
        m = max(s)
        w = [math.exp(x - m) for x in s]
        a = [x / sum(w) for x in w]
        out = [sum(a[i] * sig[i][d] for i in range(n)) for d in range(dv)]
        g_out = [2.0 * (out[d] - targets[j][d]) / (n * dv) for d in range(dv)]
        g_a = [sum(g_out[d] * sig[i][d] for d in range(dv)) for i in range(n)]
        mean_ga = sum(a[i] * g_a[i] for i in range(n))
        for i in range(n):
            g_s = a[i] * (g_a[i] - mean_ga)
            for d in range(dim):
                gk[j][d] += g_s * keys[i][d] / math.sqrt(dim)
            for d in range(dv):
                gv[i][d] += a[i] * g_out[d] * sig[i][d] * (1.0 - sig[i][d])
    return gk, gv


def central_difference(f, x, eps=1e-6):
    grad = [[0.0] * len(x[0]) for _ in x]
    for i in range(len(x)):
        for d in range(len(x[0])):
            up = [row[:] for row in x]
            down = [row[:] for row in x]
            up[i][d] += eps
            down[i][d] -= eps
            grad[i][d] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.fixture
def tiny():
    keys, logits, classes = draw_task(5, 3, torch.Generator().manual_seed(7))
    # Spread the keys so that the softmax is far from uniform and the test is sensitive.
    keys = (keys.double() - 0.5) * 4
    return keys, logits.double(), class_targets(classes, 3, torch.float64)


# ---------------------------------------------------------------- model against the loops


def test_forward_and_gradient_match_float64_loop(tiny):
    keys, logits, targets = tiny
    k, v, t = keys.tolist(), logits.tolist(), targets.tolist()

    kp, vp = keys.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = torch.nn.functional.mse_loss(kv_readout(kp, vp), targets)
    loss.backward()
    assert loss.item() == pytest.approx(loop_loss(k, k, v, t), rel=1e-12)

    # Key side detached: the gradient of a key is the derivative through its query role only.
    fd_keys = central_difference(lambda q: loop_loss(q, k, v, t), k)
    fd_values = central_difference(lambda w: loop_loss(k, k, w, t), v)
    np.testing.assert_allclose(kp.grad.numpy(), fd_keys, atol=1e-9)
    np.testing.assert_allclose(vp.grad.numpy(), fd_values, atol=1e-9)
    gk, gv = loop_grad(k, v, t)
    np.testing.assert_allclose(kp.grad.numpy(), gk, atol=1e-12)
    np.testing.assert_allclose(vp.grad.numpy(), gv, atol=1e-12)

    # Without the detach the key gets gradient through both roles, which differs.
    kf = keys.clone().requires_grad_()
    torch.nn.functional.mse_loss(kv_readout(kf, logits, detach_keys=False), targets).backward()
    fd_full = central_difference(lambda q: loop_loss(q, q, v, t), k)
    np.testing.assert_allclose(kf.grad.numpy(), fd_full, atol=1e-9)
    assert np.abs(kf.grad.numpy() - np.array(fd_keys)).max() > 1e-3


def test_mse_is_mean_over_items_and_dimensions(tiny):
    keys, logits, targets = tiny
    traj = train(keys, logits, targets, steps=1)
    out = kv_readout(keys, logits).tolist()
    t = targets.tolist()
    plain = sum((out[j][d] - t[j][d]) ** 2 for j in range(5) for d in range(2)) / 10
    assert traj.loss[0] == pytest.approx(plain, rel=1e-12)


def _plain_adam(keys, logits, targets, steps, lr, accumulate):
    """Adam (torch defaults: betas 0.9, 0.999, eps 1e-8) on the loop gradient, in float64."""
    params = [keys.tolist(), logits.tolist()]
    m = [[[0.0] * len(r) for r in p] for p in params]
    s = [[[0.0] * len(r) for r in p] for p in params]
    acc = [[[0.0] * len(r) for r in p] for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        grads = loop_grad(params[0], params[1], targets.tolist())
        for p, g, mp, sp, ap in zip(params, grads, m, s, acc):
            for i in range(len(p)):
                for d in range(len(p[i])):
                    gi = g[i][d] + (ap[i][d] if accumulate else 0.0)
                    ap[i][d] = gi
                    mp[i][d] = b1 * mp[i][d] + (1 - b1) * gi
                    sp[i][d] = b2 * sp[i][d] + (1 - b2) * gi * gi
                    mhat, shat = mp[i][d] / (1 - b1**step), sp[i][d] / (1 - b2**step)
                    p[i][d] -= lr * mhat / (math.sqrt(shat) + eps)
    return np.array(params[0]), 1.0 / (1.0 + np.exp(-np.array(params[1])))


def test_faithful_mode_is_adam_on_accumulated_gradients(tiny):
    keys, logits, targets = tiny
    results = {}
    for zero_grad in (True, False):
        traj = train(keys, logits, targets, steps=4, lr=0.05, zero_grad=zero_grad, record_every=4)
        ref_k, ref_v = _plain_adam(keys, logits, targets, 4, 0.05, accumulate=not zero_grad)
        np.testing.assert_allclose(traj.keys[-1], ref_k, atol=1e-10)
        np.testing.assert_allclose(traj.values[-1], ref_v, atol=1e-10)
        results[zero_grad] = traj.keys[-1]
    assert np.abs(results[True] - results[False]).max() > 1e-3  # the quirk matters


def test_retrieval_readout_matches_loop_and_excludes_self():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(12, 2)) * 2
    classes = rng.integers(0, 3, size=12)
    correct = 0
    for j in range(12):
        w = [math.exp(keys[i] @ keys[j] / math.sqrt(2)) if i != j else 0.0 for i in range(12)]
        mass = [sum(w[i] for i in range(12) if classes[i] == c) for c in range(3)]
        correct += int(np.argmax(mass) == classes[j])
    assert retrieval_readout(keys, classes, 3) == correct / 12
    # An item of class 0 placed inside class 1's cluster is read out as class 1.
    keys = np.array([[3.0, 3.0], [3.1, 2.9], [-3.0, -3.0], [-2.9, -3.1], [-3.0, -2.9]])
    assert retrieval_readout(keys, np.array([0, 0, 1, 1, 0]), 2) == pytest.approx(4 / 5)


# ---------------------------------------------------------------- the notebooks' draws and seeds


def test_draws_match_the_notebooks_global_rng_and_leave_it_alone():
    with torch.random.fork_rng():
        torch.manual_seed(42)
        nb_keys = torch.randn([30, 2]).uniform_(0, 1)
        nb_values = torch.rand([30, 2])
        nb_classes = torch.randint(low=0, high=3, size=[30])
    before = torch.get_rng_state()
    config = Config(classes=(3,), n_pairs=(30,), steps=(2,), modes=("faithful",), record_every=1)
    traj = fig2.run(config, seed=0).tables["trajectories"]
    assert torch.equal(torch.get_rng_state(), before)
    start = traj[traj["step"] == 0].sort_values("item")
    np.testing.assert_array_equal(start[["key_x", "key_y"]].to_numpy(), nb_keys.numpy())
    np.testing.assert_allclose(start[["value_x", "value_y"]].to_numpy(), torch.sigmoid(nb_values).numpy())
    np.testing.assert_array_equal(start["class"].to_numpy(), nb_classes.numpy())
    other = fig2.run(config, seed=1).tables["trajectories"]
    assert not np.array_equal(other[other["step"] == 0]["key_x"].to_numpy(), start["key_x"].to_numpy())


# ---------------------------------------------------------------- the experiment


def test_quick_profile_claims_tables_and_figures():
    exp = fig2.EXPERIMENT
    config = exp.config("quick")
    result = exp.run(config, seed=0)
    claims = exp.claims(result)
    names = [c.name for c in claims]
    for tag in ("2c_faithful", "2c_clean", "3c_faithful", "3c_clean"):
        assert f"values_reach_class_features_{tag}" in names and f"keys_values_differ_{tag}" in names
    assert "keys_opposite_quadrants_2c_clean" in names and "keys_distinct_quadrants_3c_faithful" in names
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]

    traj = result.tables["trajectories"]
    assert list(traj.columns) == ["mode", "classes", "step", "item", "class", "key_x", "key_y", "value_x", "value_y"]
    for c, n, steps in zip(config.classes, config.n_pairs, config.steps):
        part = traj[traj["classes"] == c]
        snapshots = steps // config.record_every + 1 + (steps % config.record_every > 0)
        assert len(part) == len(config.modes) * snapshots * n
        # Both modes start from the same draws and then part ways.
        first = [part[(part["mode"] == m) & (part["step"] == 0)]["key_x"].to_numpy() for m in config.modes]
        last = [part[(part["mode"] == m) & (part["step"] == steps)]["key_x"].to_numpy() for m in config.modes]
        assert np.array_equal(first[0], first[1]) and not np.allclose(last[0], last[1])
    assert traj[["value_x", "value_y"]].gt(0).all().all() and traj[["value_x", "value_y"]].lt(1).all().all()
    loss = result.tables["loss"]
    assert len(loss) == len(config.modes) * sum(config.steps)
    for _, part in loss.groupby(["classes", "mode"]):
        assert part["loss"].iloc[-1] < 0.5 * part["loss"].iloc[0]

    figures = exp.plot(result)
    assert set(figures) == {f"fig2_{c}classes_{m}" for c in (2, 3) for m in fig2.MODES} | {"loss"}
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def test_same_seed_same_result_and_claims_can_fail():
    config = Config(classes=(2,), n_pairs=(20,), steps=(5,), lr=3e-3, record_every=5)
    a, b = fig2.run(config, seed=3), fig2.run(config, seed=3)
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    # Five steps are far too few: values are still near 0.5-0.7 and the claims must say so.
    failed = {c.name for c in fig2.claims(a) if not c.passed}
    assert {"values_reach_class_features_2c_faithful", "values_reach_class_features_2c_clean"} <= failed


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"classes": (4,), "n_pairs": (10,), "steps": (5,)}, "classes"),
        ({"n_pairs": (10,)}, "n_pairs"),
        ({"steps": (5, 0)}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"modes": ("faithful", "sloppy")}, "modes"),
        ({"modes": ()}, "modes"),
        ({"record_every": 0}, "record_every"),
    ],
)
def test_bad_config_is_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        fig2.run(dataclasses.replace(fig2.QUICK, **changes))


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="config"):
        fig2.run({"classes": (2,)})
    with pytest.raises(ValueError, match="n_classes"):
        draw_task(10, 5, torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        draw_task(10, 2, 42)
    with pytest.raises(ValueError, match="classes"):
        class_targets(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="keys, value_logits"):
        kv_readout(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="steps"):
        train(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), steps=0)
    with pytest.raises(ValueError, match="targets"):
        train(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3, 2), steps=1)
