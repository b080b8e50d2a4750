"""Semantic associations in CMR (``Scf``: ``M_cf_pre += Scf S``; ``Sff``: ``M_ff_pre = Sff S``).

Checked against three independent references: the installed cymr (Morton & Polyn's CMR,
with the similarity matrix given as a ``'vector'`` pattern in its ``cf`` weights, and as a
``'similarity'`` pattern in its ``ff`` weights); a plain per-recall loop in numpy float64
written here from the model equations; and the distribution over all recall sequences of
a short list (the probabilities sum to one, and simulated frequencies match them).
With both weights at 0 (the default) every result is that of localist CMR.
"""


import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.data.semantic import semantic_similarity
from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm
from kvmem.paradigms.free_recall import CMRParams

from test_cmr_parity import CYMR_TEST_PARAMS, SAMPLE1  # cymr's sample data and test settings
from test_free_recall import random_params, random_recalls
from test_free_recall_consistency import (
    assert_sequences_follow,
    exact_sequence_probabilities,
    reference_extended_log_probs,
)

pytestmark = pytest.mark.usefixtures("one_thread")

POOL_WORDS = ["absence", "hollow", "pupil", "fountain", "piano", "pillow"]


def random_vectors(rng, n, d=5):
    # A positive offset gives mostly positive cosines, as word vectors have.
    return torch.tensor(rng.normal(size=(n, d)) + 0.5)


def cymr_logl(table, params, S, pool):
    """cymr's log-likelihood with the similarity matrix ``S`` (pool order) in M_cf_pre and M_ff_pre."""
    cmr = pytest.importorskip("cymr.cmr")
    param_def, patterns = cmr.config_loc_cmr(pool)
    patterns["vector"]["sem"] = S
    patterns["similarity"] = {"sem": S}
    param_def.set_weights("cf", {(("task", "item"), ("task", "item")): "Acf + Dcf * loc + Scf * sem"})
    param_def.set_weights("ff", {("task", "item"): "Sff * sem"})
    stats_ = cmr.CMR().likelihood(table, params.to_dict(), None, param_def, patterns=patterns)
    return float(stats_["logl"].sum())


def test_semantic_weights_default_to_off_and_validate():
    p = CMRParams()
    assert (p.Scf, p.Sff) == (0.0, 0.0)
    for name in ("Scf", "Sff"):
        with pytest.raises(ValueError, match=name):
            CMRParams(**{name: -0.1})
        with pytest.raises(ValueError, match=name):
            frm.param_batch({name: [0.2, -1.0]})
    assert fitm.model_bounds("cmr-sem") == {**fitm.DEFAULT_BOUNDS, "Scf": (0.0, 1.0)}
    assert set(fitm.model_bounds("cmr-chain-restart-sem")) == set(fitm.model_bounds("cmr-chain-restart")) | {"Scf"}
    assert fitm.model_bounds("cmr-sem-ff") == {**fitm.DEFAULT_BOUNDS, "Sff": (0.0, 1.0)}
    assert fitm.model_bounds("cmr-chain-restart-sem-ff") == {**fitm.model_bounds("cmr-chain-restart"), "Sff": (0.0, 1.0)}
    assert fitm.model_uses_semantics("cmr-chain-restart-sem") and not fitm.model_uses_semantics("cmr-chain-restart")
    assert fitm.model_uses_semantics("cmr-sem-ff")


def test_log_likelihood_equals_cymr_with_semantic_patterns():
    rng = np.random.default_rng(0)
    vectors = random_vectors(rng, 6)
    S = semantic_similarity(POOL_WORDS, POOL_WORDS, vectors).numpy()
    data = fitm.prepare_data(SAMPLE1, pool_size=6, word_vectors=(POOL_WORDS, vectors))
    base = CMRParams(**CYMR_TEST_PARAMS)
    logls = []
    for extra in ({"Scf": 0.7}, {"Sff": 0.4}, {"Scf": 0.3, "Sff": 0.5},
                  {"Scf": 0.5, "Acf": 0.1, "T": 0.5, "B_start": 0.3, "P1": 1.0}):
        p = CMRParams(**{**CYMR_TEST_PARAMS, **extra})
        ours = float(fitm.log_likelihood(p, data)[0])
        assert ours == pytest.approx(cymr_logl(SAMPLE1, p, S, 6), rel=0, abs=1e-8)
        logls.append(ours)
    # The semantic terms change the likelihood (so the comparison tests them), and with
    # them off the value is cymr's published one.
    assert all(abs(v - (-5.936799964636842)) > 0.01 for v in logls)
    assert float(fitm.log_likelihood(base, data)[0]) == pytest.approx(-5.936799964636842, rel=1e-12)


