"""Simulation and likelihood of CMR describe the same distribution over recall sequences.

For a short list every possible recall sequence (every ordered subset of the items,
ended by a stop) can be enumerated. The likelihood's event probabilities
(:func:`kvmem.paradigms.free_recall.recall_log_probs`) must then sum to one over all
sequences, and the frequencies of the sequences drawn by
:func:`kvmem.paradigms.free_recall.generate` must match those probabilities (a
chi-square test with a fixed seed). A mismatch between the two code paths (e.g. a stop
draw at a different output position, the choice rule or the context update differing)
would fail one of these tests.

The same holds with the extensions beyond standard CMR switched on (associative chaining
``Lff_f``/``Lff_b`` and the return to the start context ``B_restart``). For those, the
likelihood is also checked against a plain per-recall loop written here from the model
equations (cymr's layout, numpy float64, no tracking of activations instead of contexts).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm

from test_free_recall import _update, random_params, random_recalls, reference_study

L = 4
N_SIM = 40000

CASES = {
    # The PEERS pooled fit (Dfc = 1 - Lfc, Dcf = 1 - Lcf), with a higher stop rate so that
    # short sequences are frequent too.
    "peers_pooled": fitm.expand_params(fitm.PEERS_POOLED, fixed={"X1": 0.08}),
    # Every mechanism switched on: pre-experimental cross-talk in a 12-word pool,
    # distractors, start reinstatement, a primacy gradient.
    "all_mechanisms": frm.CMRParams(B_enc=0.6, B_start=0.3, B_rec=0.7, Afc=0.1, Acf=0.05, Dfc=0.8, Dcf=0.6,
                                    Lfc=0.3, Lcf=0.5, P1=2.0, P2=1.0, T=0.5, X1=0.08, X2=0.5,
                                    B_distract=0.2, B_retention=0.3),
    # Associative chaining on the PEERS pooled fit (forward stronger than backward).
    "chain": fitm.expand_params({**fitm.PEERS_POOLED, "X1": 0.08, "Lff_f": 0.4, "Lff_b": 0.2}),
    # Every mechanism, chaining and the return to the start context after each recall.
    "all_with_chain_restart": frm.CMRParams(B_enc=0.6, B_start=0.3, B_rec=0.7, Afc=0.1, Acf=0.05, Dfc=0.8,
                                            Dcf=0.6, Lfc=0.3, Lcf=0.5, P1=2.0, P2=1.0, T=0.5, X1=0.08, X2=0.5,
                                            B_distract=0.2, B_retention=0.3, Lff_f=0.5, Lff_b=0.25,
                                            B_restart=0.35),
}


def exact_sequence_probabilities(params, length=L, *, pool_size=12, similarity=None):
    """Every recall sequence of a ``length``-item list (each ordered subset, then a stop)
    and its probability under the likelihood; ``similarity`` ([L, L]) is shared by all."""
    seqs = [s for m in range(length + 1) for s in itertools.permutations(range(length), m)]
    recalls = torch.tensor([list(s) + [0] * (length - len(s)) for s in seqs])
    n = torch.tensor([len(s) for s in seqs])
    state = frm.study(params, length, pool_size=pool_size)
    sim = None if similarity is None else similarity.expand(len(seqs), length, length)
    events = frm.recall_log_probs(state, params, recalls, n, similarity=sim)[0]
    # Event probabilities at the 1e-5 floor would make the sum leak; keep them clear of it.
    real = torch.arange(length + 1).unsqueeze(0) <= n.unsqueeze(1)
    assert float(events[real].min()) > np.log(1e-5) + 1.0
    return seqs, events.sum(-1).exp().numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_probabilities_sum_to_one(name):
    seqs, p = exact_sequence_probabilities(CASES[name])
    assert len(seqs) == 65
    assert abs(p.sum() - 1.0) < 1e-12


def test_extensions_change_the_sequence_distribution():
    # The extension cases must actually differ from their parameters with the extensions
    # off (otherwise the tests above would not test them).
    for name, params in (("chain", CASES["chain"]), ("all_with_chain_restart", CASES["all_with_chain_restart"])):
        off = frm.CMRParams(**{**params.to_dict(), "Lff_f": 0.0, "Lff_b": 0.0, "B_restart": 0.0})
        _, p_on = exact_sequence_probabilities(params)
        _, p_off = exact_sequence_probabilities(off)
        assert np.abs(p_on - p_off).sum() > 0.05, name


@pytest.mark.parametrize("name", list(CASES))
def test_simulated_sequences_follow_the_likelihood(name):
    params = CASES[name]
    seqs, p = exact_sequence_probabilities(params)
    rec = frm.generate(params, L, N_SIM, generator=7, pool_size=12)[0].numpy()
    assert_sequences_follow(rec, seqs, p)


def assert_sequences_follow(rec, seqs, p):
    """Chi-square test of simulated recall sequences ``rec`` ([lists, L], -1 padded)
    against the exact probabilities ``p`` of the sequences ``seqs``."""
    index = {s: i for i, s in enumerate(seqs)}
    counts = np.zeros(len(seqs))
    for row in rec:
        counts[index[tuple(int(x) for x in row if x >= 0)]] += 1
    assert counts.sum() == len(rec)
    expected = len(rec) * p
    big = expected >= 5  # chi-square needs expected counts of at least ~5; pool the rest
    stat = ((counts[big] - expected[big]) ** 2 / expected[big]).sum()
    df = int(big.sum()) - 1
    if (~big).any():
        stat += (counts[~big].sum() - expected[~big].sum()) ** 2 / expected[~big].sum()
        df += 1
    assert df >= 40
    assert stats.chi2.sf(stat, df) > 1e-3, (stat, df)


def test_first_recall_of_a_16_item_list_matches_simulation():
    # Probability of first recall for PEERS-like lists: exact from the start context vs drawn.
    params = fitm.expand_params(fitm.PEERS_POOLED)
    n_items = 16
    state = frm.study(params, n_items)
    first = torch.arange(n_items).view(n_items, 1)
    p1 = frm.recall_log_probs(state, params, first, torch.ones(n_items, dtype=torch.long))[0, :, 0].exp().numpy()
    p_go = 1 - float(frm.stop_probability(n_items, params.X1, params.X2)[0, 0])
    assert abs(p1.sum() - p_go) < 1e-12
    n = 30000
    rec = frm.generate(params, n_items, n, generator=3)[0, :, 0].numpy()
    freq = np.bincount(rec[rec >= 0], minlength=n_items) / n
    z = (freq - p1) / np.sqrt(p1 * (1 - p1) / n)
    assert np.abs(z).max() < 4.5, z


# ---------------------------------------------------------------------------------------
# A plain loop for the extensions: after each recall the context integrates the recalled
# item's M_fc row (rate B_rec) and then the start unit (rate B_restart); each choice adds
# Lff_f to the activation of the item studied right after the last recalled one, and Lff_b
# to the one studied right before it.
# ---------------------------------------------------------------------------------------


def reference_extended_log_probs(p, recalls, L, item_index, pool, S=None):
    """With ``S`` (the list items' similarity matrix) also the semantic terms:
    ``Scf S c[list items]`` in the cue, and ``Sff S[last]`` after a recall."""
    c, _, fc, cf = reference_study(p, item_index, pool)
    start = pool  # cymr's layout: pool items, then the start unit
    out, done, last = [], set(), None
    for k, r in enumerate(recalls):
        p_stop = min(max(p.X1 * math.exp(p.X2 * k), 1e-6), 1 - 1e-6)
        a = cf @ c
        if S is not None:
            a = a + p.Scf * S @ c[item_index]
        if last is not None:
            if S is not None:
                a += p.Sff * S[last]
            if last + 1 < L:
                a[last + 1] += p.Lff_f
            if last - 1 >= 0:
                a[last - 1] += p.Lff_b
        strength = np.array([0.0 if j in done else math.exp(2 * max(a[j], 1e-6) / p.T) for j in range(L)])
        out.append(math.log(min(max(strength[r] / strength.sum() * (1 - p_stop), 1e-5), 1.0)))
        done.add(r)
        last = r
        c = _update(c, fc[r].copy(), p.B_rec)
        e = np.zeros_like(c)
        e[start] = 1.0
        c = _update(c, e, p.B_restart)
    n = len(recalls)
    p_stop = 1.0 if n == L else min(max(p.X1 * math.exp(p.X2 * n), 1e-6), 1 - 1e-6)
    out.append(math.log(min(max(p_stop, 1e-5), 1.0)))
    return out


@pytest.mark.parametrize("distract", [False, True])
def test_extended_likelihood_matches_plain_loop(distract):
    rng = np.random.default_rng(11)
    extra = dict(B_distract=0.3, B_retention=0.4) if distract else {}
    params = [random_params(rng, Lff_f=rng.uniform(0.05, 0.8), Lff_b=rng.uniform(0.0, 0.5),
                            B_restart=rng.uniform(0.05, 0.6), **extra) for _ in range(3)]
    params.append(random_params(rng, Lff_f=0.3, Lff_b=0.0, B_restart=0.0, **extra))  # chaining only
    L, pool = 7, 12
    item_index = list(rng.permutation(pool)[:L])
    # A whole list with forward and backward steps, then random lists (some empty).
    seqs = [[2, 3, 4, 1, 0, 6, 5]] + random_recalls(rng, L, 5)[0]
    r = np.full((len(seqs), L), -1)
    for j, seq in enumerate(seqs):
        r[j, : len(seq)] = seq
    n = np.array([len(seq) for seq in seqs])
    state = frm.study(params, L, pool_size=pool)
    fast = frm.recall_log_probs(state, params, r, n).numpy()
    tracked, _ = frm.recall_log_probs(state, params, r, n, return_contexts=True)
    for i, p in enumerate(params):
        for j, seq in enumerate(seqs):
            ref = reference_extended_log_probs(p, seq, L, item_index, pool)
            np.testing.assert_allclose(fast[i, j, : len(seq) + 1], ref, rtol=0, atol=1e-10)
            np.testing.assert_allclose(tracked[i, j, : len(seq) + 1].numpy(), ref, rtol=0, atol=1e-10)
    # The extensions matter for these sequences (so the comparison above tests them).
    plain = frm.CMRParams(**{**params[0].to_dict(), "Lff_f": 0.0, "Lff_b": 0.0, "B_restart": 0.0})
    assert abs(sum(reference_extended_log_probs(plain, seqs[0], L, item_index, pool))
               - fast[0, 0, : len(seqs[0]) + 1].sum()) > 0.1
