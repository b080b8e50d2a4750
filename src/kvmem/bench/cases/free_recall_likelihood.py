"""Benchmark case ``free-recall-likelihood``: our batched CMR likelihood vs cymr's on PEERS.

Both evaluate the exact log-likelihood of every recall and stop event of the PEERS no-task
data shipped with psifr (126 subjects x 28 lists of 16 words; intrusions and repeats
removed) under localist CMR with the same parameters. cymr (Morton & Polyn; Cython inner
loops) walks list by list; ours (:func:`kvmem.paradigms.free_recall_fit.log_likelihood`)
runs the study phase once per list length and the recall phase of all lists together.
cymr is given its fastest localist set-up: its pool of patterns is the 16 list
positions (``item_index`` = serial position - 1), which with ``Afc = Acf = 0`` is the same
model as a pool of all words.

Check first: the two log-likelihoods agree to a relative 1e-6 (they agree to about 1e-15).
Rows: one parameter set (the ratio cymr time / our time), and a population of 32
parameter sets in one call, as the fits use it (ratio per parameter set).

Full: all 126 subjects. Quick: the first 4 subjects (112 lists).

Run:  kvmem bench --only free-recall-likelihood, or
      python -m kvmem.bench.cases.free_recall_likelihood [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from kvmem.bench.base import BenchRow, time_call

CHECK_RTOL = 1e-6
PARAMS = dict(B_enc=0.6, B_start=0.3, B_rec=0.8, Lfc=0.2, Lcf=0.3, P1=2.0, P2=1.0, T=0.2, X1=0.01, X2=0.3)
POPULATION = 32


def _inputs(quick: bool):
    from kvmem.paradigms import free_recall_fit as fitm

    table = fitm.load_sample("peers_notask")[["subject", "list", "position", "trial_type", "item"]]
    if quick:
        table = table[table["subject"].isin(sorted(table["subject"].unique())[:4])]
    return table.reset_index(drop=True)


def _cymr_call(table):
    """A function of no arguments: cymr's total log-likelihood and event count."""
    from cymr import cmr

    param_def, patterns = cmr.config_loc_cmr(16)
    param_def.set_dependent(Dfc="1 - Lfc", Dcf="1 - Lcf")
    param = param_def.eval_dependent({**PARAMS, "Afc": 0.0, "Acf": 0.0})
    data = table.copy()
    data["item_index"] = np.where(data["trial_type"] == "study", data["position"] - 1, -1)
    model = cmr.CMR()

    def call():
        stats = model.likelihood(data, param, param_def=param_def, patterns=patterns)
        return float(stats["logl"].sum()), int(stats["n"].sum())

    return call


def run(*, quick: bool, device: str) -> list[BenchRow]:
    """Time both likelihoods after checking that they agree (our code runs on the CPU in
    float64 whatever ``device`` is: the work is a few thousand tiny sequential steps)."""
    from kvmem.paradigms import free_recall_fit as fitm

    table = _inputs(quick)
    data = fitm.prepare_data(table)
    params = fitm.expand_params(PARAMS)
    size = f"{table['subject'].nunique()} subjects, {data.n_lists} lists of 16, {data.n_events} events"
    nan = float("nan")
    try:
        cymr_call = _cymr_call(table)
    except ImportError:
        return [BenchRow("free-recall-likelihood", "one parameter set", size, nan, "cymr 0.14.3 likelihood", nan, nan,
                         None, True, "cymr is not installed (pip install kvmem[test]); nothing compared", False)]
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours_logl = float(fitm.log_likelihood(params, data)[0])
        cymr_logl, cymr_n = cymr_call()
        rel = abs(ours_logl - cymr_logl) / abs(cymr_logl)
        ok = rel <= CHECK_RTOL and cymr_n == data.n_events
        check = (f"log-likelihood ours {ours_logl:.10f} vs cymr {cymr_logl:.10f} (relative difference {rel:.1e}, "
                 f"tol {CHECK_RTOL:.0e}); events {data.n_events} vs {cymr_n}")
        ours_t = time_call(lambda: fitm.log_likelihood(params, data), repeats=5)
        cymr_t = time_call(cymr_call, repeats=1, warmup=0)
        batch = [params] * POPULATION
        pop_t = time_call(lambda: fitm.log_likelihood(batch, data), repeats=2)
    finally:
        torch.set_num_threads(prev)
    extra = {"ours_logl": ours_logl, "cymr_logl": cymr_logl, "threads": 1, "device": "cpu"}
    return [
        BenchRow("free-recall-likelihood", "one parameter set", size, ours_t, "cymr 0.14.3 CMR.likelihood",
                 cymr_t, cymr_t / ours_t if ok else nan, None, True, check, ok, extra),
        BenchRow("free-recall-likelihood", f"{POPULATION} parameter sets in one call, per set", size,
                 pop_t / POPULATION, "cymr 0.14.3 CMR.likelihood, one set", cymr_t,
                 cymr_t * POPULATION / pop_t if ok else nan, None, True, check, ok,
                 {**extra, "population_seconds": pop_t}),
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = [r.to_dict() for r in run(quick=args.quick, device="cpu")]
    print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    out = main()
    sys.exit(0 if all(r["check_passed"] for r in out) else 1)
