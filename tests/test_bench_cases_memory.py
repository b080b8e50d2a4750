"""The slot-read, matrix-writes and topk-ann benchmark cases compute what they claim.

Each case runs on tiny sizes: its correctness check must pass, its rows must be well
formed, and a deliberately wrong implementation must fail the check. No time is asserted.
"""

from __future__ import annotations

import math

import pytest
import torch

import kvmem
from kvmem.bench.base import BenchRow
from kvmem.bench.cases import matrix_writes, slot_read, topk_ann

# One thread: tiny sizes are dominated by per-operation overhead, which a second thread
# only adds to on a busy 2-core machine (the child processes of the peak check inherit it).
pytestmark = pytest.mark.usefixtures("one_thread")


def well_formed(row: BenchRow, case: str) -> None:
    assert isinstance(row, BenchRow) and row.case == case
    assert row.seconds > 0 and row.bound_seconds > 0 and math.isfinite(row.ratio) and row.ratio > 0
    assert row.check and row.check_passed
    assert row.to_dict()["met"] in (True, False, None)


def test_slot_read_case_checks_and_measures_peak_memory():
    sizes = {"queries": 256, "slots": 32768, "dim": 16, "block": 512, "repeats": 1}
    (row,) = slot_read.run(quick=True, device="cpu", sizes=sizes)
    well_formed(row, "slot-read")
    assert row.target == 0.7 and row.higher_is_better
    assert row.extra["rel_error_vs_float64"] <= slot_read.TOLERANCE
    assert row.extra["flop"] == 2 * 2 * 256 * 32768 * 16
    # The blocked read allocates at most one [M, block] block; the plain read in a fresh
    # process holds at least the [M, N] scores, the blocked one far less.
    assert row.extra["largest_allocation_bytes"] <= row.extra["one_block_bytes"]
    assert row.extra["peak_extra_mib_plain"] >= row.extra["all_scores_mib"]
    assert row.extra["peak_extra_mib_blocked"] < row.extra["all_scores_mib"] / 2


def test_slot_read_case_fails_its_check_on_a_wrong_read(monkeypatch):
    real = kvmem.SlotMemory.read
    monkeypatch.setattr(kvmem.SlotMemory, "read", lambda self, q, details=False: real(self, q) * 1.001)
    sizes = {"queries": 64, "slots": 2048, "dim": 8, "block": 256, "repeats": 1}
    (row,) = slot_read.run(quick=True, device="cpu", sizes=sizes, peak=False)
    assert not row.check_passed and row.met is None


def test_matrix_writes_case_checks_both_rules():
    rows = matrix_writes.run(quick=True, device="cpu",
                             sizes={"pairs": 3000, "dim": 16, "chunk": 1024, "check_pairs": 500, "repeats": 1})
    assert [r.variant.split(",")[0] for r in rows] == ["Hebbian", "delta rule"]
    for row, target in zip(rows, (1.5, 3.0)):
        well_formed(row, "matrix-writes")
        assert row.target == target and not row.higher_is_better
    assert rows[0].extra["flop"] == 2 * 3000 * 16 * 16 and rows[1].extra["flop"] == 4 * 3000 * 16 * 16
    assert rows[1].extra["chunked_flop"] > rows[1].extra["flop"]
    assert rows[1].extra["last_pair_error"] <= 1e-3


def test_matrix_writes_case_fails_its_check_on_a_wrong_delta_write(monkeypatch):
    real = kvmem.MatrixMemory._delta_chunked
    monkeypatch.setattr(kvmem.MatrixMemory, "_delta_chunked", lambda self, phi, v, m, *a: real(self, phi, v, m, *a) * 1.01)
    rows = matrix_writes.run(quick=True, device="cpu",
                             sizes={"pairs": 1000, "dim": 8, "chunk": 256, "check_pairs": 300, "repeats": 1})
    assert rows[0].check_passed and not rows[1].check_passed


def test_topk_ann_case_reports_recall_and_speedup():
    pytest.importorskip("faiss")
    sizes = {"keys": 5000, "dim": 16, "queries": 50, "clusters": 20, "block": 1024, "repeats": 1,
             "ivf": {"name": "ivf", "nlist": 32, "nprobe": 8}, "check_queries": 20}
    rows = topk_ann.run(quick=True, device="cpu", sizes=sizes)
    assert [r.variant.split(" ")[0] for r in rows] == ["ivf", "hnsw"]
    for row in rows:
        well_formed(row, "topk-ann")
        assert row.target is None
        assert topk_ann.FULL["min_recall"] <= row.extra["recall_at_k"] <= 1.0
        assert row.extra["build_seconds"] > 0


def test_topk_ann_case_fails_on_low_recall_and_skips_without_faiss(monkeypatch):
    pytest.importorskip("faiss")
    sizes = {"keys": 3000, "dim": 16, "queries": 40, "clusters": 20, "block": 1024, "repeats": 1,
             "ivf": {"name": "ivf", "nlist": 64, "nprobe": 1}, "kinds": ("ivf",), "min_recall": 0.999}
    (row,) = topk_ann.run(quick=True, device="cpu", sizes=sizes)
    assert row.extra["recall_at_k"] < 0.999 and not row.check_passed
    import sys
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"kvmem\[faiss\]"):
        topk_ann.run(quick=True, device="cpu", sizes=sizes)


def test_case_inputs_are_seeded():
    a = slot_read.make_inputs(4, 8, 3)
    b = slot_read.make_inputs(4, 8, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    k1, q1 = topk_ann.make_data(100, 8, 5, 4)
    k2, q2 = topk_ann.make_data(100, 8, 5, 4)
    assert torch.equal(k1, k2) and torch.equal(q1, q2)
    keys, _ = matrix_writes.make_pairs(10, 4)
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(10))
