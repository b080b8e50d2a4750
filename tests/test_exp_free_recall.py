"""free-recall: the quick profile's claims and tables, config checks, seeds."""

import dataclasses

import numpy as np
import pytest

from kvmem.experiments import free_recall as exp_fr

EXP = exp_fr.EXPERIMENT


@pytest.fixture(scope="module")
def quick():
    return EXP.run(EXP.config("quick"), seed=0)


def test_registered_with_both_profiles():
    from kvmem.experiments import REGISTRY

    assert REGISTRY["free-recall"] is EXP
    full = EXP.config("full")
    assert full.n_subjects is None and full.workers == 2 and full.dataset == "peers_notask"
    quick = EXP.config("quick")
    assert quick.n_subjects == 3 and quick.workers is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.popsize = 1


def test_quick_claims_hold(quick):
    claims = {c.name: c for c in EXP.claims(quick)}
    assert list(claims) == ["simulated_primacy_and_recency", "spc_inside_observed_band", "pfr_inside_observed_band",
                            "crp_inside_observed_band", "forward_asymmetry", "list_length_effect"]
    assert all(c.passed for c in claims.values()), [c for c in claims.values() if not c.passed]


def test_tables_are_consistent(quick):
    t = quick.tables
    fits = t["fits"]
    assert len(fits) == 3 and fits["subject"].is_unique
    assert (fits["k"] == 10).all() and (fits["n"] > 0).all()
    np.testing.assert_allclose(fits["Dfc"], 1 - fits["Lfc"])
    # Every fit beats uniform guessing with the subject's own stop frequencies.
    assert (fits["logl"] > fits["baseline_logl"]).all()
    assert quick.scalars["n_events"] == fits["n"].sum() == t["pooled"]["n"].iloc[0]
    # A pooled fit has fewer parameters than the individual fits together: lower likelihood.
    assert t["pooled"]["logl"].iloc[0] <= t["pooled"]["sum_individual_logl"].iloc[0]
    for name, x, n in (("spc", "position", 16), ("pfr", "position", 16), ("crp", "lag", 10)):
        part = t[name]
        assert set(part["source"]) == {"observed", "simulated"}
        for source in ("observed", "simulated"):
            one = part[part["source"] == source]
            assert len(one) == n and (one["lo"] <= one["mean"]).all() and (one["mean"] <= one["hi"]).all()
            assert (one["n_subjects"] <= 3).all()
    pfr = t["pfr"]
    for source in ("observed", "simulated"):
        assert pfr[pfr["source"] == source]["mean"].sum() == pytest.approx(1.0, abs=1e-9)
    ll = t["list_length"]
    assert ll["list_length"].tolist() == list(EXP.config("quick").list_lengths)
    assert (ll["p_recall"] * ll["list_length"]).to_numpy() == pytest.approx(ll["n_recalled"].to_numpy())
    obs = t["observed_list_length"]
    assert obs["dataset"].tolist() == ["peers_notask", "Morton2013"] and obs["list_length"].tolist() == [16, 24]
    assert obs["n_subjects"].tolist() == [3, 40]
    figs = EXP.plot(quick)
    assert set(figs) == {"free-recall"} and len(figs["free-recall"].axes) == 4


def test_same_seed_same_result(quick):
    again = EXP.run(EXP.config("quick"), seed=0)
    for name, table in quick.tables.items():
        if name in ("fits", "pooled"):
            table, other = (x.drop(columns=["seconds", "cpu_seconds"]) for x in (table, again.tables[name]))
        else:
            other = again.tables[name]
        assert table.equals(other), name


@pytest.mark.parametrize("change, match", [
    ({"n_subjects": 1}, "n_subjects"),
    ({"dataset": "other"}, "dataset"),
    ({"list_lengths": (16, 8)}, "list_lengths"),
    ({"confidence": 1.5}, "confidence"),
    ({"popsize": 0}, "popsize"),
])
def test_bad_config_is_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        EXP.run(dataclasses.replace(EXP.config("quick"), **change))
