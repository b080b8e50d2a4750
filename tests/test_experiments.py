"""The experiment contract and retrieval-basics' quick profile."""

import dataclasses

import pytest

from kvmem import experiments
from kvmem.experiments import parse_value
from kvmem.experiments.retrieval_basics import Config


@pytest.mark.parametrize("name", experiments.names())
def test_contract(name):
    exp = experiments.get(name)
    for profile in experiments.PROFILES:
        config = exp.config(profile)
        assert dataclasses.is_dataclass(config) and isinstance(config, exp.config_type)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, dataclasses.fields(config)[0].name, None)


def test_retrieval_basics_quick_claims_pass_and_same_seed_same_result():
    exp = experiments.get("retrieval-basics")
    a = exp.run(exp.config("quick"), seed=3)
    b = exp.run(exp.config("quick"), seed=3)
    assert a.tables["retrieval"].equals(b.tables["retrieval"])
    claims = exp.claims(a)
    assert [c.name for c in claims] == ["hardmax_perfect_without_noise", "hebbian_degrades_toward_D", "delta_exact_up_to_D"]
    assert all(c.passed for c in claims), claims
    figs = exp.plot(a)
    assert set(figs) == {"retrieval"}


def test_retrieval_basics_table_is_consistent():
    exp = experiments.get("retrieval-basics")
    config = exp.config("quick", {"trials": "4"})
    table = exp.run(config, seed=0).tables["retrieval"]
    n_models = table["model"].nunique()
    assert len(table) == n_models * (len(config.n_pairs) + len(config.noise_levels))
    assert table["accuracy"].between(0, 1).all()
    # The dual form again: slot memory with identity separation equals Hebbian matrix memory.
    slot = table[table["model"] == "slot-identity"]["accuracy"].to_numpy()
    heb = table[table["model"] == "matrix-hebbian"]["accuracy"].to_numpy()
    assert (slot == heb).all()


def test_config_overrides_parse_by_type():
    exp = experiments.get("retrieval-basics")
    cfg = exp.config("quick", {"trials": "7", "n_pairs": "1,2,3", "softmax_beta": "2.5"})
    assert cfg.trials == 7 and cfg.n_pairs == (1, 2, 3) and cfg.softmax_beta == 2.5
    with pytest.raises(ValueError, match="no setting"):
        exp.config("quick", {"bogus": "1"})
    with pytest.raises(ValueError, match="profile"):
        exp.config("medium")
    assert parse_value("none", int | None, "x") is None
    assert parse_value("true", bool, "x") is True
    with pytest.raises(ValueError):
        parse_value("maybe", bool, "x")
    assert Config().key_dim == 64


def test_unknown_experiment():
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get("nope")
