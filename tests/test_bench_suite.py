"""The benchmark suite's plumbing: rows, tables, the CLI and the Dask scaling case (correctness only)."""

import json

import pytest
from typer.testing import CliRunner

from kvmem.bench import CASES, BenchRow, BenchSuite, machine_info, markdown_table, run_suite
from kvmem.bench.base import time_call, time_pair
from kvmem.cli import app


def row(**kw):
    base = dict(case="c", variant="v", size="s", seconds=2.0, bound="b", bound_seconds=1.0, ratio=0.5, target=0.4,
                higher_is_better=True, check="exact", check_passed=True)
    base.update(kw)
    return BenchRow(**base)


def test_target_logic_follows_direction_and_check():
    assert row().met is True
    assert row(ratio=0.3).met is False
    assert row(higher_is_better=False, ratio=1.4, target=1.5).met is True
    assert row(higher_is_better=False, ratio=1.6, target=1.5).met is False
    assert row(target=None).met is None
    assert row(check_passed=False).met is None  # a failed check never counts as meeting a target


def test_markdown_table_marks_failed_checks_and_skips():
    suite = BenchSuite([row(), row(variant="w", check_passed=False)], skipped={"topk-ann": "no faiss"},
                       machine=machine_info())
    text = markdown_table(suite)
    assert "(check failed)" in text and "**FAILED**" in text and "| topk-ann | skipped |" in text
    assert text.splitlines()[0].startswith("Machine:") and not suite.all_checks_passed
    assert "," not in suite.machine["blas"] and "=" not in suite.machine["blas"]  # the library name, not the build line


def test_timers_measure_work():
    import time
    slow = time_call(lambda: time.sleep(0.01), repeats=2, warmup=0)
    a, b = time_pair(lambda: time.sleep(0.02), lambda: None, repeats=2, warmup=0)
    assert slow >= 0.009 and a >= 0.019 and b < a


def test_unknown_case_is_a_clear_error():
    with pytest.raises(ValueError, match="only: unknown case"):
        run_suite(only=["no-such-case"])
    result = CliRunner().invoke(app, ["bench", "--only", "nope"])
    assert result.exit_code == 2 and "unknown case" in result.output


def test_cli_runs_a_case_and_writes_json_and_markdown(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "capacity", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["all_checks_passed"] and {r["case"] for r in data["rows"]} == {"capacity"}
    assert len(data["rows"]) == 3 and data["machine"]["threads"] >= 1
    assert "| capacity |" in (tmp_path / "bench.md").read_text()


def test_every_listed_case_module_exists_or_is_optional():
    import importlib.util
    for name, module in CASES.items():
        assert importlib.util.find_spec(module) is not None, name


def test_dask_scaling_sweep_returns_what_run_task_returns_in_process(monkeypatch):
    from kvmem.bench.cases import dask_scaling
    from kvmem.runner.sweep import run_task

    overrides = {"trials": "2", "n_pairs": "4,8", "noise_levels": "0.0"}
    monkeypatch.setattr(dask_scaling, "EXPERIMENT", "retrieval-basics")
    monkeypatch.setattr(dask_scaling, "OVERRIDES", overrides)
    _, got, task_seconds = dask_scaling._sweep(2, [0, 1])
    for seed in (0, 1):
        value = run_task("retrieval-basics", "quick", overrides, seed)
        assert got[seed] == (value["config"], repr(value["claims"]), tuple(sorted(value["tables"].items())))
    assert got[0] != got[1]  # different seeds give different tables: the comparison is not vacuous
    assert len(task_seconds) == 2 and all(t > 0 for t in task_seconds)


def test_dask_scaling_reports_the_median_of_alternating_pairs(monkeypatch):
    from kvmem.bench.cases import dask_scaling

    calls, clock = [], iter([4.0, 2.0, 1.0, 3.0, 6.0, 2.0])  # pair ratios 2.0, 3.0, 3.0
    def fake_sweep(workers, seeds):
        calls.append(workers)
        return next(clock), {s: ("same",) for s in seeds}, [0.5] * len(seeds)
    monkeypatch.setattr(dask_scaling, "_sweep", fake_sweep)
    monkeypatch.setattr(dask_scaling, "machine_ceiling", lambda: 1.9)
    row = dask_scaling._measure([0, 1], 3)
    assert calls == [1, 2, 2, 1, 1, 2]  # the order alternates from pair to pair
    assert row.extra["pair_ratios"] == [2.0, 3.0, 3.0]
    assert row.ratio == 3.0 and (row.bound_seconds, row.seconds) == (3.0, 1.0)
    assert row.check_passed and "median of 3 pairs" in row.size
    assert row.extra["ceiling_ratios"] == [1.9, 1.9, 1.9]

    outcomes = iter([{0: ("a",)}, {0: ("b",)}])  # a sweep that differs between worker counts
    monkeypatch.setattr(dask_scaling, "_sweep", lambda w, s: (1.0, next(outcomes), [0.1]))
    assert not dask_scaling._measure([0], 1).check_passed


def test_machine_ceiling_times_real_processes(monkeypatch):
    from kvmem.bench.cases import dask_scaling

    runs = []
    def fake_spin(copies):
        runs.append(copies)
        return [1.0] if copies == 1 else [1.1, 1.25]
    monkeypatch.setattr(dask_scaling, "_spin", fake_spin)
    assert dask_scaling.machine_ceiling() == 2 * 1.0 / 1.25 and runs == [1, 2]
    monkeypatch.undo()
    times = dask_scaling._spin(2)  # two real processes, each timing its own loop
    assert len(times) == 2 and all(0 < t < 60 for t in times)
