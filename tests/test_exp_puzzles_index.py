"""Issue 9 puzzles on the hippocampal index: silent-engrams, familiarity-without-recollection,
semantic-dementia-vs-amnesia, pattern-separation. Quick-profile claims, reproducibility, bad
settings, and each experiment's measurements recomputed by plain float64 loops."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kvmem.bio.index import HippocampalIndex
from kvmem.experiments import familiarity_without_recollection as fwr
from kvmem.experiments import pattern_separation as ps
from kvmem.experiments import semantic_dementia_vs_amnesia as sda
from kvmem.experiments import silent_engrams as se
from kvmem.experiments.base import Progress

pytestmark = pytest.mark.usefixtures("one_thread")

MODULES = {
    "silent-engrams": (se, ["silence_needs_competition", "values_remain", "rescue_memory_by_memory",
                            "recall_rises_with_beta", "rescue_needs_intact_values", "over_amplification_intrudes"],
                       {"silent_engrams"}),
    "familiarity-without-recollection": (fwr, ["butcher_on_the_bus", "context_restores_recollection",
                                               "classical_cannot_dissociate", "change_detection_without_identification",
                                               "detection_uses_keys_only", "classical_detection_needs_content"],
                                         {"familiarity_without_recollection"}),
    "semantic-dementia-vs-amnesia": (sda, ["semantic_dementia", "amnesia", "double_dissociation",
                                           "classical_damage_hits_both"], {"semantic_dementia_vs_amnesia"}),
    "pattern-separation": (ps, ["sparse_keys_separate", "sparse_keys_reduce_interference",
                                "attractor_completes_noisy_cues", "classical_attractor_merges_similar_keys"],
                           {"pattern_separation"}),
}


class Counter(Progress):
    def __init__(self):
        self.totals, self.done = [], 0

    def total(self, n):
        self.totals.append(n)

    def advance(self, n=1):
        self.done += n


@pytest.fixture(scope="module")
def quick():
    out = {}
    for name, (module, _, _) in MODULES.items():
        counter = Counter()
        out[name] = (module.run(module.QUICK, seed=0, progress=counter), counter)
    return out


@pytest.mark.parametrize("name", list(MODULES))
def test_quick_claims_pass_figures_and_progress(name, quick):
    module, claim_names, figures = MODULES[name]
    result, counter = quick[name]
    assert module.EXPERIMENT.name == name
    claims = module.claims(result)
    assert [c.name for c in claims] == claim_names
    assert all(c.passed for c in claims), [c.to_dict() for c in claims if not c.passed]
    assert len(counter.totals) == 1 and counter.done == counter.totals[0]
    assert result.config == dataclasses.asdict(module.QUICK)
    import matplotlib.pyplot as plt

    figs = module.plot(result)
    assert set(figs) == figures
    for fig in figs.values():
        plt.close(fig)


# Small configs: cheap enough to run twice and to recompute by loops.
TINY = {
    "silent-engrams": dataclasses.replace(se.QUICK, input_dim=20, value_dim=8, num_units=200, active=10, groups=3,
                                          group_size=3, trials=2, strengths=(1.0, 0.4), betas=(1.0, 2.5)),
    "familiarity-without-recollection": dataclasses.replace(
        fwr.QUICK, face_dim=20, context_dim=20, identity_dim=20, people=6, people_high=12, num_units=200, active=10,
        trials=3, items=3, item_dim=6, displays=4, value_noises=(0.0, 2.0), context_levels=(0.0, 1.0)),
    "semantic-dementia-vs-amnesia": dataclasses.replace(sda.QUICK, input_dim=20, value_dim=10, memories=8,
                                                        num_units=200, active=10, trials=3),
    "pattern-separation": dataclasses.replace(ps.QUICK, input_dim=20, value_dim=8, num_units=200, active=10,
                                              sparsities=(5, 20), pairs=10, groups=3, group_size=3, trials=2,
                                              rhos=(0.0, 0.8), cue_noises=(0.0, 1.0)),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_same_seed_same_result_other_seed_differs(name):
    module = MODULES[name][0]
    a, b, c = (module.run(TINY[name], seed=s) for s in (4, 4, 5))
    for key, table in a.tables.items():
        assert table.equals(b.tables[key]), key
    assert a.scalars == b.scalars
    assert any(not table.equals(c.tables[key]) for key, table in a.tables.items())


@pytest.mark.parametrize(
    "module, change, match",
    [
        (se, {"trials": 1}, "trials"),
        (se, {"disrupted_strength": 1.0}, "disrupted_strength"),
        (se, {"strengths": (1.0, 0.5)}, "strengths"),
        (se, {"betas": (1.0, 2.0)}, "betas"),
        (se, {"spread": -0.1}, "spread"),
        (se, {"active": 5000}, "active"),
        (fwr, {"context_levels": (0.5, 1.0)}, "context_levels"),
        (fwr, {"false_alarm": 0.0}, "false_alarm"),
        (fwr, {"value_noises": (1.0,)}, "value_noises"),
        (fwr, {"people": True}, "people"),
        (sda, {"value_noises": (1.0, -2.0)}, "value_noises"),
        (sda, {"memories": 1}, "memories"),
        (sda, {"probe_noise": float("nan")}, "probe_noise"),
        (ps, {"sparsities": (10, 5000)}, "sparsities"),
        (ps, {"rhos": (1.0,)}, "rhos"),
        (ps, {"completion_power": 1}, "completion_power"),
        (ps, {"cue_noises": (0.5,)}, "cue_noises"),
    ],
)
def test_bad_settings_are_rejected_by_name(module, change, match):
    with pytest.raises(ValueError, match=match):
        module.run(dataclasses.replace(module.QUICK, **change))


@pytest.mark.parametrize("module", [se, fwr, sda, ps])
def test_config_type_checked_and_overrides_parse(module):
    with pytest.raises(TypeError, match="config"):
        module.validate({"trials": 3})
    cfg = module.EXPERIMENT.config("quick", {"trials": "3", "seeds": "2"})
    assert cfg.trials == 3 and cfg.seeds == 2
    module.validate(module.EXPERIMENT.config("full"))


def _auc_loop(pos, neg):
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def test_auc_against_a_loop_and_by_hand():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 6, (37,), generator=gen).double()
    neg = torch.randint(0, 5, (23,), generator=gen).double()
    ref = _auc_loop(pos.tolist(), neg.tolist())
    for module in (fwr, sda):
        assert module.auc(pos, neg) == pytest.approx(ref, abs=1e-12)
        # 3 > 1, 3 > 2, 2 > 1 and one tie (2, 2): (3 + 0.5) / 4.
        assert module.auc(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 2.0])) == 0.875
        assert module.auc(torch.zeros(5), torch.zeros(3)) == 0.5


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


def _nearest(read, candidates):
    scores = [_cos(read, c) for c in candidates]
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


def _overlap_loop(code, keys, gains, active):
    return [gains[n] * float(np.dot(code, keys[n])) / active for n in range(len(keys))]


def test_silent_engrams_recall_recomputed_by_loops():
    cfg = TINY["silent-engrams"]
    result = se.run(cfg, seed=3)
    gen = torch.Generator().manual_seed(3)
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    x, v, cues = se.make_memories(cfg, gen, crowded=True)
    index = HippocampalIndex(cfg.num_units, cfg.active, seed=index_seed)
    index.write(x, v)
    codes, keys = index.encode(cues).double().numpy(), index.keys.double().numpy()
    n, m = cfg.groups * cfg.group_size, cfg.group_size
    disrupted = [g * m for g in range(cfg.groups)]
    for g in cfg.strengths:
        gains = [g if i in disrupted else 1.0 for i in range(n)]
        hits = {"disrupted": [], "intact": []}
        for t in range(cfg.trials):
            for i in range(n):
                scores = _overlap_loop(codes[t, i], keys[t], gains, cfg.active)
                best = max(range(n), key=lambda j: (scores[j], -j))  # hard max, ties to the lowest index
                ok = _nearest(v[t, best].tolist(), v[t].tolist()) == i
                hits["disrupted" if i in disrupted else "intact"].append(ok)
        row = result.tables["strength"]
        row = row[(row["seed"] == 0) & (row["condition"] == "crowded") & (row["strength"] == g)].iloc[0]
        assert row["disrupted_recall"] == pytest.approx(np.mean(hits["disrupted"]), abs=1e-12)
        assert row["intact_recall"] == pytest.approx(np.mean(hits["intact"]), abs=1e-12)
    # The summary is the mean over seeds, with a symmetric t interval around it.
    s = result.tables["strength_summary"]
    raw = result.tables["strength"]
    for _, r in s.iterrows():
        vals = raw[(raw["condition"] == r["condition"]) & (raw["strength"] == r["strength"])]["disrupted_recall"]
        assert r["disrupted_recall"] == pytest.approx(vals.mean())
        assert r["disrupted_recall_hi"] - r["disrupted_recall"] == pytest.approx(
            r["disrupted_recall"] - r["disrupted_recall_lo"])


def test_butcher_on_the_bus_recomputed_by_loops():
    cfg = TINY["familiarity-without-recollection"]
    result = fwr.run(cfg, seed=2)
    gen = torch.Generator().manual_seed(2)
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    t, p = cfg.trials, cfg.people

    def pm(*shape):
        return torch.randint(0, 2, shape, generator=gen, dtype=torch.float32) * 2 - 1

    face, context, ident = pm(t, p, cfg.face_dim), pm(t, p, cfg.context_dim), pm(t, p, cfg.identity_dim)
    new_faces = pm(t, p, cfg.face_dim)
    bus = pm(t, 1, cfg.context_dim).expand(t, p, cfg.context_dim)
    keep = torch.rand(t, p, cfg.context_dim, generator=gen)
    index = HippocampalIndex(cfg.num_units, cfg.active, seed=index_seed)
    index.write(torch.cat([face, context], -1), ident)
    keys = index.keys.double().numpy()
    for r in cfg.context_levels:
        ctx = torch.where(keep < r, context, bus)
        old = index.encode(torch.cat([face, ctx], -1)).double().numpy()
        lure = index.encode(torch.cat([new_faces, ctx], -1)).double().numpy()
        fam_old = [[max(_overlap_loop(old[a, i], keys[a], [1.0] * p, cfg.active)) for i in range(p)] for a in range(t)]
        fam_lure = [max(_overlap_loop(lure[a, i], keys[a], [1.0] * p, cfg.active)) for a in range(t) for i in range(p)]
        crit = float(np.quantile(np.array(fam_lure), 1 - cfg.false_alarm))
        familiar, recollected = [], []
        for a in range(t):
            for i in range(p):
                scores = _overlap_loop(old[a, i], keys[a], [1.0] * p, cfg.active)
                best = max(range(p), key=lambda j: (scores[j], -j))
                familiar.append(fam_old[a][i] > crit)
                recollected.append(fam_old[a][i] >= cfg.theta and _nearest(ident[a, best].tolist(), ident[a].tolist()) == i)
        row = result.tables["bus"]
        row = row[(row["seed"] == 0) & (row["people"] == p) & (row["model"] == "key-value") & (row["context"] == r)].iloc[0]
        assert row["familiar"] == pytest.approx(np.mean(familiar), abs=1e-12)
        assert row["recollected"] == pytest.approx(np.mean(recollected), abs=1e-12)
        both = np.mean([f and not c for f, c in zip(familiar, recollected)])
        assert row["familiar_only"] == pytest.approx(both, abs=1e-12)
        assert row["recognition_auc"] == pytest.approx(_auc_loop(sum(fam_old, []), fam_lure), abs=1e-9)


def test_semantic_naming_and_lesioned_recognition_recomputed_by_loops():
    cfg = TINY["semantic-dementia-vs-amnesia"]
    result = sda.run(cfg, seed=1)
    gen = torch.Generator().manual_seed(1)
    t, n, d, dv = cfg.trials, cfg.memories, cfg.input_dim, cfg.value_dim
    x = torch.randn(t, n, d, generator=gen)
    v = torch.randn(t, n, dv, generator=gen)
    torch.randn(t, n, d, generator=gen)  # lures
    torch.randn(t, n, d, generator=gen)  # cue noise
    probes = v + cfg.probe_noise * torch.randn(t, n, dv, generator=gen)
    order = torch.rand(t, n, generator=gen).argsort(-1).argsort(-1)
    table = result.tables["damage"]
    first = table[table["seed"] == 0]

    # Semantic naming, intact values: nearest stored value to each probe.
    named = [_nearest(probes[a, i].tolist(), v[a].tolist()) == i for a in range(t) for i in range(n)]
    kv = first[(first["model"] == "key-value") & (first["damage"] == "keys lesioned")]
    assert len(kv) == len(cfg.lesion_fractions)
    for value in kv["semantic"]:
        assert value == pytest.approx(np.mean(named), abs=1e-12)
    # Classical, half the traces removed: [0, probe] against the traces [x, v] (removed ones zero).
    half = round(0.5 * n)
    hits = []
    for a in range(t):
        traces = [np.concatenate([x[a, j].numpy(), v[a, j].numpy()]) * (0.0 if order[a, j] < half else 1.0)
                  for j in range(n)]
        for i in range(n):
            q = np.concatenate([np.zeros(d), probes[a, i].numpy()])
            scores = [_cos(q, tr) for tr in traces]
            best = max(range(n), key=lambda j: (scores[j], -j))
            hits.append(best == i and scores[best] > 0)
    cl = first[(first["model"] == "classical") & (first["damage"] == "traces removed") & (first["level"] == 0.5)]
    assert cl["semantic"].iloc[0] == pytest.approx(np.mean(hits), abs=1e-12)
    # Every key lesioned: every familiarity is 0, so old and new cannot be told apart (AUC exactly 0.5).
    full = first[(first["model"] == "key-value") & (first["damage"] == "keys lesioned") & (first["level"] == 1.0)]
    assert full["recognition_auc"].iloc[0] == 0.5


def test_pattern_separation_measurements_recomputed_by_loops():
    cfg = TINY["pattern-separation"]
    result = ps.run(cfg, seed=6)
    sep = result.tables["separation"]
    np.testing.assert_allclose(sep["key_above_chance"], (sep["key_overlap"] - sep["sparsity"]) / (1 - sep["sparsity"]))
    gen = torch.Generator().manual_seed(6)
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    torch.randint(0, 2**31 - 1, (1,), generator=gen)  # the pairs' seed
    n, m = cfg.groups * cfg.group_size, cfg.group_size
    x = ps.grouped_inputs(cfg, cfg.rhos[0], gen)
    v = torch.randn(cfg.trials, n, cfg.value_dim, generator=gen)
    index = HippocampalIndex(cfg.num_units, cfg.active, seed=index_seed)
    index.write(x, v)
    keys = index.keys.double().numpy()
    dense_hits, sparse_hits, within = [], [], []
    for a in range(cfg.trials):
        xs, vs = x[a].double().numpy(), v[a].double().numpy()
        for i in range(n):
            # Hebbian read: sum_mu (k_i . k_mu) v_mu, with unit raw inputs and with sparse codes / k.
            read = sum(_cos(xs[i], xs[mu]) * vs[mu] for mu in range(n))
            dense_hits.append(_nearest(read, vs) == i)
            read = sum(float(np.dot(keys[a, i], keys[a, mu])) / cfg.active * vs[mu] for mu in range(n))
            sparse_hits.append(_nearest(read, vs) == i)
            for j in range(n):
                if i != j and i // m == j // m:
                    within.append(_cos(xs[i], xs[j]))
    row = result.tables["interference"]
    row = row[(row["seed"] == 0) & (row["rho"] == cfg.rhos[0])].iloc[0]
    assert row["dense"] == pytest.approx(np.mean(dense_hits), abs=1e-12)
    assert row["sparse"] == pytest.approx(np.mean(sparse_hits), abs=1e-12)
    assert row["input_overlap"] == pytest.approx(np.mean(within), abs=1e-5)
