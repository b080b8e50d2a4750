"""The benchmark scripts compute what they claim (correctness only; no timing is asserted)."""

import importlib

import torch

from kvmem.paradigms import capacity



def load(name: str):
    return importlib.import_module({"bench_ops": "kvmem.bench.cases.ops", "bench_capacity": "kvmem.bench.cases.capacity"}[name])


def test_capacity_benchmark_loop_equals_batched_and_writes_json(tmp_path):
    bench = load("bench_capacity")
    patterns = capacity.make_patterns(3, 20, 60, seed=1)  # alpha = 0.33: many states move
    ref, out = bench.loop_reference(patterns, 10), bench.batched(patterns, 10)
    assert torch.equal(ref, out) and not torch.equal(out, patterns)
    ref, out = bench.loop_reference_async(patterns, 10), bench.batched(patterns, 10, "async")
    assert torch.equal(ref, out) and not torch.equal(out, patterns)
    result = bench.main(["--n", "40", "--trials", "2", "--repeats", "1", "--out", str(tmp_path)])
    assert result["identical_states"] and result["probes"] == 2 * 5
    assert [c["mode"] for c in result["cases"]] == ["sync", "async"]
    assert (tmp_path / "bench_capacity.json").exists()