def test_log_likelihood_equals_cymr_on_random_settings():
    rng = np.random.default_rng(3)
    table = frm.simulate(CMRParams(T=0.3, X1=0.02, X2=0.4), list_length=6, n_lists=4, subjects=[1, 2], seed=5)
    # Each list's items are distinct words of a 14-word pool with random vectors (a word
    # may appear in several lists); cymr finds each word by its row in the pool.
    pool = 14
    words = [f"word{i}" for i in range(pool)]
    row = np.full(len(table), -1)
    for _, lst in table[table["trial_type"] == "study"].groupby(["subject", "list"]):
        chosen = rng.choice(pool, len(lst), replace=False)
        row[lst.index] = chosen
        recalled = table.index[(table["subject"] == lst["subject"].iloc[0]) & (table["list"] == lst["list"].iloc[0])
                               & (table["trial_type"] == "recall")]
        position = dict(zip(lst["item"], chosen))
        row[recalled] = [position[w] for w in table.loc[recalled, "item"]]
    table = table.assign(item=[words[i] for i in row], item_index=row)
    vectors = random_vectors(rng, pool)
    S = semantic_similarity(words, words, vectors).numpy()
    cy_table = table
    data = fitm.prepare_data(table, pool_size=pool, word_vectors=(words, vectors))
    for _ in range(3):
        # Afc = 0: the unstudied words' context units stay at 0 (see the model docstring).
        p = random_params(rng, Afc=0.0, Scf=rng.uniform(0.05, 1.0), Sff=rng.uniform(0.0, 0.8))
        ours = float(fitm.log_likelihood(p, data)[0])
        assert ours == pytest.approx(cymr_logl(cy_table, p, S, pool), rel=0, abs=1e-8)


@pytest.mark.parametrize("distract", [False, True])
def test_semantic_likelihood_matches_plain_loop(distract):
    rng = np.random.default_rng(21)
    L, pool, n_lists = 7, 12, 6
    extra = dict(B_distract=0.3, B_retention=0.4) if distract else {}
    params = [random_params(rng, Afc=0.0, Scf=rng.uniform(0.1, 1.0), Sff=rng.uniform(0.0, 0.6),
                            Lff_f=rng.uniform(0, 0.5), Lff_b=rng.uniform(0, 0.3), B_restart=rng.uniform(0, 0.4),
                            **extra) for _ in range(3)]
    item_index = list(rng.permutation(pool)[:L])
    seqs, r, n = random_recalls(rng, L, n_lists)
    seqs[0] = [2, 3, 4, 1, 0, 6, 5]
    r = np.full((n_lists, L), -1)
    for j, seq in enumerate(seqs):
        r[j, : len(seq)] = seq
    n = np.array([len(s) for s in seqs])
    # A different similarity matrix for every list.
    sims = np.stack([semantic_similarity([f"w{i}" for i in range(L)], [f"w{i}" for i in range(L)],
                                         random_vectors(rng, L)).numpy() for _ in range(n_lists)])
    state = frm.study(params, L, pool_size=pool)
    fast = frm.recall_log_probs(state, params, r, n, similarity=sims).numpy()
    tracked, _ = frm.recall_log_probs(state, params, r, n, return_contexts=True, similarity=sims)
    for i, p in enumerate(params):
        for j, seq in enumerate(seqs):
            ref = reference_extended_log_probs(p, seq, L, item_index, pool, sims[j])
            np.testing.assert_allclose(fast[i, j, : len(seq) + 1], ref, rtol=0, atol=1e-10)
            np.testing.assert_allclose(tracked[i, j, : len(seq) + 1].numpy(), ref, rtol=0, atol=1e-10)
    off = CMRParams(**{**params[0].to_dict(), "Scf": 0.0, "Sff": 0.0})
    assert abs(sum(reference_extended_log_probs(off, seqs[0], L, item_index, pool, sims[0]))
               - fast[0, 0, : len(seqs[0]) + 1].sum()) > 0.05


# --------------------- the distribution over all sequences of a short list ---------------

L_SHORT = 4
N_SIM = 40000
SIM4 = semantic_similarity(["a", "b", "c", "d"], ["a", "b", "c", "d"],
                           torch.tensor([[1.0, 0.2, 0.0], [0.9, 0.4, 0.1], [0.0, 1.0, 0.3], [0.2, 0.1, 1.0]]))
CASES = {
    "sem_cf": fitm.expand_params({**fitm.PEERS_POOLED, "X1": 0.08, "Scf": 0.6}),
    "sem_cf_ff_chain_restart": fitm.expand_params({**fitm.PEERS_POOLED, "X1": 0.08, "Scf": 0.4, "Sff": 0.5,
                                                   "Lff_f": 0.3, "Lff_b": 0.1, "B_restart": 0.2}),
}


