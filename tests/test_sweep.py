"""Sweeps: planning, the driver, resume after kill -9, backends (in-process, LocalCluster,
an existing scheduler), the results readers and command, the sweep figure, docs/sweeps.md."""

import hashlib
import json
import math
import operator
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from typer.testing import CliRunner

from kvmem import experiments
from kvmem.cli import app
from kvmem.experiments import Claim, Experiment, Result, get
from kvmem.experiments.base import torch_threads
from kvmem.runner import (
    Call,
    Store,
    export,
    load_results,
    load_table,
    make_spec,
    open_executor,
    plan_sweep,
    plot_sweep,
    run_experiment,
    run_sweep,
    summarize,
    sweep_band,
)
from kvmem.runner.executor import BackendUnavailable
from kvmem.runner.sweep import parse_grid, parse_seeds

runner = CliRunner()
DOCS = Path(__file__).resolve().parent.parent / "docs"
VOLATILE = ["seconds", "finished", "worker", "backend"]
# A small retrieval-basics task: about 0.05 s with one thread.
SMALL = {"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0,0.5"}


# -- a toy experiment (registered only inside the tests that use it) -------------------

@dataclass(frozen=True)
class ToyConfig:
    x: int = 1
    scale: float = 1.0
    shape: tuple[int, ...] = (1,)
    fail_on: int = -1


def toy_run(config, *, seed=0, progress=None):
    if config.x == config.fail_on:
        raise RuntimeError(f"toy failure at x={config.x}")
    rng = np.random.default_rng(seed)
    values = config.x + config.scale * rng.standard_normal(3) + sum(config.shape)
    table = pd.DataFrame({"i": [0, 1, 2], "v": values})
    return Result(tables={"values": table}, scalars={"mean": float(values.mean())}, config=asdict(config))


def toy_claims(result):
    mean = result.scalars["mean"]
    return [Claim("positive", "mean > 0", mean, mean > 0)]


TOY = Experiment(name="toy-sweep", description="test only", config_type=ToyConfig,
                 profiles={"quick": ToyConfig(), "full": ToyConfig()}, run=toy_run, plot=lambda r: {},
                 claims=toy_claims)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(experiments.REGISTRY, TOY.name, TOY)
    return TOY.name


