"""Likelihood and fitting (kvmem.paradigms.free_recall_fit): data preparation, the batched
likelihood against a per-recall loop, parameter recovery on synthetic data, seeds, errors."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm
from kvmem.paradigms.free_recall import CMRParams

from test_free_recall import reference_log_probs

pytestmark = pytest.mark.usefixtures("one_thread")


def rows(subject, lst, study, recall):
    out = [dict(subject=subject, list=lst, trial_type="study", position=i + 1, item=w) for i, w in enumerate(study)]
    out += [dict(subject=subject, list=lst, trial_type="recall", position=i + 1, item=w) for i, w in enumerate(recall)]
    return out


@pytest.fixture(scope="module")
def small_table():
    return pd.DataFrame(
        rows(1, 1, "abcd", ["c", "d", "x", "c", "a"])  # intrusion x, repeat of c
        + rows(1, 2, "efgh", [])  # recalled nothing
        + rows(2, 1, "ijklmn", ["n", "m", "i"])  # another list length
        + rows(2, 2, "opqr", ["o", "p", "q", "r"])  # everything, in order
    )


def test_prepare_data_drops_intrusions_and_repeats(small_table):
    data = fitm.prepare_data(small_table)
    assert [g.list_length for g in data.groups] == [4, 6]
    g4, g6 = data.groups
    assert g4.subjects.tolist() == [1, 1, 2] and g4.lists.tolist() == [1, 2, 2]
    assert g4.n_recall.tolist() == [3, 0, 4]
    assert g4.recalls[0, :3].tolist() == [2, 3, 0] and g4.recalls[2].tolist() == [0, 1, 2, 3]
    assert g6.recalls[0, :3].tolist() == [5, 4, 0]
    assert data.n_lists == 4 and data.n_events == 3 + 0 + 4 + 3 + 4
    assert data.subjects == [1, 2]
    sub = data.subset([2])
    assert sub.n_lists == 2 and sub.subjects == [2]


def test_likelihood_equals_per_recall_loop(small_table):
    rng = np.random.default_rng(3)
    params = [CMRParams(B_enc=rng.uniform(0.2, 0.9), B_rec=rng.uniform(0.2, 0.9), B_start=rng.uniform(0, 0.5),
                        Lfc=0.4, Dfc=0.6, Lcf=rng.uniform(0.1, 0.9), Dcf=0.5, P1=rng.uniform(0, 2), P2=1.0,
                        T=rng.uniform(0.1, 1.0), X1=0.05, X2=0.3) for _ in range(3)]
    data = fitm.prepare_data(small_table)
    per_list = fitm.log_likelihood(params, data, per_list=True)
    total = fitm.log_likelihood(params, data)
    assert per_list.shape == (3, 4) and per_list.dtype == torch.float64
    seqs = [([2, 3, 0], 4), ([], 4), ([0, 1, 2, 3], 4), ([5, 4, 0], 6)]  # in group order
    for i, p in enumerate(params):
        for j, (seq, L) in enumerate(seqs):
            assert per_list[i, j].item() == pytest.approx(sum(reference_log_probs(p, seq, L)), rel=1e-12)
        assert total[i].item() == pytest.approx(per_list[i].sum().item(), rel=1e-14)
        # A batch is the same as one parameter set at a time.
        assert fitm.log_likelihood(p, data)[0].item() == pytest.approx(total[i].item(), rel=1e-13)
    # Chunking over lists changes nothing.
    torch.testing.assert_close(fitm.log_likelihood(params, data, chunk=3), total, rtol=1e-13, atol=0)


def test_baseline_is_uniform_choice_with_fitted_stop(small_table):
    data = fitm.prepare_data(small_table)
    base = fitm.baseline_log_likelihood(data)
    # Subject 1, two 4-item lists with 3 and 0 recalls: stop at k=0 (1 of 2), k=1..2 go on,
    # k=3 stop (1 of 1); choices 1/4 * 1/3 * 1/2.
    want1 = 2 * math.log(0.5) - math.log(4 * 3 * 2)
    assert base[1] == pytest.approx(want1)
    # Subject 2: every stop frequency is 0 or 1; choices 1/6 1/5 1/4 and 1/4 1/3 1/2 1.
    assert base[2] == pytest.approx(-math.log(6 * 5 * 4) - math.log(4 * 3 * 2))


TRUTH = CMRParams(B_enc=0.7, B_start=0.2, B_rec=0.6, Lfc=0.3, Dfc=0.7, Lcf=0.4, Dcf=0.6, P1=1.5, P2=0.8, T=0.2,
                  X1=0.02, X2=0.35)


def test_fit_recovers_known_parameters():
    # 300 simulated 10-item lists; three free parameters, the rest fixed at the truth.
    table = frm.simulate(TRUTH, list_length=10, n_lists=300, seed=11)
    data = fitm.prepare_data(table)
    fixed = {k: v for k, v in TRUTH.to_dict().items() if k not in ("B_enc", "B_rec", "T")}
    res = fitm.fit(data, free={"B_enc": (0.05, 1.0), "B_rec": (0.05, 1.0), "T": (0.02, 1.0)}, fixed=fixed,
                   complementary=False, popsize=8, maxiter=40, tol=0.001, seed=0)
    truth_logl = float(fitm.log_likelihood(TRUTH, data)[0])
    # Maximum likelihood: at least as good as the truth, up to the search's precision.
    assert res.logl >= truth_logl - 0.5
    assert abs(res.params.B_enc - TRUTH.B_enc) < 0.08
    assert abs(res.params.B_rec - TRUTH.B_rec) < 0.08
    assert abs(res.params.T - TRUTH.T) < 0.25 * TRUTH.T
    assert res.params.Lfc == TRUTH.Lfc and res.k == 3 and res.n == data.n_events
    assert res.nfev >= 24 * res.nit  # the whole population every generation


def test_fit_is_seeded_and_fit_subjects_matches_direct_fits():
    table = frm.simulate({"s1": TRUTH, "s2": TRUTH}, list_length=8, n_lists=12, seed=2)
    data = fitm.prepare_data(table)
    fixed = {k: v for k, v in TRUTH.to_dict().items() if k not in ("B_enc", "T")}
    kw = dict(free={"B_enc": (0.05, 1.0), "T": (0.02, 1.0)}, fixed=fixed, complementary=False, popsize=5, maxiter=6)
    a = fitm.fit(data.subset(["s1"]), seed=4, **kw)
    b = fitm.fit(data.subset(["s1"]), seed=4, **kw)
    c = fitm.fit(data.subset(["s1"]), seed=5, **kw)
    assert a.params == b.params and a.logl == b.logl and a.params != c.params and math.isfinite(a.logl)
    seen = []
    both = fitm.fit_subjects(data, ["s2", "s1"], seed=9, on_result=lambda s, r: seen.append(s), **kw)
    assert list(both) == ["s2", "s1"] and sorted(seen) == ["s1", "s2"]
    # Each subject's search is seeded from (seed, its place in the list), not by the order run.
    sub_seed = int(np.random.SeedSequence([9, 1]).generate_state(1)[0])
    direct = fitm.fit(data.subset(["s1"]), seed=sub_seed, **kw)
    assert both["s1"].params == direct.params and both["s1"].logl == direct.logl
    # The fitted log-likelihood is the likelihood of the reported parameters.
    assert both["s2"].logl == pytest.approx(float(fitm.log_likelihood(both["s2"].params, data.subset(["s2"]))[0]))


def test_default_fit_ties_d_to_l_and_frees_ten_parameters():
    p = fitm.expand_params({"Lfc": 0.2, "Lcf": 0.7, "T": 0.3})
    assert p.Dfc == pytest.approx(0.8) and p.Dcf == pytest.approx(0.3) and p.Afc == 0.0 and p.T == 0.3
    assert fitm.expand_params({"Lfc": 0.2}, fixed={"Dfc": 1.0}).Dfc == 1.0
    assert len(fitm.DEFAULT_BOUNDS) == 10
    table = frm.simulate(TRUTH, list_length=6, n_lists=6, seed=0)
    res = fitm.fit(fitm.prepare_data(table), popsize=1, maxiter=1, seed=0)
    assert res.k == 10 and res.params.Dfc == pytest.approx(1 - res.params.Lfc)


def test_load_sample_reads_psifr_data():
    peers = fitm.load_sample("peers_notask")
    assert {"subject", "list", "position", "trial_type", "item"} <= set(peers.columns)
    assert peers["subject"].nunique() == 126
    with pytest.raises(ValueError, match="name"):
        fitm.load_sample("nope")


def test_bad_inputs_name_the_argument(small_table):
    data = fitm.prepare_data(small_table)
    with pytest.raises(TypeError, match="table"):
        fitm.prepare_data([1, 2])
    with pytest.raises(ValueError, match="missing columns"):
        fitm.prepare_data(small_table.drop(columns="item"))
    with pytest.raises(ValueError, match="studied twice"):
        fitm.prepare_data(pd.DataFrame(rows(1, 1, "aba", ["a"])))
    bad = small_table.copy()
    bad.loc[0, "position"] = 7
    with pytest.raises(ValueError, match="study positions"):
        fitm.prepare_data(bad)
    with pytest.raises(TypeError, match="data"):
        fitm.log_likelihood(CMRParams(), small_table)
    with pytest.raises(ValueError, match="pool_size"):
        fitm.log_likelihood(CMRParams(), fitm.RecallData(data.groups, pool_size=5))
    with pytest.raises(ValueError, match="unknown parameter"):
        fitm.fit(data, free={"Bogus": (0, 1)})
    with pytest.raises(ValueError, match="low < high"):
        fitm.fit(data, free={"B_enc": (1.0, 0.0)})
    with pytest.raises(ValueError, match="also free"):
        fitm.fit(data, free={"B_enc": (0.0, 1.0)}, fixed={"B_enc": 0.5})
    with pytest.raises(ValueError, match="no lists"):
        data.subset([99])
    with pytest.raises(ValueError, match="recalled twice"):
        fitm.ListGroup(3, np.array([[0, 0]]), np.array([2]), np.array([1]), np.array([1]))