def _exact(params):
    return exact_sequence_probabilities(params, L_SHORT, pool_size=None, similarity=SIM4)


@pytest.mark.parametrize("name", list(CASES))
def test_semantic_sequence_probabilities_sum_to_one_and_match_simulation(name):
    params = CASES[name]
    seqs, p = _exact(params)
    assert len(seqs) == 65 and abs(p.sum() - 1.0) < 1e-12
    off = CMRParams(**{**params.to_dict(), "Scf": 0.0, "Sff": 0.0})
    _, p_off = _exact(off)
    assert np.abs(p - p_off).sum() > 0.05  # the semantic terms matter here
    rec = frm.generate(params, L_SHORT, N_SIM, generator=7, similarity=SIM4.expand(N_SIM, L_SHORT, L_SHORT))[0]
    assert_sequences_follow(rec.numpy(), seqs, p)


def test_generate_takes_one_set_of_lists_per_parameter_set():
    # Parameter set 0 sees lists whose items 0 and 3 are near-synonyms; set 1 sees
    # unrelated items. With a strong Sff, set 0 goes from item 0 to item 3 more often.
    params = [fitm.expand_params({**fitm.PEERS_POOLED, "Sff": 1.0})] * 2
    related = torch.eye(6, dtype=torch.float64)
    related[0, 3] = related[3, 0] = 0.95
    sim = torch.stack([related.expand(3000, 6, 6), torch.eye(6, dtype=torch.float64).expand(3000, 6, 6)])
    rec = frm.generate(params, 6, 3000, generator=2, similarity=sim).numpy()
    share = [float((rec[i][rec[i][:, 0] == 0][:, 1] == 3).mean()) for i in range(2)]
    assert share[0] > share[1] + 0.1, share
    # Without semantics the draws ignore the similarity argument (same seed, same output).
    plain = fitm.expand_params(fitm.PEERS_POOLED)
    np.testing.assert_array_equal(frm.generate(plain, 6, 50, generator=4).numpy(),
                                  frm.generate(plain, 6, 50, generator=4, similarity=sim[0, :50]).numpy())


def test_prepare_data_attaches_each_lists_similarity_in_serial_order():
    table = fitm.load_sample("peers_notask")
    table = table[table["subject"].isin([63, 64])]
    words = sorted(set(table.loc[table["trial_type"] == "study", "item"].str.lower()))
    rng = np.random.default_rng(1)
    vectors = random_vectors(rng, len(words))
    data = fitm.prepare_data(table, word_vectors=(words, vectors))
    g = data.groups[0]
    assert g.similarity.shape == (56, 16, 16)
    for j in (0, 27, 40):
        items = (table[(table["subject"] == g.subjects[j]) & (table["list"] == g.lists[j])
                       & (table["trial_type"] == "study")].sort_values("position")["item"].tolist())
        # An independent float64 computation of the cosines.
        v = np.array([vectors[words.index(w.lower())].numpy() for w in items])
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        np.testing.assert_allclose(g.similarity[j], v @ v.T, rtol=0, atol=1e-12)
    sub = data.subset([64])
    assert sub.groups[0].similarity.shape == (28, 16, 16)
    np.testing.assert_array_equal(sub.groups[0].similarity, g.similarity[g.subjects == 64])
    # Without similarities, a semantic model is refused with a clear message.
    plain = fitm.prepare_data(table)
    with pytest.raises(ValueError, match="similarity|word_vectors"):
        fitm.log_likelihood(CMRParams(Scf=0.2), plain)
    with pytest.raises(ValueError, match="word_vectors"):
        fitm.fit(plain, free=fitm.model_bounds("cmr-sem"), maxiter=1, popsize=1)
    # Localist models give the same likelihood with or without the similarities attached.
    p = fitm.expand_params(fitm.PEERS_POOLED)
    assert float(fitm.log_likelihood(p, data)[0]) == float(fitm.log_likelihood(p, plain)[0])


def test_fit_subjects_starts_each_subject_where_told():
    table = fitm.load_sample("peers_notask")
    data = fitm.prepare_data(table[table["subject"].isin([63, 64])])
    start = {63: fitm.PEERS_POOLED, 64: {**fitm.PEERS_POOLED, "T": 0.5}}
    fits = fitm.fit_subjects(data, [63, 64], x0_by_subject=start, maxiter=2, popsize=2, seed=0)
    for subj, x0 in start.items():
        at_start = float(fitm.log_likelihood(fitm.expand_params(x0), data.subset([subj]))[0])
        assert fits[subj].logl >= at_start - 1e-9
    with pytest.raises(ValueError, match="x0_by_subject"):
        fitm.fit_subjects(data, [63, 64], x0_by_subject={63: fitm.PEERS_POOLED}, maxiter=1, popsize=1)


