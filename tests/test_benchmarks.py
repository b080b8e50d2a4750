"""The benchmark scripts compute what they claim (correctness only; no timing is asserted)."""

import importlib.util
from pathlib import Path

import torch

from kvmem.paradigms import capacity

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
