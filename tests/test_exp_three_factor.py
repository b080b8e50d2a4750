"""Experiment three-factor-capacity: quick claims, reproducibility, scoring and the Hopfield
comparison model against plain loops, falsifiable claims and config errors."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from kvmem.experiments import three_factor_capacity as tfc
from kvmem.experiments.base import Progress

EXP = tfc.EXPERIMENT
CLAIMS = [
    "sequential_perfect_up_to_N",
    "sequential_matches_slot_memory",
    "sequential_graceful_past_N",
    "random_degrades_earlier",
    "hopfield_fails_near_0.14N",
    "capacity_scales_linearly",
    "meta_learned_value_rule_hebbian",
    "meta_learned_key_rule_presynaptic",
    "meta_learned_recall_up_to_N",
]


class Counting(Progress):
    def __init__(self):
        self.announced, self.done = None, 0

    def total(self, n):
        self.announced = n

    def advance(self, n=1):
        self.done += n


@pytest.fixture(scope="module")
def quick():
    progress = Counting()
    result = EXP.run(EXP.config("quick"), seed=0, progress=progress)
    return result, progress


def test_quick_claims_pass(quick):
    result, progress = quick
    claims = EXP.claims(result)
    assert [c.name for c in claims] == CLAIMS
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    assert progress.announced == progress.done > 0


def test_quick_tables_are_consistent(quick):
    result, _ = quick
    acc = result.tables["accuracy"]
    assert set(acc["model"]) == {"sequential", "random", "slot", "hopfield", "learned-sequential"}
    assert acc["accuracy"].between(0, 1).all() and acc["exact"].between(0, 1).all()
    assert (acc.groupby("model").size() == len(EXP.config("quick").lengths)).all()
    seq = acc[acc["model"] == "sequential"].set_index("T")["accuracy"]
    slot = acc[acc["model"] == "slot"].set_index("T")["accuracy"]
    assert (seq == slot).all()  # the sequential rule is this slot memory (values scaled by h' ~ 1)
    # Accuracy of the sequential rule never rises with T.
    assert (seq.diff().dropna() <= 1e-12).all()
    coef = result.tables["coefficients"]
    assert len(coef) == 8 and set(coef["term"]) == {"pre", "post", "prepost", "decay"}
    assert len(result.tables["training"]) == EXP.config("quick").meta_steps
    cap = result.tables["capacity"]
    assert set(cap["n"]) == set(EXP.config("quick").sizes)
    assert (cap["capacity"] <= cap["scanned_to"]).all()
    figs = EXP.plot(result)
    assert set(figs) == {"benchmark", "meta_learning"}


SMALL = {"trials": "3", "lengths": "1,2,4,9,12", "dim": "8", "sizes": "8,10", "size_trials": "3", "meta_steps": "3"}


def test_same_seed_same_result_and_seed_matters():
    config = EXP.config("quick", SMALL)
    a, b, c = (EXP.run(config, seed=s) for s in (5, 5, 6))
    for name, table in a.tables.items():
        assert table.equals(b.tables[name]), name
    assert a.scalars == b.scalars
    assert not a.tables["accuracy"].equals(c.tables["accuracy"])
    assert a.config == dataclasses.asdict(config)


def test_run_leaves_torch_threads_alone():
    before = torch.get_num_threads()
    EXP.run(EXP.config("quick", {**SMALL, "sizes": "", "meta_locals": ""}), seed=0)
    assert torch.get_num_threads() == before


# -- scoring and the Hopfield model against plain references ------------------------------------


def test_ambiguous_cues_by_hand():
    x = torch.tensor([[[1.0, 1, 1, 1], [1.0, 1, -1, -1], [-1.0, 1, 1, 1]]])
    cue = torch.tensor([[[1.0, 1, 0, 0], [0.0, 0, -1, -1], [0.0, 1, 1, 1]]])
    assert tfc._ambiguous(x, cue).tolist() == [[True, False, True]]


def test_score_counts_zero_outputs_as_half():
    x = torch.tensor([[[1.0, -1, 1, -1], [1.0, 1, 1, 1]]])
    out = torch.tensor([[[0.3, -2.0, 0.0, 5.0], [1.0, 1, 1, 1]]])
    s = tfc._score(out, x, torch.tensor([[False, True]]), recent=1)
    assert s["accuracy"] == pytest.approx((1 + 1 + 0.5 + 0 + 4) / 8)
    assert s["accuracy_unambiguous"] == pytest.approx(2.5 / 4)
    assert s["recent_unambiguous"] != s["recent_unambiguous"]  # the only recent cue is ambiguous: NaN
    assert s["exact"] == pytest.approx(0.5) and s["ambiguous_cues"] == pytest.approx(0.5)


def loop_hopfield(x, cue, clamp, steps, zero_diagonal):
    """Plain float64 Hopfield: W = (1/N) sum xi xi^T (diagonal kept or zeroed), the paper's
    first step sign(W x~) from the zero-filled cue, then synchronous steps (sign(0) = +1)."""
    p, n = x.shape
    w = np.zeros((n, n))
    for mu in range(p):
        for i in range(n):
            for j in range(n):
                if i != j or not zero_diagonal:
                    w[i, j] += x[mu, i] * x[mu, j] / n

    def sign(v):
        return np.where(v >= 0, 1.0, -1.0)

    visible = cue != 0
    s = sign(w @ cue)
    if clamp:
        s = np.where(visible, cue, s)
    for _ in range(steps):
        new = sign(w @ s)
        if clamp:
            new = np.where(visible, cue, new)
        if (new == s).all():
            break
        s = new
    return s


@pytest.mark.parametrize("dynamics", ["plain", "clamp"])
@pytest.mark.parametrize("zero_diagonal", [False, True])
def test_hopfield_comparison_model_matches_a_plain_loop(dynamics, zero_diagonal):
    from kvmem.bio.three_factor import recall_task

    x, cue = recall_task(trials=3, length=5, dim=16, seed=4, dtype=torch.float64)
    out = tfc._hopfield_recall(x, cue, dynamics, steps=30, zero_diagonal=zero_diagonal)
    for b in range(3):
        for t in range(5):
            ref = loop_hopfield(x[b].numpy(), cue[b, t].numpy(), dynamics == "clamp", 30, zero_diagonal)
            np.testing.assert_array_equal(out[b, t].numpy(), ref)
    assert 0.5 < float((out == x).double().mean()) < 1.0  # neither trivial nor hopeless


# -- claims are falsifiable ------------------------------------------------------------------


def names_failing(result):
    return {c.name for c in EXP.claims(result) if not c.passed}


def test_claims_fail_on_contrary_data(quick):
    result, _ = quick
    bad = copy.deepcopy(result)
    bad.scalars["capacity_hopfield"] = 20
    assert names_failing(bad) == {"hopfield_fails_near_0.14N"}

    bad = copy.deepcopy(result)
    acc = bad.tables["accuracy"]
    acc.loc[(acc["model"] == "sequential") & (acc["T"] == 10), "accuracy_unambiguous"] = 0.999
    assert "sequential_perfect_up_to_N" in names_failing(bad)

    bad = copy.deepcopy(result)
    acc = bad.tables["accuracy"]
    past = (acc["model"] == "sequential") & (acc["T"] > 40)
    acc.loc[past, "accuracy"] = 0.5  # a blackout past N
    acc.loc[past, "recent_unambiguous"] = 0.5
    assert {"sequential_graceful_past_N", "sequential_matches_slot_memory"} <= names_failing(bad)

    bad = copy.deepcopy(result)
    bad.scalars["capacity_random"] = bad.scalars["capacity_sequential"]
    assert "random_degrades_earlier" in names_failing(bad)

    bad = copy.deepcopy(result)
    coef = bad.tables["coefficients"]
    coef.loc[(coef["synapse"] == "value") & (coef["term"] == "post"), "learned"] = 1.0
    coef.loc[(coef["synapse"] == "key") & (coef["term"] == "pre"), "learned"] = -0.3
    assert {"meta_learned_value_rule_hebbian", "meta_learned_key_rule_presynaptic"} <= names_failing(bad)


# -- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, match",
    [
        ({"hopfield_dynamics": "async"}, "hopfield_dynamics"),
        ({"lengths": "3,2,5"}, "lengths"),
        ({"meta_locals": "lru"}, "meta_locals"),
        ({"meta_value_gate": "axon"}, "meta_value_gate"),
        ({"meta_init": "clever"}, "meta_init"),
        ({"erase": "1.0"}, "erase"),
        ({"random_p": "2"}, "random_p"),
        ({"threshold": "0"}, "threshold"),
        ({"dim": "1"}, "dim"),
    ],
)
def test_bad_config_is_a_clear_error(override, match):
    with pytest.raises(ValueError, match=match):
        EXP.run(EXP.config("quick", {**SMALL, **override}), seed=0)