class StopAfter:
    """Progress callback that raises KeyboardInterrupt (a Ctrl-C) after n stored tasks."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def total(self, n):
        self.planned = n

    def advance(self, n=1):
        self.seen += n
        if self.seen >= self.n:
            raise KeyboardInterrupt


def spawned_workers():
    """Worker processes started by multiprocessing spawn (Dask's nanny workers) below us."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("spawn_main" in part for part in p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_until(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def rows(db, query):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# -- grid and seeds --------------------------------------------------------------------

def test_parse_seeds_and_grid():
    assert parse_seeds("0-9") == tuple(range(10))
    assert parse_seeds("3") == (3,) and parse_seeds([4, 2]) == (4, 2)
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    for bad in ("", "a", "5-2", "-1", "0,0", "1-x"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert parse_grid(["a=1,2", "b = x"]) == (("a", ("1", "2")), ("b", ("x",)))
    assert parse_grid(["n=4,8;16,32"]) == (("n", ("4,8", "16,32")),)
    assert parse_grid({"a": [1, 0.5, True, (4, 8)]}) == (("a", ("1", "0.5", "true", "4,8")),)
    for bad, message in ((["a"], "key=v1"), (["a=1,"], "empty value"), (["a=1", "a=2"], "given twice"),
                         (["=1"], "empty setting"), ("a=1", "string")):
        with pytest.raises(ValueError, match=message):
            parse_grid(bad)


def test_plan_is_typed_seed_major_and_hashes_the_full_config():
    spec = make_spec("retrieval-basics", ["key_dim=8,16", "noise_levels=0.0;0.1,0.2"], "0-1", fixed={"trials": 3})
    tasks = plan_sweep(spec)
    assert spec.size == len(tasks) == 8
    assert [(t.seed, t.params["key_dim"], t.params["noise_levels"]) for t in tasks[:4]] == [
        (0, 8, [0.0]), (0, 8, [0.1, 0.2]), (0, 16, [0.0]), (0, 16, [0.1, 0.2])]
    assert [t.seed for t in tasks] == [0] * 4 + [1] * 4
    assert len({t.task_id for t in tasks}) == 8
    # Independent reference for the id: sha256 of name, canonical config JSON and seed.
    config = get("retrieval-basics").config("quick", {"trials": "3", "key_dim": "16", "noise_levels": "0.0"})
    canonical = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
                           sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(f"retrieval-basics\0{canonical}\0{1}".encode()).hexdigest()[:32]
    assert [t.task_id for t in tasks if t.seed == 1 and t.params == {"key_dim": 16, "noise_levels": [0.0]}] == [expected]
    # The id depends on the config, not on how it was spelled or which setting was swept.
    same = plan_sweep(make_spec("retrieval-basics", ["trials=03"], "1",
                                fixed={"key_dim": "16", "noise_levels": "0.0"}))
    assert same[0].task_id == expected


@pytest.mark.parametrize("grid, message", [
    (["key_dim=8,many"], "--grid key_dim: expected int, got 'many'"),
    (["nope=1"], "--grid: retrieval-basics has no setting 'nope'"),
    (["softmax_beta=32,32.0"], "give the same config"),
])
def test_bad_grid_values_are_rejected_before_running(grid, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_sweep("retrieval-basics", grid, "0", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="also given with --set"):
        make_spec("retrieval-basics", ["trials=2"], "0", fixed={"trials": 3})


# -- the driver, in-process ------------------------------------------------------------

def test_in_process_sweep_stores_exactly_what_the_experiment_returns(tmp_path):
    report = run_sweep("retrieval-basics", ["key_dim=8,16"], "0-1", out=tmp_path, fixed=SMALL)
    assert (report.planned, report.finished, report.skipped, report.failed) == (4, 4, 0, 0)
    table = load_table(tmp_path, "retrieval")
    results = load_results(tmp_path)
    assert results[["key_dim", "seed"]].values.tolist() == [[8, 0], [8, 1], [16, 0], [16, 1]]
    before = torch.get_num_threads()
    with torch_threads(1):
        for _, task in results.iterrows():
            ref = run_experiment("retrieval-basics", overrides={**{k: str(v) for k, v in SMALL.items()},
                                                                "key_dim": str(task["key_dim"])}, seed=int(task["seed"]))
            got = table[table["task_id"] == task["task_id"]].drop(columns=["task_id", "key_dim", "seed"])
            pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.result.tables["retrieval"], check_exact=True)
            assert task["scalar_key_dim"] == ref.result.scalars["key_dim"] == task["key_dim"]
            assert task["claims_passed"] == sum(c.passed for c in ref.claims)
            assert task["claims_total"] == 3 and task["backend"] == "in-process"
            assert task[f"claim.{ref.claims[0].name}"] == ref.claims[0].passed
    assert torch.get_num_threads() == before  # the sweep restored the driver's setting


def test_interrupted_sweep_resumes_without_duplicates(toy, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_sweep(toy, ["x=1,2,3"], "0-1", out=tmp_path, progress=StopAfter(2))
    with Store(tmp_path, readonly=True) as store:
        assert store.counts() == {"pending": 4, "done": 2, "failed": 0}
    kept = rows(tmp_path / "sweep.sqlite", "SELECT * FROM tasks WHERE status='done' ORDER BY task_id")
    report = run_sweep(toy, ["x=1,2,3"], "0-1", out=tmp_path)
    assert (report.skipped, report.finished) == (2, 4) and report.complete
    assert rows(tmp_path / "sweep.sqlite", "SELECT * FROM tasks WHERE task_id IN (%s) ORDER BY task_id"
                % ",".join(f"'{r[0]}'" for r in kept)) == kept
    df = load_results(tmp_path)
    assert len(df) == 6 and not df.duplicated(["x", "seed"]).any()


def test_failed_tasks_are_recorded_and_retried(toy, tmp_path):
    report = run_sweep(toy, ["x=1,2"], "0", out=tmp_path, fixed={"fail_on": 2})
    assert (report.finished, report.failed) == (1, 1)
    assert report.errors[0][1:] == ({"x": 2}, 0, "RuntimeError: toy failure at x=2")
    everything = load_results(tmp_path, include_unfinished=True)
    assert everything["status"].tolist() == ["done", "failed"]
    assert everything["error"].tolist()[1] == "RuntimeError: toy failure at x=2"
    assert len(load_results(tmp_path)) == 1
    # The CLI reports the failure and exits 1; a rerun retries only the failed task.
    result = runner.invoke(app, ["sweep", toy, "--grid", "x=1,2", "--set", "fail_on=2", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and "toy failure at x=2" in result.output


def test_tuple_parameters_results_summary_and_export(toy, tmp_path):
    run_sweep(toy, ["shape=1,2;3", "scale=0.5,2"], "0-2", out=tmp_path)
    df = load_results(tmp_path)
    assert df.attrs["params"] == ["shape", "scale"] and len(df) == 12
    assert sorted(set(df["shape"])) == [(1, 2), (3,)]
    # mean scalar against an independent recomputation of the toy's numbers
    for _, r in df.iterrows():
        values = 1 + r["scale"] * np.random.default_rng(r["seed"]).standard_normal(3) + sum(r["shape"])
        assert r["mean"] == float(values.mean())
    table = load_table(tmp_path, "values")
    assert len(table) == 36 and list(table.columns) == ["task_id", "shape", "scale", "seed", "i", "v"]
    summary = summarize(tmp_path)
    assert summary["tasks"].to_dict("records") == [
        {"experiment": "toy-sweep", "tasks": 12, "done": 12, "failed": 0, "pending": 0}]
    means = summary["means"].set_index(["parameter", "value"])
    assert means.loc[("scale", 2.0), "mean"] == pytest.approx(df.loc[df["scale"] == 2.0, "mean"].mean(), rel=1e-12)
    assert summary["claims"]["tasks"].tolist() == [12]
    export(tmp_path, tmp_path / "tasks.parquet")
    back = pd.read_parquet(tmp_path / "tasks.parquet")
    assert back["shape"].tolist() == [",".join(map(str, s)) for s in df["shape"]]
    assert back["mean"].tolist() == df["mean"].tolist()
    export(tmp_path, tmp_path / "values.csv", table="values")
    assert pd.read_csv(tmp_path / "values.csv")["v"].tolist() == pytest.approx(table["v"].tolist(), rel=1e-15)
    with pytest.raises(ValueError, match="no table 'nope'.*values"):
        load_table(tmp_path, "nope")
    with pytest.raises(ValueError, match="csv or .parquet"):
        export(tmp_path, tmp_path / "x.xlsx")


# -- kill -9 and resume ----------------------------------------------------------------

def done_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            return conn.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # the store is still being created
        return 0


def test_kill_9_mid_sweep_then_resume(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "retrieval-basics", "--profile", "quick", "--set", "trials=2", "--grid", "key_dim=8,16,24,32",
            "--seeds", "0-5", "--out", str(out), "--quiet"]
    db = out / "sweep.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "kvmem.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while done_count(db) < 2:
            assert proc.poll() is None, f"the sweep ended before the kill: {proc.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no task finished within 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with Store(out) as store:  # opens (recovering the WAL) and is consistent
        assert store.check() == []
        counts = store.counts()
    assert 2 <= counts["done"] < 24 and counts["done"] + counts["pending"] == 24
    kept_tasks = rows(db, "SELECT * FROM tasks WHERE status='done' ORDER BY task_id")
    kept_tables = rows(db, "SELECT * FROM task_tables ORDER BY task_id, name")

    result = runner.invoke(app, args)  # the same command, to completion
    assert result.exit_code == 0, result.output
    with Store(out) as store:
        assert store.check() == []
        assert store.counts() == {"pending": 0, "done": 24, "failed": 0}
    planned = {t.task_id for t in plan_sweep(make_spec("retrieval-basics", ["key_dim=8,16,24,32"], "0-5",
                                                       fixed={"trials": "2"}))}
    assert {r[0] for r in rows(db, "SELECT task_id FROM tasks")} == planned
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT experiment || config_hash || seed) FROM tasks") == [(24, 24)]
    assert rows(db, "SELECT COUNT(*) FROM task_tables WHERE name='retrieval'") == [(24,)]
    ids = ",".join(f"'{r[0]}'" for r in kept_tasks)
    assert rows(db, f"SELECT * FROM tasks WHERE task_id IN ({ids}) ORDER BY task_id") == kept_tasks
    assert [r for r in rows(db, "SELECT * FROM task_tables ORDER BY task_id, name")
            if r[0] in {k[0] for k in kept_tasks}] == kept_tables


# -- backends --------------------------------------------------------------------------

def test_local_cluster_gives_identical_results_and_shuts_down(tmp_path):
    grid, seeds = ["key_dim=8,16"], "0-1"
    run_sweep("retrieval-basics", grid, seeds, out=tmp_path / "local", fixed=SMALL)
    start = time.perf_counter()
    report = run_sweep("retrieval-basics", grid, seeds, out=tmp_path / "dask", fixed=SMALL, workers=2)
    assert report.backend == "local cluster, 2 workers" and report.finished == 4
    assert time.perf_counter() - start < 120
    a, b = load_results(tmp_path / "local"), load_results(tmp_path / "dask")
    assert set(b["backend"]) == {"local-cluster"}
    assert not b["worker"].str.endswith(f":{os.getpid()}").any()  # really ran elsewhere
    pd.testing.assert_frame_equal(a.drop(columns=VOLATILE), b.drop(columns=VOLATILE), check_exact=True)
    pd.testing.assert_frame_equal(load_table(tmp_path / "local", "retrieval"), load_table(tmp_path / "dask", "retrieval"),
                                  check_exact=True)
    assert wait_until(lambda: not spawned_workers()), spawned_workers()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_local_cluster_closes_on_ctrl_c_and_errors(stop):
    with pytest.raises(stop):
        with open_executor(workers=2) as ex:
            outs = {o.key: o for o in ex.imap_unordered(operator.truediv, [Call(i, (1, i)) for i in range(4)])}
            assert [outs[i].value for i in (1, 2, 4 - 1)] == [1.0, 0.5, 1 / 3]
            assert isinstance(outs[0].error, ZeroDivisionError) and outs[0].value is None
            workers = spawned_workers()
            assert len(workers) == 2
            # A terminal Ctrl-C goes to the whole process group: the workers must ignore it
            # and leave the shutdown to the driver.
            for p in workers:
                if Path(f"/proc/{p.pid}/status").exists():
                    ignored = int(re.search(r"SigIgn:\s*([0-9a-f]+)", Path(f"/proc/{p.pid}/status").read_text())[1], 16)
                    assert ignored >> (signal.SIGINT - 1) & 1
            raise stop("stop")
    assert ex.cluster.status.name == "closed" and ex.client.status == "closed"
    assert wait_until(lambda: not spawned_workers()), spawned_workers()


def test_in_process_executor_reports_errors_and_passes_ctrl_c():
    with open_executor() as ex:
        outs = list(ex.imap_unordered(operator.floordiv, [Call("a", (7, 2)), Call("b", (1, 0)), Call("c", (9,), {})]))
    assert [o.key for o in outs] == ["a", "b", "c"] and outs[0].unwrap() == 3
    assert isinstance(outs[1].error, ZeroDivisionError) and isinstance(outs[2].error, TypeError)
    with pytest.raises(ZeroDivisionError):
        outs[1].unwrap()

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), open_executor() as ex:
        list(ex.imap_unordered(interrupt, [Call(0)]))


def test_existing_scheduler_is_joined_interrupted_and_left_running(toy, tmp_path):
    from distributed import LocalCluster

    # Threads in this process: cheap to start, and the toy experiment is already importable.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=50) as cluster:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(toy, ["x=1,2,3,4,5"], "0-1", out=tmp_path / "s", scheduler=cluster.scheduler_address,
                      progress=StopAfter(1))
        assert cluster.status.name == "running"
        assert wait_until(lambda: not cluster.scheduler.tasks)  # our futures were released or cancelled
        assert load_results(tmp_path / "s")["task_id"].size == 1
        report = run_sweep(toy, ["x=1,2,3,4,5"], "0-1", out=tmp_path / "s", scheduler=cluster.scheduler_address)
        assert (report.skipped, report.finished, report.backend) == (1, 9, f"dask scheduler {cluster.scheduler_address}")
    run_sweep(toy, ["x=1,2,3,4,5"], "0-1", out=tmp_path / "local")
    a, b = load_results(tmp_path / "local"), load_results(tmp_path / "s")
    pd.testing.assert_frame_equal(a.drop(columns=VOLATILE), b.drop(columns=VOLATILE), check_exact=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["sweep", "no-such", "--out", str(tmp)], "unknown experiment 'no-such'"),
    (lambda tmp: ["sweep", "retrieval-basics", "--grid", "key_dim=8,x", "--out", str(tmp)], "--grid key_dim: expected int"),
    (lambda tmp: ["sweep", "retrieval-basics", "--grid", "key_dim", "--out", str(tmp)], "--grid expects key=v1"),
    (lambda tmp: ["sweep", "retrieval-basics", "--seeds", "3-1", "--out", str(tmp)], "--seeds"),
    (lambda tmp: ["sweep", "retrieval-basics", "--workers", "0", "--out", str(tmp)], "--workers"),
    (lambda tmp: ["sweep", "retrieval-basics", "--scheduler", "localhost", "--out", str(tmp)], "--scheduler"),
    (lambda tmp: ["sweep", "retrieval-basics", "--set", "trials=2", "--out", str(tmp / "file" / "sub")],
     "cannot create output folder"),
    (lambda tmp: ["results", str(tmp / "nothing")], "no sweep store"),
])
def test_usage_errors_exit_two_with_one_line(make_args, message, tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    result = runner.invoke(app, make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unreachable_scheduler_exits_two_quickly(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = runner.invoke(app, ["sweep", "retrieval-basics", "--set", "trials=2", "--scheduler", address,
                                 "--connect-timeout", "1", "--out", str(tmp_path)])
    assert time.monotonic() - start < 5
    assert result.exit_code == 2
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(BackendUnavailable):
        run_sweep("retrieval-basics", [], "0", out=tmp_path, fixed={"trials": 2}, scheduler=address,
                  connect_timeout=0.5)


# -- results command and figure --------------------------------------------------------

def test_results_command_prints_summary_and_exports(toy, tmp_path):
    run_sweep(toy, ["x=1,2"], "0-1", out=tmp_path)
    result = runner.invoke(app, ["results", str(tmp_path), "--csv", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    assert "toy-sweep" in result.output and "claims passed" in result.output and "positive" in result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv")[["x", "seed", "mean"]],
                                  load_results(tmp_path)[["x", "seed", "mean"]])
    result = runner.invoke(app, ["results", str(tmp_path), "--parquet", str(tmp_path / "v.parquet"),
                                 "--table", "values", "--plot", str(tmp_path / "f.png"), "--metric", "v",
                                 "--x", "x", "--quiet"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "v.parquet"), load_table(tmp_path, "values"))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["results", str(tmp_path), "--csv", str(tmp_path / "n.csv"), "--table", "nope"])
    assert result.exit_code == 2 and "no table 'nope'" in result.output


def test_sweep_band_matches_a_plain_loop_and_the_t_table():
    # Two rows per (group, x, seed): the band is over seed means, not over rows.
    records = []
    for g in ("a", "b"):
        for x in (1, 2):
            for seed in range(3):
                for k in range(2):
                    records.append({"g": g, "x": x, "seed": seed, "m": (seed + 1) * x + k + (g == "b")})
    df = pd.DataFrame(records)
    band = sweep_band(df, "m", "x", by=["g"])
    t_975_2 = 4.302652729749464  # t quantile, 2 degrees of freedom, from tables
    for _, row in band.iterrows():
        seed_means = []
        for seed in range(3):
            vals = [r["m"] for r in records if r["g"] == row["g"] and r["x"] == row["x"] and r["seed"] == seed]
            seed_means.append(sum(vals) / len(vals))
        mean, sd = statistics.fmean(seed_means), statistics.stdev(seed_means)
        assert row["n"] == 3 and row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["sd"] == pytest.approx(sd, rel=1e-12)
        assert row["high"] - mean == pytest.approx(t_975_2 * sd / math.sqrt(3), rel=1e-9)
        assert mean - row["low"] == pytest.approx(t_975_2 * sd / math.sqrt(3), rel=1e-9)
    assert band[["g", "x"]].values.tolist() == [["a", 1], ["a", 2], ["b", 1], ["b", 2]]
    one = sweep_band(df[df["seed"] == 0], "m", "x", by=[])
    assert one["n"].tolist() == [1, 1] and one["low"].isna().all()
    with pytest.raises(ValueError, match="column 'nope'"):
        sweep_band(df, "nope", "x")
    with pytest.raises(ValueError, match="ci"):
        sweep_band(df, "m", "x", ci=1.5)

    fig = plot_sweep(df, "m", "x", by=["g"])
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["g=a", "g=b"]
    for line, (_, group) in zip(ax.lines, band.groupby("g")):
        assert line.get_xdata().tolist() == [1.0, 2.0]
        assert line.get_ydata().tolist() == pytest.approx(group["mean"].tolist(), rel=1e-12)
    for poly, (_, group) in zip(ax.collections, band.groupby("g")):
        ys = poly.get_paths()[0].vertices[:, 1]
        assert ys.max() == pytest.approx(group["high"].max()) and ys.min() == pytest.approx(group["low"].min())
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_sweeps_page_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "sweeps.md").read_text(), flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/sweeps.md", "exec"), namespace)
    assert (tmp_path / "my-sweep" / "sweep.sqlite").exists()
