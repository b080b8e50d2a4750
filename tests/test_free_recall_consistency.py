"""Simulation and likelihood of CMR describe the same distribution over recall sequences.

For a short list every possible recall sequence (every ordered subset of the items,
ended by a stop) can be enumerated. The likelihood's event probabilities
(:func:`kvmem.paradigms.free_recall.recall_log_probs`) must then sum to one over all
sequences, and the frequencies of the sequences drawn by
:func:`kvmem.paradigms.free_recall.generate` must match those probabilities (a
chi-square test with a fixed seed). A mismatch between the two code paths (e.g. a stop
draw at a different output position, the choice rule or the context update differing)
would fail one of these tests.
"""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm

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
}


def _sequences():
    return [s for m in range(L + 1) for s in itertools.permutations(range(L), m)]


def _exact(params):
    seqs = _sequences()
    recalls = torch.tensor([list(s) + [0] * (L - len(s)) for s in seqs])
    n = torch.tensor([len(s) for s in seqs])
    state = frm.study(params, L, pool_size=12)
    events = frm.recall_log_probs(state, params, recalls, n)[0]
    # Event probabilities at the 1e-5 floor would make the sum leak; keep them clear of it.
    real = torch.arange(L + 1).unsqueeze(0) <= n.unsqueeze(1)
    assert float(events[real].min()) > np.log(1e-5) + 1.0
    return seqs, events.sum(-1).exp().numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_probabilities_sum_to_one(name):
    seqs, p = _exact(CASES[name])
    assert len(seqs) == 65
    assert abs(p.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("name", list(CASES))
def test_simulated_sequences_follow_the_likelihood(name):
    params = CASES[name]
    seqs, p = _exact(params)
    index = {s: i for i, s in enumerate(seqs)}
    rec = frm.generate(params, L, N_SIM, generator=7, pool_size=12)[0].numpy()
    counts = np.zeros(len(seqs))
    for row in rec:
        counts[index[tuple(int(x) for x in row if x >= 0)]] += 1
    assert counts.sum() == N_SIM
    expected = N_SIM * p
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
