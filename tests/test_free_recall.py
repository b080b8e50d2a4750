"""CMR free recall (kvmem.paradigms.free_recall) against a plain float64 loop in cymr's layout."""

import itertools
import math

import numpy as np
import pytest
import torch

from kvmem.paradigms import free_recall as frm
from kvmem.paradigms.free_recall import CMRParams

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------
# The reference: one list, one recall at a time, numpy float64, with cymr's full layout
# (one context unit per pool item, then the start unit, then distractor units). Written
# from the model equations, independently of the batched code (no "rest" unit trick, no
# tracking of activations instead of contexts, no sorting of lists).
# ---------------------------------------------------------------------------------------


def _update(c, c_in, b):
    c_in = c_in / np.linalg.norm(c_in)
    dot = float(c @ c_in)
    rho = math.sqrt(1 + b * b * (dot * dot - 1)) - b * dot
    return rho * c + b * c_in


def reference_study(p, item_index, pool):
    """Weights and contexts after study of a list whose items are pool items ``item_index``."""
    L = len(item_index)
    distract = p.B_distract > 0 or p.B_retention > 0
    n_c = pool + 1 + (L + 1 if distract else 0)
    start = pool
    fc = np.zeros((L, n_c))
    cf = np.zeros((L, n_c))
    for i, j in enumerate(item_index):
        fc[i, :pool] = p.Afc
        fc[i, j] += p.Dfc
        cf[i, :pool] = p.Acf
        cf[i, j] += p.Dcf
    c = np.zeros(n_c)
    c[start] = 1.0
    states = []
    for i in range(L):
        if distract:
            e = np.zeros(n_c)
            e[pool + 1 + i] = 1.0
            c = _update(c, e, p.B_distract)
        c = _update(c, fc[i].copy(), p.B_enc)
        lcf = p.Lcf + p.P1 * math.exp(-p.P2 * i)
        fc[i] += max(p.Lfc, 0.0) * c
        cf[i] += max(lcf, 0.0) * c
        states.append(c.copy())
    if distract:
        e = np.zeros(n_c)
        e[pool + 1 + L] = 1.0
        c = _update(c, e, p.B_retention)
    e = np.zeros(n_c)
    e[start] = 1.0
    c = _update(c, e, p.B_start)
    return c, np.array(states), fc, cf


def reference_log_probs(p, recalls, L, item_index=None, pool=None):
    """Per-event log-probabilities of one recall sequence (stop event last)."""
    item_index = list(range(L)) if item_index is None else list(item_index)
    pool = L if pool is None else pool
    c, _, fc, cf = reference_study(p, item_index, pool)
    out = []
    done = set()
    for k, r in enumerate(recalls):
        p_stop = min(max(p.X1 * math.exp(p.X2 * k), 1e-6), 1 - 1e-6)
        a = cf @ c
        strength = np.array([0.0 if j in done else math.exp(2 * max(a[j], 1e-6) / p.T) for j in range(L)])
        prob = strength[r] / strength.sum() * (1 - p_stop)
        out.append(math.log(min(max(prob, 1e-5), 1.0)))
        done.add(r)
        c = _update(c, fc[r].copy(), p.B_rec)
    n = len(recalls)
    p_stop = 1.0 if n == L else min(max(p.X1 * math.exp(p.X2 * n), 1e-6), 1 - 1e-6)
    out.append(math.log(min(max(p_stop, 1e-5), 1.0)))
    return out


def random_params(rng, **overrides):
    values = dict(B_enc=rng.uniform(0.2, 0.9), B_start=rng.uniform(0, 0.6), B_rec=rng.uniform(0.2, 0.95),
                  Afc=rng.uniform(0, 0.2), Dfc=rng.uniform(0.5, 1.0), Acf=rng.uniform(0, 0.2), Dcf=rng.uniform(0.3, 1.0),
                  Lfc=rng.uniform(0.1, 0.9), Lcf=rng.uniform(0.1, 0.9), P1=rng.uniform(0, 3), P2=rng.uniform(0.2, 2),
                  T=rng.uniform(0.05, 0.8), X1=rng.uniform(0.001, 0.1), X2=rng.uniform(0.05, 0.6))
    values.update(overrides)
    return CMRParams(**values)


def random_recalls(rng, L, n_lists):
    seqs = []
    for _ in range(n_lists):
        n = int(rng.integers(0, L + 1))
        seqs.append(list(rng.permutation(L)[:n]))
    k = max(max(len(s) for s in seqs), 1)
    r = np.full((n_lists, k), -1)
    for i, s in enumerate(seqs):
        r[i, : len(s)] = s
    return seqs, r, np.array([len(s) for s in seqs])