def test_semantic_inputs_are_checked():
    state = frm.study(CMRParams(Scf=0.3), 3)
    with pytest.raises(ValueError, match="similarity"):
        frm.recall_log_probs(state, CMRParams(Scf=0.3), [[0]], [1])
    with pytest.raises(ValueError, match="similarity"):
        frm.recall_log_probs(state, CMRParams(Scf=0.3), [[0]], [1], similarity=np.eye(4)[None])
    with pytest.raises(ValueError, match="similarity"):
        frm.recall_log_probs(state, CMRParams(Scf=0.3), [[0]], [1], similarity=np.full((1, 3, 3), np.nan))
    with pytest.raises(ValueError, match="similarity"):
        frm.generate(CMRParams(Sff=0.3), 3, 2, generator=0)
    with pytest.raises(ValueError, match="word_vectors"):
        frm.simulate(CMRParams(Scf=0.3), list_length=3, n_lists=2)


def test_likelihood_profile_peaks_near_the_true_semantic_weight():
    # Lists of random words with random vectors, simulated with Scf = 0.5: the
    # likelihood along Scf peaks near 0.5 and clearly beats Scf = 0.
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(200)]
    vectors = random_vectors(rng, 200, d=8)
    items = np.array([rng.choice(words, 12, replace=False) for _ in range(300)], dtype=object)
    study = pd.DataFrame({"subject": 1, "list": np.repeat(np.arange(1, 301), 12), "position": np.tile(np.arange(1, 13), 300),
                          "trial_type": "study", "item": items.reshape(-1)})
    truth = fitm.expand_params({**fitm.PEERS_POOLED, "Scf": 0.5})
    table = frm.simulate(truth, study_table=study, subjects=[1], seed=3, word_vectors=(words, vectors))
    data = fitm.prepare_data(table, word_vectors=(words, vectors))
    grid = np.arange(0.0, 1.01, 0.1)
    batch = {k: np.full(len(grid), v) for k, v in truth.to_dict().items()}
    batch["Scf"] = grid
    ll = fitm.log_likelihood(batch, data).numpy()
    assert abs(grid[int(np.argmax(ll))] - 0.5) <= 0.2, ll.round(1)
    assert ll.max() - ll[0] > 10


@pytest.fixture(scope="module")
def semantic_run():
    import dataclasses

    from kvmem.experiments import free_recall as exp_fr

    config = dataclasses.replace(exp_fr.QUICK, model="cmr-chain-restart-sem", compare="cmr-chain-restart",
                                 list_lengths=(8, 16), length_lists=100, nested_start=True)
    return exp_fr.run(config, seed=0)


def test_experiment_fits_and_simulates_the_semantic_model(semantic_run):
    from kvmem.data.semantic import load_word_vectors

    t, s = semantic_run.tables, semantic_run.scalars
    fits, other = t["fits"], t["fits_compare"]
    assert (fits["k"] == 14).all() and (other["k"] == 13).all() and (other["Scf"] == 0).all()
    lo, hi = fitm.model_bounds("cmr-chain-restart-sem")["Scf"]
    assert fits["Scf"].between(lo, hi).all() and (fits["Scf"] > 0).any()
    assert s["model"] == "cmr-chain-restart-sem" and s["n_params"] == 14
    # nested_start: each subject's search starts from its fit of the nested model, which
    # DE keeps until beaten, so the semantic model is never worse.
    assert (fits["logl"].to_numpy() >= other["logl"].to_numpy() - 1e-9).all()
    assert list(t["models"]["model"]) == ["cmr-chain-restart-sem", "cmr-chain-restart"]
    # Each fit's log-likelihood is that of its parameters on the data with GloVe similarities.
    data = fitm.prepare_data(fitm.load_sample("peers_notask").query("subject == 64"), word_vectors=load_word_vectors())
    row = fits[fits["subject"] == 64].iloc[0]
    p = CMRParams(**row[list(frm.PARAM_NAMES)].astype(float).to_dict())
    assert float(fitm.log_likelihood(p, data)[0]) == pytest.approx(row["logl"], abs=1e-9)
    for name, n in (("spc", 16), ("crp", 10)):
        assert (t[name]["source"] == "simulated").sum() == n
    assert t["list_length"]["list_length"].tolist() == [8, 16]
    assert t["list_length"]["p_recall"].between(0, 1).all()
