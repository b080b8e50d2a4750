"""The ``capacity`` experiment: quick claims, reproducibility, and claims that can fail."""

import dataclasses

import pytest

from kvmem.experiments import capacity as exp_capacity
from kvmem.experiments.capacity import ALPHA_C, Config

TINY = Config(
    trials=2, probes=4, hopfield_sizes=(100,), hopfield_alphas=(0.1,), hopfield_mode="sync", hopfield_steps=5,
    dam_sizes_2=(16, 32), dam_sizes_3=(), dam_sizes_4=(), modern_n=16, modern_loads=(1.0,), curve_n=16,
    curve_loads=(0.5, 1.0), sdm_locations=100, delta_passes=1000,
)


@pytest.fixture(scope="module")
def quick():
    exp = exp_capacity.EXPERIMENT
    return exp.run(exp.config("quick"), seed=0)


def test_quick_profile_claims_pass(quick):
    claims = exp_capacity.claims(quick)
    names = [c.name for c in claims]
    assert names == [
        "hopfield_alpha_c", "hopfield_memory_cliff", "dam_scaling_n2", "dam_scaling_n3",
        "modern_hopfield_p_much_greater_than_n", "slot_hardmax_perfect", "matrix_delta_exact_to_n",
        "matrix_hebbian_not_exact",
    ]
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    assert set(exp_capacity.plot(quick)) == {"hopfield_cliff", "dam_scaling", "capacity_curves"}


def test_tables_are_consistent(quick):
    curves = quick.tables["curves"]
    assert curves[["bit_error", "exact", "success"]].stack().between(0, 1).all()
    assert (curves["alpha"] == curves["p"] / curves["n"]).all()
    heb = curves[curves["model"] == "matrix-hebbian"]
    assert heb["theory_bit_error"].notna().all() and heb["bit_error"].is_monotonic_increasing
    dam = quick.tables["dam_capacity"]
    assert (dam["p_star"] >= 1).all() and not dam["hit_upper_bound"].any()


def test_same_seed_same_result_and_seed_matters():
    a = exp_capacity.run(TINY, seed=4)
    b = exp_capacity.run(TINY, seed=4)
    c = exp_capacity.run(TINY, seed=5)
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    assert not a.tables["curves"].equals(c.tables["curves"])


def test_claims_fail_when_the_data_contradict_them(quick):
    bad = dataclasses.replace(quick, tables=dict(quick.tables), scalars=dict(quick.scalars))
    cap = bad.tables["hopfield_capacity"].copy()
    cap["alpha_star"] = 1.2 * ALPHA_C * 1.0001 + 0.02  # outside +-15%
    bad.tables["hopfield_capacity"] = cap
    bad.scalars["dam_slope_n3"] = 2.5  # 25% off
    curves = bad.tables["curves"].copy()
    curves.loc[curves["model"] == "slot-hardmax", "exact"] = 0.99
    bad.tables["curves"] = curves
    failed = {c.name for c in exp_capacity.claims(bad) if not c.passed}
    assert failed == {"hopfield_alpha_c", "dam_scaling_n3", "slot_hardmax_perfect"}


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="hopfield_mode"):
        Config(hopfield_mode="parallel")
    with pytest.raises(ValueError, match="dam_hi"):
        Config(dam_hi=(1.0,))
    with pytest.raises(ValueError, match="threshold"):
        Config(threshold=0.7)