@pytest.mark.parametrize("distract", [False, True])
def test_study_matches_plain_loop_in_cymr_layout(distract):
    rng = np.random.default_rng(1)
    extra = dict(B_distract=0.3, B_retention=0.5) if distract else {}
    params = [random_params(rng, **extra) for _ in range(3)]
    L, pool = 6, 11
    item_index = [7, 0, 3, 10, 5, 2]
    state = frm.study(params, L, pool_size=pool)
    for i, p in enumerate(params):
        c, states, _, _ = reference_study(p, item_index, pool)
        np.testing.assert_allclose(frm.to_pool_layout(state.context[i], item_index, pool).numpy(), c, rtol=0, atol=1e-13)
        np.testing.assert_allclose(frm.to_pool_layout(state.states[i], item_index, pool).numpy(), states, atol=1e-13)
        assert state.context[i].norm().item() == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("distract", [False, True])
def test_recall_log_probs_match_plain_loop(distract):
    rng = np.random.default_rng(2)
    extra = dict(B_distract=0.4, B_retention=0.2) if distract else {}
    params = [random_params(rng, **extra) for _ in range(4)]
    L, pool = 7, 12
    item_index = list(rng.permutation(pool)[:L])
    seqs, r, n = random_recalls(rng, L, 25)
    state = frm.study(params, L, pool_size=pool)
    fast = frm.recall_log_probs(state, params, r, n)
    slow, contexts = frm.recall_log_probs(state, params, r, n, return_contexts=True)
    assert fast.shape == (4, 25, r.shape[1] + 1)
    # The activation-tracking path and the context path are two formulations of one model.
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-12, atol=1e-12)
    for i, p in enumerate(params):
        for j, seq in enumerate(seqs):
            want = reference_log_probs(p, seq, L, item_index, pool)
            got = fast[i, j, : len(seq) + 1].numpy()
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
            assert (fast[i, j, len(seq) + 1:] == 0).all()
    # Contexts cueing the first recall are the context after study, for every list.
    assert torch.equal(contexts[:, :, 0], state.context.unsqueeze(1).expand(4, 25, -1))


