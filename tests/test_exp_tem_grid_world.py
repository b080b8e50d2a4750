"""Experiment tem-grid-world: quick-profile claims, determinism, table consistency, plots."""

import dataclasses

import pytest
import torch

from kvmem.bio.tem import GridWorld, TEMMemory
from kvmem.experiments import tem_grid_world as exp_module

pytestmark = pytest.mark.usefixtures("one_thread")

EXP = exp_module.EXPERIMENT
CLAIMS = [
    "revisits_predicted_after_one_visit",
    "first_visits_at_chance",
    "new_paths_through_known_places",
    "slots_are_place_cells",
    "position_code_required",
]


@pytest.fixture(scope="module")
def quick():
    return EXP.run(EXP.config("quick"), seed=0)


def test_quick_claims_pass(quick):
    claims = EXP.claims(quick)
    assert [c.name for c in claims] == CLAIMS
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    import matplotlib.pyplot as plt

    figs = EXP.plot(quick)
    assert set(figs) == {"accuracy_vs_visit", "rate_maps", "spatial_information"}
    # The rate-map panel of the first tem slot peaks where that slot was written.
    ex = quick.tables["examples"].query("world == 'periodic' and model == 'tem'")
    slot = ex[ex["slot"] == ex["slot"].min()]
    peak = slot.loc[slot["rate"].idxmax()]
    assert peak["row"] * EXP.config("quick").width + peak["col"] == peak["slot_place"]
    for fig in figs.values():
        plt.close(fig)


def test_same_seed_same_result_other_seed_differs(quick):
    again = EXP.run(EXP.config("quick"), seed=0)
    for name, table in quick.tables.items():
        assert table.equals(again.tables[name]), name
    other = EXP.run(EXP.config("quick", {"trials": "1"}), seed=1)
    first = quick.tables["summary"].query("trial == 0").reset_index(drop=True)
    assert not other.tables["summary"]["correct"].equals(first["correct"])


def test_claims_can_fail_with_a_blurred_memory():
    # beta = 0.5 on unit keys: every stored slot weighs about the same, so revisits are no longer recalled.
    result = EXP.run(EXP.config("quick", {"trials": "2", "beta": "0.5", "n_shuffles": "5"}), seed=0)
    claims = {c.name: c for c in EXP.claims(result)}
    assert not claims["revisits_predicted_after_one_visit"].passed
    assert not claims["new_paths_through_known_places"].passed


def test_tables_are_consistent(quick):
    cfg = EXP.config("quick")
    s = quick.tables["summary"]
    places = cfg.height * cfg.width
    assert set(s["model"]) == set(exp_module.MODELS) and s["accuracy"].dropna().between(0, 1).all()
    for (_, _, model), part in s.groupby(["world", "trial", "model"]):
        n = dict(zip(part["category"], part["n"]))
        # Step 0 is not scored, so a covering walk has places - 1 scored first visits.
        assert n["first"] == places - 1
        assert n["known"] == n["new_path"] + n["known_edge"]
    cov = quick.tables["coverage"]
    assert len(cov) == cfg.trials and (cov["walk2_steps"] == cfg.second_walk).all()
    tun = quick.tables["tuning"]
    assert set(tun["model"]) == set(cfg.tuning_models)
    assert (tun["slots"] <= cov["walk1_steps"].max() + 1).all()


def test_summary_matches_an_independent_rerun_of_one_trial(quick):
    # Rebuild trial 0 from the seeds the experiment draws and recount the tem revisits directly.
    import numpy as np

    cfg = EXP.config("quick")
    seeds = np.random.default_rng(0).integers(0, 2**31 - 1, size=(1, cfg.trials, 4))[0, 0]
    world = GridWorld(cfg.height, cfg.width, cfg.n_obs, periodic=True, seed=int(seeds[0]))
    w1 = world.walk_until_covered(seed=int(seeds[1]))
    walk = w1.then(world.random_walk(cfg.second_walk, start=int(w1.places[-1]), seed=int(seeds[2])))
    visits = walk.visit_numbers()
    for model, kwargs in (("tem", {"keys": "position"}), ("sensory-keys", {"keys": "sensory"})):
        pred = TEMMemory(world, n_modules=cfg.n_modules, beta=cfg.beta, seed=int(seeds[3]), **kwargs).predict(walk)
        revisit = (visits > 0) & (torch.arange(walk.steps + 1) <= w1.steps)
        row = quick.tables["summary"].query("trial == 0 and model == @model and category == 'revisit'").iloc[0]
        assert row["n"] == int(revisit.sum()) and row["correct"] == int(pred.correct[revisit].sum())


def test_config_is_frozen_and_bad_settings_raise():
    cfg = EXP.config("full")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trials = 3
    with pytest.raises(ValueError, match="worlds"):
        EXP.run(EXP.config("quick", {"worlds": "torus"}))
    with pytest.raises(ValueError, match="tuning_models"):
        EXP.run(EXP.config("quick", {"tuning_models": "tem,bogus"}))
    with pytest.raises(ValueError, match="dtype"):
        EXP.run(EXP.config("quick", {"dtype": "float16"}))
