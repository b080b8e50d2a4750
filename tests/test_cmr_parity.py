"""Parity with cymr (Morton & Polyn's CMR): its published test numbers, and cymr itself.

The first tests need no cymr: they hold our CMR to the values in cymr's own test suite
(tests/test_cmr.py: ``test_cmr``, ``test_dist_cmr_record``; cymr 0.14.3), with the same
settings and the same sample data (cymr's ``sample1.csv``, two subjects of one 3-item
list, copied below). The rest call the installed cymr as a second oracle on random
parameters, word-pool sizes and distractor settings, and on PEERS lists.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm
from kvmem.paradigms.free_recall import CMRParams

pytestmark = pytest.mark.usefixtures("one_thread")

# cymr/src/cymr/data/sample1.csv (item_index: each word's row in cymr's pattern matrix).
SAMPLE1 = pd.DataFrame({
    "subject": [1] * 6 + [2] * 6,
    "list": [1] * 12,
    "trial_type": ["study"] * 3 + ["recall"] * 3 + ["study"] * 3 + ["recall"] * 3,
    "position": [1, 2, 3, 1, 2, 3] * 2,
    "item": ["absence", "hollow", "pupil", "hollow", "pupil", "empty",
             "fountain", "piano", "pillow", "pillow", "fountain", "pillow"],
    "item_index": [0, 1, 2, 1, 2, np.nan, 3, 4, 5, 5, 3, 5],
})

# The settings of cymr's test_cmr / test_dist_cmr (localist patterns, Afc = Acf = 0).
CYMR_TEST_PARAMS = dict(B_enc=0.5, B_rec=0.8, B_start=0.0, Afc=0.0, Dfc=1.0, Acf=0.0, Dcf=1.0, Lfc=1.0, Lcf=1.0,
                        P1=0.0, P2=1.0, T=10.0, X1=0.05, X2=1.0)
CYMR_LOGL = -5.936799964636842  # cymr tests/test_cmr.py::test_cmr

# cymr tests/test_cmr.py::test_dist_cmr_record, in cymr's layout [6 pool items, start]:
# states 0-2 after studying list 1 (items 0, 1, 2), 3 the cue of the first recall,
# 4 the context after recalling "hollow"; 5 after the first item of list 2 (item 3).
CYMR_STATES = [
    [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8660254],
    [0.4330127, 0.5, 0.0, 0.0, 0.0, 0.0, 0.75],
    [0.375, 0.4330127, 0.5, 0.0, 0.0, 0.0, 0.64951905],
    [0.375, 0.4330127, 0.5, 0.0, 0.0, 0.0, 0.64951905],
    [0.29319805, 0.80043616, 0.12426407, 0.0, 0.0, 0.0, 0.50783392],
    [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.8660254],
]


def sample_data():
    # cymr fits each subject's lists; its test sets list = subject, which changes nothing here.
    return fitm.prepare_data(SAMPLE1, pool_size=6)


def test_log_likelihood_equals_cymr_published_value():
    p = CMRParams(**CYMR_TEST_PARAMS)
    data = sample_data()
    assert data.n_events == 6  # cymr: stats['n'].sum() == 6 (the repeat of "pillow" is dropped)
    logl = float(fitm.log_likelihood(p, data)[0])
    assert logl == pytest.approx(CYMR_LOGL, rel=1e-12, abs=0)
    # The pool size does not matter with Afc = Acf = 0 (cymr's unit per unstudied word stays 0).
    assert float(fitm.log_likelihood(p, fitm.prepare_data(SAMPLE1))[0]) == pytest.approx(CYMR_LOGL, rel=1e-12)


def test_context_states_equal_cymr_hand_checked_values():
    p = CMRParams(**CYMR_TEST_PARAMS)
    s = frm.study(p, 3, pool_size=6)
    got = [frm.to_pool_layout(s.states[0, i], [0, 1, 2], 6) for i in range(3)]
    _, ctx = frm.recall_log_probs(s, p, [[1, 2]], [2], return_contexts=True)
    got += [frm.to_pool_layout(ctx[0, 0, k], [0, 1, 2], 6) for k in (0, 1)]
    got.append(frm.to_pool_layout(s.states[0, 0], [3, 4, 5], 6))
    np.testing.assert_allclose(torch.stack(got).numpy(), np.array(CYMR_STATES), rtol=1e-7, atol=1e-8)


# ----------------------------- cymr as a second oracle -----------------------------------


def cymr_subject_likelihoods(table, item_index, pool_size):
    """A function params -> cymr's log-likelihood per subject (data prepared once)."""
    cmr = pytest.importorskip("cymr.cmr")
    data = table.copy()
    data["item_index"] = item_index
    model = cmr.CMR()
    prepared = {s: model.prepare_sim(part) for s, part in data.groupby("subject")}

    def logl(params, distraction=False):
        param_def, patterns = cmr.config_loc_cmr(pool_size)
        if distraction:
            param_def.set_options(distraction=True)
        out = {}
        for s, (study, recall) in prepared.items():
            out[s] = model.likelihood_subject(study, recall, params.to_dict(), param_def=param_def, patterns=patterns)
        return out

    return logl


