"""The command line: listing, running with overrides, outputs and exit codes."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from kvmem import experiments
from kvmem.cli import app

runner = CliRunner()


def test_help_and_list():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "reproduce" in result.output
    result = runner.invoke(app, ["list", "--names"])
    assert result.exit_code == 0
    assert result.output.split() == experiments.names()


def test_run_writes_csv_png_and_claims(tmp_path):
    out = tmp_path / "rb"
    result = runner.invoke(app, ["run", "retrieval-basics", "--profile", "quick", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    claims = json.loads((out / "claims.json").read_text())
    assert claims and all(set(c) == {"name", "expected", "measured", "passed"} for c in claims)
    assert all(c["passed"] for c in claims)
    table = pd.read_csv(out / "retrieval.csv")
    assert {"model", "n_pairs", "noise", "accuracy"} <= set(table.columns)
    assert (out / "retrieval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "run.json").read_text())
    assert meta["profile"] == "quick" and meta["seed"] == 0 and "torch" in meta["versions"]


def test_set_overrides_reach_the_config(tmp_path):
    out = tmp_path / "rb"
    args = ["run", "retrieval-basics", "--set", "trials=3", "--set", "n_pairs=4,32", "--set", "noise_levels=0.0",
            "--out", str(out), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "retrieval.csv")
    assert sorted(table.loc[table["sweep"] == "pairs", "n_pairs"].unique()) == [4, 32]
    assert set(table["trials"]) == {3}


def test_failed_claim_exits_one(tmp_path):
    # With D = 32 missing from the sweep, the Hebbian claim cannot be met.
    args = ["run", "retrieval-basics", "--set", "n_pairs=4,8", "--set", "trials=2", "--out", str(tmp_path), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert not all(c["passed"] for c in claims)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "no-such-experiment"], "unknown experiment"),
        (["run", "retrieval-basics", "--set", "nope=1"], "no setting 'nope'"),
        (["run", "retrieval-basics", "--set", "trials=many"], "expected int"),
        (["run", "retrieval-basics", "--set", "trials"], "key=value"),
        (["run", "retrieval-basics", "--profile", "huge"], "--profile"),
        (["reproduce", "--only", "nothing"], "unknown experiment"),
        (["run", "retrieval-basics", "--device", "tpu"], "--device: expected 'cpu', 'cuda' or 'cuda:N'"),
        (["reproduce", "--device", "gpu0"], "--device: expected 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_usage_errors_exit_two_with_one_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_reproduce_runs_every_experiment(tmp_path):
    # Two Dask workers: the main job end to end on both cores (in-process equality is tested in test_reproduce).
    result = runner.invoke(app, ["reproduce", "--profile", "quick", "--out", str(tmp_path), "--quiet", "--workers", "2"])
    assert result.exit_code == 0, result.output
    for name in experiments.names():
        assert (tmp_path / name / "claims.json").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["run", "reproduce"])
def test_cuda_without_a_gpu_is_a_usage_error(command, tmp_path):
    args = ["run", "retrieval-basics"] if command == "run" else ["reproduce", "--only", "retrieval-basics"]
    result = runner.invoke(app, [*args, "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "CUDA is not available" in result.output and "Traceback" not in result.output


def test_device_option_reaches_the_config(tmp_path):
    out = tmp_path / "rb"
    args = ["run", "retrieval-basics", "--device", "cpu", "--set", "trials=3", "--set", "n_pairs=4,32",
            "--set", "noise_levels=0.0", "--out", str(out), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["config"]["device"] == "cpu"


