"""The extensions beyond standard CMR (associative chaining, return to the start context):
parameters, named models and their bounds, identifiability on simulated data, and the
``free-recall`` experiment run with an extended model and a comparison model."""

import dataclasses

import numpy as np
import pytest

from kvmem.experiments import free_recall as exp_fr
from kvmem.paradigms import free_recall as frm
from kvmem.paradigms import free_recall_fit as fitm
from kvmem.paradigms.free_recall import CMRParams

pytestmark = pytest.mark.usefixtures("one_thread")

EXTENSIONS = ("Lff_f", "Lff_b", "B_restart")


def test_extensions_default_to_off_and_validate():
    p = CMRParams()
    assert (p.Lff_f, p.Lff_b, p.B_restart) == (0.0, 0.0, 0.0)
    assert set(EXTENSIONS) <= set(frm.PARAM_NAMES)
    for kwargs, match in ((dict(Lff_f=-0.1), "Lff_f"), (dict(Lff_b=-1.0), "Lff_b"), (dict(B_restart=1.5), "B_restart")):
        with pytest.raises(ValueError, match=match):
            CMRParams(**kwargs)
        with pytest.raises(ValueError, match=match):
            frm.param_batch({k: [v, 0.0] for k, v in kwargs.items()})


def test_model_bounds_name_the_free_parameters():
    assert fitm.model_bounds("cmr") == fitm.DEFAULT_BOUNDS
    chain = fitm.model_bounds("cmr-chain")
    assert set(chain) - set(fitm.DEFAULT_BOUNDS) == {"Lff_f", "Lff_b"}
    restart = fitm.model_bounds("cmr-chain-restart")
    assert set(restart) - set(fitm.DEFAULT_BOUNDS) == set(EXTENSIONS) and len(restart) == 13
    # A copy: changing it leaves the registry alone.
    restart["T"] = (0.5, 0.6)
    assert fitm.MODELS["cmr-chain-restart"]["T"] == fitm.DEFAULT_BOUNDS["T"]
    with pytest.raises(ValueError, match="model"):
        fitm.model_bounds("tcm")


def test_chaining_raises_forward_neighbour_transitions():
    # Simulated lag-CRP(+1)-like statistic: the share of transitions to the next item.
    base = fitm.expand_params(fitm.PEERS_POOLED)
    chained = fitm.expand_params({**fitm.PEERS_POOLED, "Lff_f": 0.5})
    share = []
    for params in (base, chained):
        rec = frm.generate(params, 12, 2000, generator=5)[0].numpy()
        a, b = rec[:, :-1], rec[:, 1:]
        valid = (a >= 0) & (b >= 0)
        share.append(float(((b - a) == 1)[valid].mean()))
    assert share[1] > share[0] + 0.1, share


def test_restart_raises_recall_of_the_first_item_after_a_late_start():
    # After a first recall from the end of the list, returning to the start context makes
    # item 1 likelier among outputs 2-4.
    base = fitm.expand_params(fitm.PEERS_POOLED)
    restart = fitm.expand_params({**fitm.PEERS_POOLED, "B_restart": 0.4})
    frac = []
    for params in (base, restart):
        rec = frm.generate(params, 16, 4000, generator=9)[0].numpy()
        late = rec[:, 0] >= 12
        frac.append(float((rec[late, 1:4] == 0).any(axis=1).mean()))
    assert frac[1] > frac[0] + 0.05, frac


@pytest.mark.parametrize("name, grid", [("Lff_f", np.arange(0.0, 0.85, 0.05)),
                                        ("Lff_b", np.arange(0.0, 0.65, 0.05)),
                                        ("B_restart", np.arange(0.0, 0.65, 0.05))])
def test_likelihood_profile_peaks_near_the_true_extension(name, grid):
    # Data simulated with the extensions on: along each extension's axis (the others at
    # their true values) the likelihood peaks near the value that generated the data.
    truth = {**fitm.PEERS_POOLED, "Lff_f": 0.4, "Lff_b": 0.2, "B_restart": 0.3}
    table = frm.simulate(fitm.expand_params(truth), list_length=12, n_lists=400, seed=2)
    data = fitm.prepare_data(table)
    batch = {k: np.full(len(grid), v) for k, v in fitm.expand_params(truth).to_dict().items()}
    batch[name] = grid
    ll = fitm.log_likelihood(batch, data).numpy()
    best = grid[int(np.argmax(ll))]
    assert abs(best - truth[name]) <= 0.1, (best, ll.round(1))
    assert ll.max() - ll[0] > 10  # clearly better than the extension switched off