def random_params(rng, distract=False):
    return CMRParams(B_enc=rng.uniform(0.2, 0.95), B_start=rng.uniform(0, 0.6), B_rec=rng.uniform(0.2, 0.95),
                     Afc=rng.uniform(0, 0.3), Dfc=rng.uniform(0.4, 1), Acf=rng.uniform(0, 0.3), Dcf=rng.uniform(0.3, 1),
                     Lfc=rng.uniform(0.1, 0.9), Lcf=rng.uniform(0.1, 0.9), P1=rng.uniform(0, 3), P2=rng.uniform(0.2, 2),
                     T=rng.uniform(0.1, 1.0), X1=rng.uniform(0.001, 0.1), X2=rng.uniform(0.05, 0.5),
                     B_distract=rng.uniform(0.1, 0.5) if distract else 0.0,
                     B_retention=rng.uniform(0.1, 0.5) if distract else 0.0)


def test_matches_installed_cymr_on_random_settings():
    pytest.importorskip("cymr")
    rng = np.random.default_rng(7)
    table = frm.simulate(CMRParams(T=0.3, X1=0.02, X2=0.4), list_length=6, n_lists=5, subjects=[1, 2], seed=3)
    # Distinct words per list, placed at random rows of a 20-word pool (cymr's context has
    # a unit per pool word; ours folds the unstudied ones into one unit).
    pool = 20
    key = table["subject"].astype(str) + "-" + table["list"].astype(str) + "-" + table["item"]
    table = table.assign(item=key)
    study = table[table["trial_type"] == "study"]
    rows = {}
    for _, lst in study.groupby(["subject", "list"]):
        rows.update(zip(lst["item"], rng.choice(pool, len(lst), replace=False).tolist()))
    cymr_logl = cymr_subject_likelihoods(table, table["item"].map(rows), pool)
    data = fitm.prepare_data(table, pool_size=pool)
    subj = data.groups[0].subjects
    for distract in (False, True, False, True):
        p = random_params(rng, distract)
        want = cymr_logl(p, distraction=distract)
        ours = fitm.log_likelihood(p, data, per_list=True)[0].numpy()
        for s in (1, 2):
            logl, n = want[s]
            assert ours[subj == s].sum() == pytest.approx(logl, rel=1e-10)
            assert n == (data.groups[0].n_recall[subj == s] + 1).sum()


def test_matches_installed_cymr_on_peers_lists():
    pytest.importorskip("cymr")
    table = fitm.load_sample("peers_notask")
    table = table[table["subject"].isin(sorted(table["subject"].unique())[:3])]
    table = table[["subject", "list", "position", "trial_type", "item"]]
    # Words indexed by serial position: cymr's pool is the 16 list positions (Afc = Acf = 0).
    item_index = np.where(table["trial_type"] == "study", table["position"] - 1, -1)
    p = fitm.expand_params(dict(B_enc=0.6, B_start=0.3, B_rec=0.8, Lfc=0.2, Lcf=0.3, P1=2.0, P2=1.0, T=0.2,
                                X1=0.01, X2=0.3))
    want = cymr_subject_likelihoods(table, item_index, 16)(p)
    data = fitm.prepare_data(table)
    ours = float(fitm.log_likelihood(p, data)[0])
    assert ours == pytest.approx(sum(v[0] for v in want.values()), rel=1e-12)
    assert data.n_events == sum(v[1] for v in want.values())


def test_benchmark_case_checks_agreement_before_timing():
    pytest.importorskip("cymr")
    from kvmem.bench.cases import free_recall_likelihood as case

    rows = case.run(quick=True, device="cpu")
    assert [r.variant for r in rows] == ["one parameter set", "32 parameter sets in one call, per set"]
    for r in rows:
        assert r.check_passed and r.ratio > 0 and r.target is None
        assert r.extra["ours_logl"] == pytest.approx(r.extra["cymr_logl"], rel=1e-12)
