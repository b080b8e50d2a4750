"""Issue 9 puzzles: accessibility-vs-precision, repulsion, metamemory, errors-are-memorable.

Each experiment: registration, the quick profile's claims, its figures, bad settings, and at
least one independent numeric check of a measured quantity (a plain loop, float64, or a
separate optimiser).
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import optimize, special

from kvmem.experiments import accessibility_vs_precision as avp
from kvmem.experiments import errors_are_memorable as err
from kvmem.experiments import metamemory as meta
from kvmem.experiments import repulsion as rep
from kvmem.experiments.base import REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

MODULES = {"accessibility-vs-precision": avp, "repulsion": rep, "metamemory": meta, "errors-are-memorable": err}


@pytest.fixture(scope="module")
def quick():
    return {name: mod.run(mod.EXPERIMENT.config("quick"), seed=0) for name, mod in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_registered_quick_claims_pass_and_figures(name, quick):
    mod = MODULES[name]
    assert REGISTRY[name] is mod.EXPERIMENT
    result = quick[name]
    assert result.config == dataclasses.asdict(mod.EXPERIMENT.config("quick"))
    claims = mod.claims(result)
    assert len(claims) >= 4
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    import matplotlib.pyplot as plt

    figs = mod.plot(result)
    assert figs and all(hasattr(f, "savefig") for f in figs.values())
    for f in figs.values():
        plt.close(f)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("accessibility-vs-precision", {"interference": (4, 8)}),
        ("accessibility-vs-precision", {"delays": (1.0,)}),
        ("repulsion", {"input_dim": 10}),
        ("repulsion", {"overlap": 1.0}),
        ("metamemory", {"lexicon": 150}),
        ("metamemory", {"active": 2000}),
        ("errors-are-memorable", {"events": 42}),
        ("errors-are-memorable", {"lr": 2.5}),
    ],
)
def test_bad_settings_raise_value_error_naming_the_setting(name, overrides):
    mod = MODULES[name]
    config = dataclasses.replace(mod.EXPERIMENT.config("quick"), **overrides)
    with pytest.raises(ValueError, match=next(iter(overrides))):
        mod.run(config, seed=0)


def test_same_seed_same_result():
    config = dataclasses.replace(err.EXPERIMENT.config("quick"), replicates=2, events=10)
    a, b = err.run(config, seed=5), err.run(config, seed=5)
    assert a.tables["events"].equals(b.tables["events"])
    config = dataclasses.replace(avp.EXPERIMENT.config("quick"), memories=4, replicates=2)
    assert avp.run(config, seed=2).tables["fits"].equals(avp.run(config, seed=2).tables["fits"])


# -- accessibility-vs-precision ---------------------------------------------------------------------
def _mixture_nll(params, e):
    """Negative log-likelihood of uniform + von Mises(0, kappa), written with the plain densities."""
    g, kappa = params
    vm = np.exp(kappa * np.cos(e)) / (2 * math.pi * special.i0(kappa))
    return -np.log(g / (2 * math.pi) + (1 - g) * vm).sum()


def test_fit_mixture_matches_direct_maximum_likelihood():
    rng = np.random.default_rng(3)
    n = 3000
    e = np.where(rng.random(n) < 0.35, rng.uniform(-np.pi, np.pi, n), rng.vonmises(0.0, 12.0, n))
    fit = avp.fit_mixture(e)
    best = optimize.minimize(_mixture_nll, x0=[0.5, 5.0], args=(e,), method="L-BFGS-B",
                             bounds=[(1e-6, 1 - 1e-6), (1e-3, 500.0)])
    assert abs(fit["p_recall"] - (1 - best.x[0])) < 2e-3
    assert abs(fit["kappa"] - best.x[1]) / best.x[1] < 1e-2
    assert fit["loglik"] >= -best.fun - 1e-6
    # Generating parameters recovered (3000 draws: a few percent).
    assert abs(fit["p_recall"] - 0.65) < 0.04 and abs(fit["kappa"] - 12.0) < 1.5


def test_circular_sd_closed_form():
    # sqrt(-2 ln A(kappa)) against the sample circular s.d. of von Mises draws.
    draws = np.random.default_rng(0).vonmises(0.0, 8.0, 200_000)
    r = abs(np.exp(1j * draws).mean())
    assert abs(avp.circular_sd_deg(8.0) - math.degrees(math.sqrt(-2 * math.log(r)))) < 0.1


def test_accessibility_tables_consistent(quick):
    result = quick["accessibility-vs-precision"]
    cfg = result.config
    fits = result.tables["fits"]
    n_cond = len(cfg["delays"]) + len(cfg["interference"])
    assert len(fits) == cfg["replicates"] * n_cond * 2
    assert (fits["n_errors"] == cfg["memories"] * cfg["n_targets"]).all()
    # The summary means are plain means over replicates.
    for (sweep, level, model), part in fits.groupby(["sweep", "level", "model"]):
        row = result.tables["summary"].query("sweep == @sweep and level == @level and model == @model").iloc[0]
        assert row["p_recall"] == pytest.approx(sum(part["p_recall"]) / len(part), abs=1e-12)


def test_key_value_read_is_the_softmax_of_cosines_plain_loop():
    gen = torch.Generator().manual_seed(0)
    config = dataclasses.replace(avp.EXPERIMENT.config("quick"), memories=1, key_dim=8, n_targets=3, beta=5.0)
    out = avp._condition(config, 5, 1.0, gen)
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(1, 5, 8, generator=gen)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    theta = torch.rand(1, 5, generator=gen) * (2 * math.pi)
    stored = theta + math.radians(config.encoding_noise_deg) * torch.randn(1, 5, generator=gen)
    cues = keys[:, :3] + config.drift * 1.0 * torch.randn(1, 3, 8, generator=gen) / math.sqrt(8)
    k, q, s = keys[0].double(), cues[0].double(), stored[0].double()
    for i in range(3):
        cos = [float(q[i] @ k[j] / (q[i].norm() * k[j].norm())) for j in range(5)]
        w = [math.exp(config.beta * c) for c in cos]
        kv = (sum(w[j] * math.cos(s[j]) for j in range(5)) / sum(w), sum(w[j] * math.sin(s[j]) for j in range(5)) / sum(w))
        hebb = (sum(float(q[i] @ k[j]) * math.cos(s[j]) for j in range(5)), sum(float(q[i] @ k[j]) * math.sin(s[j]) for j in range(5)))
        for model, (c, sn) in (("key-value", kv), ("classical", hebb)):
            expected = math.remainder(math.atan2(sn, c) - float(theta[0, i]), 2 * math.pi)
            assert out[model]["errors"][0, i] == pytest.approx(expected, abs=1e-4)


# -- repulsion -----------------------------------------------------------------------------------------
def test_routes_geometry_plain_loop():
    x = rep.routes(2, 4, 12, 0.6, torch.Generator().manual_seed(1)).double()
    for t in range(2):
        for i in range(8):
            assert float(x[t, i].norm()) == pytest.approx(1.0, abs=1e-6)
            for j in range(i + 1, 8):
                expected = 0.6 if i // 2 == j // 2 else 0.0
                assert float(x[t, i] @ x[t, j]) == pytest.approx(expected, abs=1e-6)


def test_pair_cosines_plain_loop():
    z = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pair, unrel = rep._pair_cos(z)
    for t in range(3):
        cos = lambda a, b: float(z[t, a] @ z[t, b] / (z[t, a].norm() * z[t, b].norm()))  # noqa: E731
        for p in range(3):
            assert float(pair[t, p]) == pytest.approx(cos(2 * p, 2 * p + 1), abs=1e-12)
        others = [cos(a, b) for a in range(6) for b in range(6) if a // 2 != b // 2]
        assert float(unrel[t]) == pytest.approx(sum(others) / len(others), abs=1e-12)


def _ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def test_repulsion_spearman_recomputed_with_plain_ranks(quick):
    result = quick["repulsion"]
    learn = result.tables["learning"]
    learn = learn[learn["phase"] == rep.PHASES[0]]
    a = _ranks(list(learn["input_pair_cos"] - learn["key_pair_cos"]))
    b = _ranks(list(learn["accuracy"]))
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    den = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    assert result.scalars["spearman_repulsion_accuracy/learning"] == pytest.approx(num / den, abs=1e-4)
    # Identity initialisation: keys start with exactly the input similarity.
    start = learn[learn["step"] == 0]
    assert np.allclose(start["key_pair_cos"], start["input_pair_cos"], atol=1e-6)


# -- metamemory --------------------------------------------------------------------------------------
def test_gamma_and_auc_plain_loops():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 6, 60).astype(float)  # many ties, as FOK scores have
    y = rng.random(60) < 0.4
    c = d = 0
    wins = 0.0
    for i in range(60):
        for j in range(60):
            if y[i] and not y[j]:
                c += x[i] > x[j]
                d += x[i] < x[j]
                wins += 1.0 if x[i] > x[j] else 0.5 if x[i] == x[j] else 0.0
    assert meta.goodman_kruskal_gamma(x, y) == pytest.approx((c - d) / (c + d), abs=1e-12)
    assert meta.auc(x[y], x[~y]) == pytest.approx(wins / (y.sum() * (~y).sum()), abs=1e-12)
    with pytest.raises(ValueError, match="y"):
        meta.goodman_kruskal_gamma([1.0, 2.0], [1])


def test_metamemory_measures_recomputed_plain(quick):
    result = quick["metamemory"]
    trials = result.tables["trials"]
    parts = result.tables["participants"]
    kv = trials[(trials["model"] == "key-value") & (trials["phase"] == "intact")]
    crit = float(np.quantile(kv[~kv["studied"]]["fok"], 0.95))
    row = parts[(parts["model"] == "key-value") & (parts["phase"] == "intact") & (parts["participant"] == 0)].iloc[0]
    mine = kv[kv["participant"] == 0]
    studied = [r for r in mine.itertuples() if r.studied]
    failed = [r for r in studied if not r.recalled]
    tot = [r for r in failed if r.fok >= crit]
    assert row["recall"] == pytest.approx(sum(r.recalled for r in studied) / len(studied), abs=1e-12)
    assert row["tot_share"] == pytest.approx(len(tot) / len(failed), abs=1e-12)
    assert row["tot_key_won"] == pytest.approx(sum(r.key_won for r in tot) / len(tot), abs=1e-12)
    # FOK never reads a value: destroying every value changes no FOK at all.
    wrecked = trials[(trials["model"] == "key-value") & (trials["phase"] == "values destroyed")]
    assert np.array_equal(wrecked["fok"].to_numpy(), kv["fok"].to_numpy())
    ops = meta.operation_counts(meta.EXPERIMENT.config("quick"))
    c = meta.EXPERIMENT.config("quick")
    assert ops["fok"] == c.index_units * c.input_dim + c.n_studied * c.index_units
    assert ops["recall"] == ops["fok"] + c.n_studied * c.answer_dim + c.lexicon * c.answer_dim


# -- errors-are-memorable -----------------------------------------------------------------------------
def test_values_are_errors_plain_float64_sgd(quick):
    result = quick["errors-are-memorable"]
    config = err.EXPERIMENT.config("quick")
    data = err.study_list(config, err.replicate_generator(0, 0))
    w = data["rule"].double().clone()
    x, y = data["inputs"].double(), data["outcomes"].double()
    values = []
    for n in range(config.events):
        e = config.lr * (y[n] - x[n] @ w)  # -eta dL/dy for L = |y - x W|^2 / 2
        values.append(e)
        w = w + torch.outer(x[n], e)
    v = torch.stack(values)
    events = result.tables["events"]
    mine = events[events["replicate"] == 0].sort_values("event")
    assert np.allclose(mine["value_norm"].to_numpy(), v.norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)
    assert np.allclose(mine["surprise"].to_numpy(), data["surprise"].numpy())
    # Recall by a plain loop over the pairs: r = sum_m (x_n . x_m) v_m, then the best cosine.
    for n in range(config.events):
        r = sum(float(x[n] @ x[m]) * v[m] for m in range(config.events))
        cos = [float(r @ v[m] / (r.norm() * v[m].norm())) for m in range(config.events)]
        assert bool(mine["recalled_dual"].iloc[n]) == (int(np.argmax(cos)) == n)