def test_pooled_init_uses_the_models_bounds():
    bounds = fitm.model_bounds("cmr-chain-restart")
    fits = {s: fitm.FitResult(params=fitm.expand_params({**fitm.PEERS_POOLED, "Lff_f": 0.1 * s, "P1": 12.0}),
                              logl=-100.0 * s, n=100, k=13, nfev=1, nit=1, success=True, seconds=0.0)
            for s in (1, 2)}
    pop = exp_fr._pooled_init(fits, 5, 0, bounds)
    assert pop.shape == (5, 13)
    names = list(bounds)
    lo = np.array([b[0] for b in bounds.values()])
    hi = np.array([b[1] for b in bounds.values()])
    assert ((pop >= lo) & (pop <= hi)).all()
    # The subject fits come first, in order of fit quality (worst first), clipped to bounds.
    assert pop[0, names.index("Lff_f")] == pytest.approx(0.2) and pop[1, names.index("Lff_f")] == pytest.approx(0.1)
    assert pop[0, names.index("P1")] == 10.0


@pytest.fixture(scope="module")
def extended():
    config = dataclasses.replace(exp_fr.QUICK, model="cmr-chain-restart", compare="cmr")
    return exp_fr.run(config, seed=0)


def test_experiment_fits_the_extended_model_and_the_comparison(extended):
    t, s = extended.tables, extended.scalars
    fits, other = t["fits"], t["fits_compare"]
    assert (fits["k"] == 13).all() and (other["k"] == 10).all()
    assert (fits["model"] == "cmr-chain-restart").all() and (other["model"] == "cmr").all()
    assert fits["subject"].tolist() == other["subject"].tolist() == [63, 64, 65]
    # The comparison model's fits leave the extensions off; the extended model's stay in bounds.
    assert (other[list(EXTENSIONS)] == 0).all().all()
    for name, (lo, hi) in fitm.model_bounds("cmr-chain-restart").items():
        assert fits[name].between(lo, hi).all(), name
    assert t["pooled"]["model"].iloc[0] == "cmr-chain-restart" and t["pooled"]["k"].iloc[0] == 13
    models = t["models"].set_index("model")
    assert list(models.index) == ["cmr-chain-restart", "cmr"]
    assert models.loc["cmr", "logl_total"] == pytest.approx(other["logl"].sum())
    assert s["logl_gain_over_compare"] == pytest.approx(fits["logl"].sum() - other["logl"].sum())
    assert s["aic_gain_over_compare"] == pytest.approx(2 * s["logl_gain_over_compare"] - 2 * 3 * 3)
    assert s["model"] == "cmr-chain-restart" and s["n_params"] == 13 and s["compare"] == "cmr"
    # The log-likelihood of each fit is that of its reported parameters.
    data = fitm.prepare_data(fitm.load_sample("peers_notask").query("subject == 63"))
    p = frm.CMRParams(**fits.iloc[0][list(frm.PARAM_NAMES)].astype(float).to_dict())
    assert float(fitm.log_likelihood(p, data)[0]) == pytest.approx(fits["logl"].iloc[0], abs=1e-9)


def test_comparison_curves_are_reported_but_not_judged(extended):
    t = extended.tables
    for name, n in (("spc", 16), ("pfr", 16), ("crp", 10)):
        assert set(t[name]["source"]) == {"observed", "simulated", "simulated (cmr)"}
        assert (t[name]["source"] == "simulated (cmr)").sum() == n
    # The claims read the claims' model only: the same claims without the comparison rows.
    own = dataclasses.replace(extended, tables={k: (v[v["source"] != "simulated (cmr)"] if "source" in v else v)
                                                for k, v in t.items()})
    assert [c.measured for c in exp_fr.claims(own)] == [c.measured for c in exp_fr.claims(extended)]
    models = t["models"].set_index("model")
    spc = t["spc"]
    both = spc[spc["source"].isin(["observed", "simulated (cmr)"])].replace({"simulated (cmr)": "simulated"})
    assert models.loc["cmr", "spc_inside"] == exp_fr._inside(both, "position")[0]
    figs = exp_fr.plot(extended)
    assert len(figs["free-recall"].axes) == 4


def test_full_profile_uses_the_semantic_model_with_the_localist_one_for_comparison():
    full = exp_fr.EXPERIMENT.config("full")
    assert full.model == "cmr-chain-restart-sem" and full.compare == "cmr-chain-restart" and full.nested_start
    # The comparison model is nested in the claims' model, so nested_start applies.
    assert set(fitm.model_bounds(full.compare)) < set(fitm.model_bounds(full.model))
    quick = exp_fr.EXPERIMENT.config("quick")
    assert quick.model == "cmr" and quick.compare is None and not quick.nested_start


@pytest.mark.parametrize("change, match", [
    ({"model": "tcm"}, "model"),
    ({"compare": "cmr-chain-restart", "model": "cmr-chain-restart"}, "compare"),
    ({"compare": "bogus"}, "compare"),
])
def test_bad_model_settings_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        exp_fr.run(dataclasses.replace(exp_fr.QUICK, **change))


def test_free_recall_checks_its_device_setting():
    import dataclasses

    import torch

    from kvmem.experiments import free_recall as exp

    with pytest.raises(ValueError, match="device"):
        exp._check_config(dataclasses.replace(exp.QUICK, device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            exp._check_config(dataclasses.replace(exp.QUICK, device="cuda"))
    exp._check_config(dataclasses.replace(exp.QUICK, device="cpu"))