def test_every_sequence_probability_sums_to_one():
    p = CMRParams(B_enc=0.6, B_rec=0.7, Lfc=0.4, Dfc=0.6, Lcf=0.5, Dcf=0.5, P1=1.0, P2=0.8, T=0.3, X1=0.05, X2=0.4)
    L = 4
    seqs = [list(q) for n in range(L + 1) for q in itertools.permutations(range(L), n)]
    r = np.full((len(seqs), L), -1)
    for i, s in enumerate(seqs):
        r[i, : len(s)] = s
    lp = frm.recall_log_probs(frm.study(p, L), p, r, [len(s) for s in seqs])
    assert float(lp.sum(-1).exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_generate_follows_the_likelihood():
    p = CMRParams(B_enc=0.5, B_rec=0.8, Lfc=0.3, Dfc=0.7, Lcf=0.9, Dcf=0.1, P1=2.0, P2=0.6, T=0.5, X1=0.08, X2=0.4)
    L, n = 3, 40000
    rec = frm.generate(p, L, n, generator=5)[0].numpy()
    counts = {}
    for row in rec:
        key = tuple(int(x) for x in row if x >= 0)
        counts[key] = counts.get(key, 0) + 1
    state = frm.study(p, L)
    for size in range(L + 1):
        for q in itertools.permutations(range(L), size):
            r = np.array([list(q) + [0] * (L - size)])
            prob = float(frm.recall_log_probs(state, p, r, [size]).sum().exp())
            freq = counts.get(q, 0) / n
            # 5 standard errors of a binomial proportion (plus a floor for tiny p).
            assert abs(freq - prob) <= 5 * math.sqrt(prob * (1 - prob) / n) + 2e-4, (q, freq, prob)


def test_generate_is_seeded_and_well_formed():
    p = CMRParams(T=0.2, X1=0.02, X2=0.3)
    a = frm.generate([p, p], 10, 50, generator=3)
    b = frm.generate([p, p], 10, 50, generator=3)
    c = frm.generate([p, p], 10, 50, generator=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for row in a.reshape(-1, 10).tolist():
        got = [x for x in row if x >= 0]
        assert row[: len(got)] == got and len(set(got)) == len(got)  # -1 only at the end, no repeats
        assert all(0 <= x < 10 for x in got)


def test_stop_probability_matches_cymr_rule():
    p = frm.stop_probability(4, [0.05, 0.9], [1.0, 2.0])
    want0 = [0.05, 0.05 * math.e, 0.05 * math.e**2, 0.05 * math.e**3, 1.0]
    np.testing.assert_allclose(p[0].numpy(), [min(x, 1 - 1e-6) if i < 4 else 1.0 for i, x in enumerate(want0)])
    assert p[1, 1].item() == 1 - 1e-6 and p[1, -1].item() == 1.0
    assert frm.stop_probability(2, 0.0, 1.0)[0, 0].item() == 1e-6


def test_simulate_writes_psifr_table_and_is_seeded():
    from psifr import fr

    p = {"a": CMRParams(T=0.2, X1=0.01, X2=0.3), "b": CMRParams(T=0.5, X1=0.05, X2=0.3)}
    t = frm.simulate(p, list_length=6, n_lists=4, n_rep=2, seed=1)
    assert list(t.columns) == ["subject", "list", "position", "trial_type", "item"]
    assert set(t["subject"]) == {"a", "b"} and sorted(t["list"].unique()) == list(range(1, 9))
    study = t[t["trial_type"] == "study"]
    assert len(study) == 2 * 8 * 6
    merged = fr.merge_free_recall(t)  # psifr accepts it; no intrusions, no repeats
    assert not merged["intrusion"].any() and (merged["repeat"] == 0).all()
    assert t.equals(frm.simulate(p, list_length=6, n_lists=4, n_rep=2, seed=1))
    assert not t.equals(frm.simulate(p, list_length=6, n_lists=4, n_rep=2, seed=2))
    # Re-using study lists: items and list numbers come from the table.
    again = frm.simulate(p, study_table=t, seed=0)
    s2 = again[again["trial_type"] == "study"].reset_index(drop=True)
    assert s2[["subject", "list", "item"]].equals(study[["subject", "list", "item"]].reset_index(drop=True))


def test_to_pool_layout_spreads_the_rest_unit():
    p = CMRParams(Afc=0.3, Dfc=0.7, B_enc=0.6)
    s = frm.study(p, 2, pool_size=5)
    full = frm.to_pool_layout(s.context, [4, 1], 5)
    c, _, _, _ = reference_study(p, [4, 1], 5)
    np.testing.assert_allclose(full[0].numpy(), c, atol=1e-14)
    assert full[0, [0, 2, 3]].unique().numel() == 1  # the unstudied items share one value


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(B_enc=1.5), ValueError, "B_enc"),
    (dict(T=-1.0), ValueError, "T"),
    (dict(X1=-0.1), ValueError, "X1"),
    (dict(Lfc=float("nan")), ValueError, "Lfc"),
    (dict(Dcf="1"), TypeError, "Dcf"),
])
def test_params_reject_bad_values(kwargs, err, match):
    with pytest.raises(err, match=match):
        CMRParams(**kwargs)


def test_bad_inputs_name_the_argument():
    p = CMRParams()
    with pytest.raises(ValueError, match="unknown parameter"):
        frm.param_batch({"Bogus": 1.0})
    with pytest.raises(ValueError, match="different lengths"):
        frm.param_batch({"B_enc": [0.1, 0.2], "T": [1.0, 2.0, 3.0]})
    with pytest.raises(TypeError, match="params"):
        frm.param_batch(3.0)
    with pytest.raises(ValueError, match="pool_size"):
        frm.study(p, 5, pool_size=3)
    with pytest.raises(ValueError, match="list_length"):
        frm.study(p, 0)
    s = frm.study(p, 4)
    with pytest.raises(ValueError, match="recalled twice"):
        frm.recall_log_probs(s, p, [[1, 1]], [2])
    with pytest.raises(ValueError, match="serial positions"):
        frm.recall_log_probs(s, p, [[4]], [1])
    with pytest.raises(ValueError, match="n_recall"):
        frm.recall_log_probs(s, p, [[1, 2]], [3])
    with pytest.raises(ValueError, match="recalls"):
        frm.recall_log_probs(s, p, [1.0, 2.0], [2])
    with pytest.raises(ValueError, match="parameter sets"):
        frm.recall_log_probs(s, [p, p], [[1]], [1])
    with pytest.raises(ValueError, match="item_index"):
        frm.to_pool_layout(s.context, [0, 0, 1, 2], 6)
    with pytest.raises(ValueError, match="study_table"):
        frm.simulate(p, study_table=[1, 2])
    with pytest.raises(TypeError, match="params"):
        frm.simulate({"B_enc": 0.3})
    with pytest.raises(ValueError, match="n_rep"):
        frm.simulate(p, n_rep=0)
