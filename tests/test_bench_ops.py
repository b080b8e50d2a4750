"""benchmarks/bench_ops.py computes what it claims (correctness only; no timing is asserted)."""

import importlib
import json

import torch



def load(name: str):
    return importlib.import_module({"bench_ops": "kvmem.bench.cases.ops", "bench_capacity": "kvmem.bench.cases.capacity"}[name])


def test_flop_counts_match_a_hand_count():
    bench = load("bench_ops")
    # Recurrence: k S, the outer-product write and q S, 2 F Dv FLOPs each, per token.
    assert bench.flops("delta_rule", "recurrent", 2, 10, 4, 3, 5) == 2 * 10 * 6 * 4 * 3
    assert bench.flops("linear_attention", "recurrent", 1, 10, 4, 3, 5) == 10 * 4 * 4 * 3
    # One chunk of C = T = 4 with F = Dv = 2: K K^T, Q K^T (2 C^2 F each), T K and T V
    # (2 C^2 F, 2 C^2 Dv), W S, K^T U', Q S (2 C F Dv each), tril(Q K^T) U' (2 C^2 Dv) and
    # the blocked inverse (2 C^3 / 3).
    c, f, dv = 4, 2, 2
    hand = 2 * c * c * f * 3 + 2 * c * c * dv * 2 + 3 * 2 * c * f * dv + 2 * c**3 / 3
    assert bench.flops("delta_rule", "chunk", 1, 4, f, dv, 4) == hand
    # T = 5 with C = 4 is padded to two chunks.
    assert bench.flops("delta_rule", "chunk", 1, 5, f, dv, 4) == 2 * hand


def test_small_run_checks_every_case_and_writes_json(tmp_path):
    bench = load("bench_ops")
    result = bench.main(["--t", "40", "--d", "8", "--bh", "2", "--chunk", "16", "--bwd-t", "24",
                         "--memory-t", "", "--repeats", "1", "--out", str(tmp_path)])
    assert result["all_correct"]
    assert [c["case"] for c in result["cases"]] == ["delta_rule forward", "gated_delta_rule forward",
                                                    "linear_attention forward", "delta_rule forward+backward"]
    for case in result["cases"]:
        assert max(case["rel_rmse"].values()) <= 1e-5
        assert case["chunk_seconds"] > 0 and case["speedup"] > 0
    fwd = result["cases"][0]
    assert fwd["gemm"]["n"] ** 3 * 2 == fwd["gemm"]["flop"] and 0 < fwd["gemm_fraction"]
    assert json.loads((tmp_path / "bench_ops.json").read_text())["all_correct"]


def test_a_wrong_result_gets_no_speed(monkeypatch):
    bench = load("bench_ops")
    real = bench.delta_rule

    def broken(*args, mode="chunk", **kwargs):
        o, s = real(*args, mode=mode, **kwargs)
        return (o * 1.001, s) if mode == "chunk" else (o, s)

    monkeypatch.setattr(bench, "delta_rule", broken)
    result = bench.main(["--t", "20", "--d", "4", "--bh", "1", "--chunk", "8", "--bwd-t", "0", "--memory-t", "",
                         "--ops", "delta_rule", "--repeats", "1"])
    (case,) = result["cases"]
    assert not result["all_correct"] and not case["correct"]
    assert case["chunk_seconds"] is None and case["speedup"] is None and case["gemm_fraction"] is None


def test_peak_memory_of_the_parallel_form_holds_t_by_t_blocks():
    bench = load("bench_ops")
    # The benchmark runs each (mode, T) in a fresh process, so no earlier allocation hides its peak.
    result = bench.main(["--ops", "", "--bwd-t", "0", "--memory-t", "2048", "--memory-modes", "parallel",
                         "--bh", "2", "--d", "16", "--chunk", "64"])
    (row,) = result["memory"]
    t_by_t = 2 * 2048 * 2048 * 4
    assert row["mode"] == "parallel" and row["one_t_by_t_mib"] * 2**20 == t_by_t
    assert row["peak_extra_bytes"] >= t_by_t
    # (That the chunked forms never build a T x T tensor is checked exactly, op by op, in
    # tests/test_ops_delta_rule.py.)
