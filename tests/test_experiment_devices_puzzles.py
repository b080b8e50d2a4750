"""The ``device`` setting of six experiments: repulsion, metamemory,
familiarity-without-recollection, semantic-dementia-vs-amnesia, pattern-separation and
errors-are-memorable.

Each experiment draws its random numbers on the CPU from a seeded generator and moves them
to ``config.device``, so a seed gives the same draws everywhere (the setting and its
errors are checked for every experiment in ``test_experiment_devices.py``). On a machine
with CUDA these tests run each quick profile on the CPU and on the GPU and compare the
results (the GPU run is the CPU run's independent reference: same draws, same formulas,
different kernels and summation orders).
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.experiments import (
    errors_are_memorable,
    familiarity_without_recollection,
    metamemory,
    pattern_separation,
    repulsion,
    semantic_dementia_vs_amnesia,
)

MODULES = [repulsion, metamemory, familiarity_without_recollection, semantic_dementia_vs_amnesia,
           pattern_separation, errors_are_memorable]
IDS = [m.__name__.rsplit(".", 1)[-1] for m in MODULES]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# -- what may differ between devices, and by how much ----------------------------------------
#
# Continuous measurements (cosines, norms, Luce choice probabilities, prediction errors, and
# their means and confidence bounds) must agree to a relative 1e-3. The absolute floor
# CONT_ATOL is for quantities that are exactly zero in exact arithmetic (the cosine of
# orthogonal routes, the change of values never written), whose float32 rounding noise
# (about 1e-7) has no meaningful relative size; every such quantity here is bounded by 1.
CONT_RTOL, CONT_ATOL = 1e-3, 1e-5
# Scalars the experiments round to 4 decimals: a difference of 1e-9 can round to values one
# unit (1e-4) apart, so the floor is that unit.
ROUNDED_ATOL = 1e-4
# Decision counts: k-WTA index codes (a top-k over unit drives), hard-max and argmax reads,
# thresholds and quantile criteria, and the rank statistics (AUC, gamma, Spearman) built on
# them. The GPU sums in another order, so an entry within a rounding error of a tie (the k-th
# and (k+1)-th unit drive, two nearly equal cosines, the integer-valued drives of the
# attractor clean-up) can go the other way and flip one decision; each flip moves a fraction
# over N decisions by 1/N. The 95% bounds of the quick profiles are t bounds over 2 seeds
# (t_0.975(1) / sqrt(2) = 9.0 times the spread), so a shift of 0.01 in one seed's fraction
# moves a bound by up to about 0.06. These columns are held to DECISION_ATOL per row and
# DECISION_MEAN_ATOL for the table mean, and the claims (the experiment's conclusions) must
# pass or fail alike. Measured on an H200 (torch 2.11): the only flips were in
# pattern-separation's attractor clean-up with n = 1 (recall 0.015, its bound 0.074 apart);
# AUCs moved by <= 3.5e-5, every other decision column agreed to 1e-15.
DECISION_ATOL, DECISION_MEAN_ATOL = 0.1, 0.02
# Rounding residuals (max |W - W0 - sum x^T e|, relative |v| - eta |e|): measures of float32
# rounding themselves, not comparable across devices; both must stay below the claims' 1e-5.
RESIDUAL_MAX = 1e-5

# Per experiment: columns / scalar names (fnmatch patterns) that are decision counts or
# rounding residuals; everything else numeric is continuous.
DECISIONS = {
    "repulsion": ["readout_accuracy", "spearman_*"],
    "metamemory": ["fok", "key_won", "recalled", "recognised", "recall", "auc", "tot_*", "recog_*", "gamma",
                   "know_*", "criterion", "*/*"],
    "familiarity_without_recollection": ["familiar*", "recollected*", "recognition_auc*", "detection_auc*",
                                         "identification*"],
    "semantic_dementia_vs_amnesia": ["recognition_auc*", "recall*", "semantic*"],
    "pattern_separation": ["key_overlap*", "key_above_chance*", "sparse*", "dense*", "expanded*", "overlap_*",
                           "recall_*", "exact_*"],
    "errors_are_memorable": ["recalled_*", "recall/*"],
}
RESIDUALS = {"errors_are_memorable": ["weight_error*", "value_vs_error*"]}


def _kind(module_name: str, name: str) -> str:
    from fnmatch import fnmatchcase

    if any(fnmatchcase(name, p) for p in RESIDUALS.get(module_name, [])):
        return "residual"
    if any(fnmatchcase(name, p) for p in DECISIONS.get(module_name, [])):
        return "decision"
    return "continuous"


def compare_results(module_name: str, cpu, gpu) -> list[str]:
    """Every disagreement between a CPU and a GPU result beyond the tolerances above.

    Args:
        module_name: the experiment module's short name (a key of DECISIONS).
        cpu, gpu: ``Result`` objects (or anything with ``tables`` and ``scalars``).

    Returns:
        human-readable problems; empty when the results agree.
    """
    problems = []
    if sorted(cpu.tables) != sorted(gpu.tables):
        return [f"tables {sorted(cpu.tables)} vs {sorted(gpu.tables)}"]
    for name, a in cpu.tables.items():
        b = gpu.tables[name]
        if list(a.columns) != list(b.columns) or a.shape != b.shape:
            problems.append(f"{name}: columns/shape {list(a.columns)} {a.shape} vs {list(b.columns)} {b.shape}")
            continue
        for col in a.columns:
            if not pd.api.types.is_numeric_dtype(a[col]):
                if not a[col].equals(b[col]):
                    problems.append(f"{name}.{col}: labels differ")
                continue
            x, y = a[col].to_numpy(np.float64), b[col].to_numpy(np.float64)
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                problems.append(f"{name}.{col}: NaN in different rows")
                continue
            ok = ~np.isnan(x)
            x, y = x[ok], y[ok]
            kind = _kind(module_name, col)
            if kind == "residual":
                if max(np.abs(x).max(initial=0), np.abs(y).max(initial=0)) > RESIDUAL_MAX:
                    problems.append(f"{name}.{col}: residual above {RESIDUAL_MAX}")
            elif kind == "decision":
                worst = np.abs(x - y).max(initial=0)
                mean_gap = abs(x.mean() - y.mean()) if x.size else 0.0
                if worst > DECISION_ATOL or mean_gap > DECISION_MEAN_ATOL:
                    problems.append(f"{name}.{col}: decisions differ (max {worst:.3g}, mean {mean_gap:.3g})")
            elif not np.allclose(y, x, rtol=CONT_RTOL, atol=CONT_ATOL):
                i = int(np.argmax(np.abs(x - y) - CONT_RTOL * np.abs(x)))
                problems.append(f"{name}.{col}: {x[i]!r} (cpu) vs {y[i]!r} (gpu)")
    if sorted(cpu.scalars) != sorted(gpu.scalars):
        return problems + [f"scalar names {sorted(cpu.scalars)} vs {sorted(gpu.scalars)}"]
    for key, v in cpu.scalars.items():
        w = gpu.scalars[key]
        if isinstance(v, str) or isinstance(w, str):
            if v != w:
                problems.append(f"scalar {key}: {v!r} vs {w!r}")
            continue
        v, w = float(v), float(w)
        if math.isnan(v) or math.isnan(w):
            if not (math.isnan(v) and math.isnan(w)):
                problems.append(f"scalar {key}: {v} vs {w}")
            continue
        kind = _kind(module_name, key)
        if kind == "residual":
            if max(abs(v), abs(w)) > RESIDUAL_MAX:
                problems.append(f"scalar {key}: residual above {RESIDUAL_MAX}")
        elif kind == "decision":
            if abs(v - w) > DECISION_ATOL:
                problems.append(f"scalar {key}: {v} vs {w}")
        elif not math.isclose(v, w, rel_tol=CONT_RTOL, abs_tol=ROUNDED_ATOL):
            problems.append(f"scalar {key}: {v} vs {w}")
    return problems


def test_explicit_cpu_matches_default():
    # The cheapest of the six: an explicit "cpu" is the default path, bit for bit.
    exp = semantic_dementia_vs_amnesia.EXPERIMENT
    quick = exp.profiles["quick"]
    a = exp.run(quick, seed=3)
    b = exp.run(dataclasses.replace(quick, device=torch.device("cpu")), seed=3)
    for name, table in a.tables.items():
        pd.testing.assert_frame_equal(table, b.tables[name], check_exact=True)
    assert a.config["device"] == "cpu"


def test_compare_results_catches_a_change():
    # The comparison must fail on a real disagreement, continuous or decision.
    exp = errors_are_memorable.EXPERIMENT
    a = exp.run(dataclasses.replace(exp.profiles["quick"], replicates=2, events=10), seed=1)
    assert compare_results("errors_are_memorable", a, a) == []
    b = dataclasses.replace(a, tables={k: v.copy() for k, v in a.tables.items()}, scalars=dict(a.scalars))
    b.tables["events"].loc[0, "value_norm"] *= 1.01
    assert any("value_norm" in p for p in compare_results("errors_are_memorable", a, b))
    c = dataclasses.replace(a, tables={k: v.copy() for k, v in a.tables.items()}, scalars=dict(a.scalars))
    c.tables["summary"]["recalled_dual"] += 0.5
    assert any("recalled_dual" in p for p in compare_results("errors_are_memorable", a, c))


# -- CPU against GPU -----------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_cuda_matches_cpu(module):
    exp = module.EXPERIMENT
    quick = exp.profiles["quick"]
    cpu = exp.run(quick, seed=0)
    gpu = exp.run(dataclasses.replace(quick, device="cuda"), seed=0)
    assert gpu.config["device"] == "cuda"
    assert [(c.name, c.passed) for c in exp.claims(cpu)] == [(c.name, c.passed) for c in exp.claims(gpu)]
    assert compare_results(module.__name__.rsplit(".", 1)[-1], cpu, gpu) == []
