"""The core experiments on CUDA match the CPU (the setting and its errors: ``test_experiment_devices.py``).

Covered: retrieval-basics, capacity, separation-robustness, fig2-key-value-optimization,
fig3-forgetting-reactivation, learned-vs-fixed-keys and associative-retrieval-capacity.

Every experiment draws its random numbers on the CPU and moves the tensors to the device, so
the CPU and CUDA runs of one seed see the same draws and differ only by floating-point
rounding. The CUDA comparison is skipped on machines without CUDA.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.experiments import (
    associative_retrieval_capacity,
    capacity,
    fig2_key_value_optimization,
    fig3_forgetting_reactivation,
    learned_vs_fixed_keys,
    retrieval_basics,
    separation_robustness,
)

MODULES = [
    retrieval_basics,
    capacity,
    separation_robustness,
    fig2_key_value_optimization,
    fig3_forgetting_reactivation,
    learned_vs_fixed_keys,
    associative_retrieval_capacity,
]
IDS = [m.__name__.rsplit(".", 1)[-1] for m in MODULES]

#: Relative tolerance of continuous results between devices (float32 rounding, summed in a
#: different order on the GPU, stays far below it).
RTOL = 1e-3

# Outputs decided by a sign, an argmax / argmin or a threshold (a rounding tie can flip one
# decision between devices and move a count by a whole unit): these are not compared number
# by number; their claims must agree instead. Patterns are matched against "table.column"
# (and "scalars.KEY").
DISCRETE = {
    # exact recall: the sign of every retrieved entry must be right.
    "retrieval_basics": [r"retrieval\.accuracy"],
    # every capacity measure decodes states by sign and P* comes from bisection on them;
    # the continuous reference (theory_bit_error) is exact and still compared.
    "capacity": [r"curves\.(bit_error|overlap|exact|success|independent)", r"hopfield_capacity\..*",
                 r"dam_capacity\..*", r"published\.measured", r"scalars\..*"],
    # nearest-stored-item accuracy is an argmin; hard max and top-k reads pick items by
    # argmax, so their errors jump when a (cosine) tie between binary items flips; the
    # summaries pick the best separation per level.
    "separation_robustness": [r"robustness\.accuracy.*", r"crossover\..*", r"best\..*", r"scalars\..*"],
    # read-outs by largest attention mass / nearest centroid, quadrant fractions.
    "fig2_key_value_optimization": [r"summary\.(readout_.*|keys_in_quadrant_min)",
                                    r"centroids\.fraction_in_quadrant", r"scalars\.readout_.*"],
    # test accuracies are argmax counts over about a hundred images. The memory_check
    # columns are rounding residuals (the largest |W - (W0 + sum of memories)|, about 1e-7):
    # their size is the rounding itself, which differs by device; the claims bound them.
    "fig3_forgetting_reactivation": [r".*\.(task1|task2)_.*pct", r".*accuracy_pct", r"published\.measured",
                                     r"scalars\..*_pct", r"scalars\..*_best_beta", r"memory_check\..*_max_abs"],
    # accuracy is nearest-item decoding; the fixed maps' beta is an argmin over a grid.
    "learned_vs_fixed_keys": [r"retrieval\.accuracy", r"geometry\.beta", r"scalars\..*"],
    # argmax accuracy, and capacity = the first N whose loss crosses a threshold.
    "associative_retrieval_capacity": [r"(capacity|replace)\.accuracy", r"summary\.capacity"],
}


def _discrete(name: str, where: str) -> bool:
    return any(re.fullmatch(p, where) for p in DISCRETE[name])


def _differences(name: str, cpu, gpu) -> tuple[list[str], list[str]]:
    """(problems, notes): every disagreement beyond tolerance, and the largest deviation per table."""
    problems, notes = [], []
    if set(cpu.tables) != set(gpu.tables):
        return [f"tables differ: {sorted(cpu.tables)} vs {sorted(gpu.tables)}"], notes
    for table, a in cpu.tables.items():
        b = gpu.tables[table]
        if list(a.columns) != list(b.columns) or a.shape != b.shape:
            problems.append(f"{table}: shape {a.shape} vs {b.shape}, columns {list(a.columns)} vs {list(b.columns)}")
            continue
        worst = 0.0
        for col in a.columns:
            where = f"{table}.{col}"
            x, y = a[col], b[col]
            if pd.api.types.is_bool_dtype(x) or not pd.api.types.is_numeric_dtype(x):
                if not _discrete(name, where) and not x.equals(y):
                    problems.append(f"{where}: values differ")
                continue
            x, y = x.to_numpy(float), y.to_numpy(float)
            # Tolerance relative to each entry and to the column's scale: entries that are
            # rounding noise themselves (a 1e-7 error next to errors of order 1) are judged
            # against the column's magnitude, not their own.
            finite = np.isfinite(x)
            scale = float(np.abs(x[finite]).max()) if finite.any() else 0.0
            ok = np.isclose(y, x, rtol=RTOL, atol=RTOL * scale, equal_nan=True)
            with np.errstate(invalid="ignore"):  # inf - inf where both runs give the same infinity
                dev = np.where(x == y, 0.0, np.abs(y - x) / np.maximum(np.abs(x), scale if scale > 0 else 1.0))
            if np.isfinite(dev).any():
                worst = max(worst, float(np.nanmax(np.where(np.isfinite(dev), dev, np.nan))))
            if not ok.all() and not _discrete(name, where):
                problems.append(f"{where}: {int((~ok).sum())} of {len(ok)} entries differ, largest relative "
                                f"deviation {float(np.nanmax(dev)):.2e}")
        notes.append(f"{table}: largest relative deviation {worst:.2e}")
    if set(cpu.scalars) != set(gpu.scalars):
        problems.append(f"scalars: keys differ: {sorted(set(cpu.scalars) ^ set(gpu.scalars))}")
    for key, x in cpu.scalars.items():
        y = gpu.scalars.get(key)
        if _discrete(name, f"scalars.{key}"):
            continue
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if not np.isclose(float(y), float(x), rtol=RTOL, atol=0.0, equal_nan=True):
                problems.append(f"scalars.{key}: {x!r} vs {y!r}")
        elif x != y:
            problems.append(f"scalars.{key}: {x!r} vs {y!r}")
    return problems, notes


def test_differences_catches_a_changed_number():
    # The comparison itself must be able to fail: a 1% change in a continuous column.
    base = retrieval_basics.Result(tables={"retrieval": pd.DataFrame({"model": ["a", "b"], "cosine": [0.5, 1.0]})},
                                   scalars={"key_dim": 32})
    moved = retrieval_basics.Result(tables={"retrieval": pd.DataFrame({"model": ["a", "b"], "cosine": [0.505, 1.0]})},
                                    scalars={"key_dim": 32})
    assert _differences("retrieval_basics", base, base)[0] == []
    problems, _ = _differences("retrieval_basics", base, moved)
    assert problems and "retrieval.cosine" in problems[0]
    renamed = retrieval_basics.Result(tables={"retrieval": pd.DataFrame({"model": ["a", "c"], "cosine": [0.5, 1.0]})},
                                      scalars={"key_dim": 33})
    problems, _ = _differences("retrieval_basics", base, renamed)
    assert any("retrieval.model" in p for p in problems) and any("scalars.key_dim" in p for p in problems)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_cuda_matches_cpu(module):
    name = module.__name__.rsplit(".", 1)[-1]
    experiment = module.EXPERIMENT
    quick = experiment.profiles["quick"]
    cpu = experiment.run(quick, seed=0)
    gpu = experiment.run(dataclasses.replace(quick, device="cuda"), seed=0)
    problems, notes = _differences(name, cpu, gpu)
    print(f"\n{name}: " + "; ".join(notes))
    claims_cpu = {c.name: c.passed for c in experiment.claims(cpu)}
    claims_gpu = {c.name: c.passed for c in experiment.claims(gpu)}
    if claims_gpu != claims_cpu:
        problems.append(f"claims differ: cpu {claims_cpu}, cuda {claims_gpu}")
    assert not problems, "\n".join(problems)
