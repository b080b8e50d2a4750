"""``kvmem reproduce``: failures are reported while the others run; backends agree; report written."""

import pytest
from typer.testing import CliRunner

from kvmem import experiments
from kvmem.cli import app
from kvmem.experiments import Experiment
from kvmem.experiments.retrieval_basics import QUICK
from kvmem.runner.reproduce import reproduce

FAST = {"trials": "2", "delta_passes": "100000"}


def _boom(config, *, seed=0, progress=None):
    raise RuntimeError("this experiment <always> fails")


BROKEN = Experiment(name="broken-on-purpose", description="raises", config_type=type(QUICK),
                    profiles={"quick": QUICK, "full": QUICK}, run=_boom, plot=lambda r: {}, claims=lambda r: [])


def test_a_raising_experiment_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setitem(experiments.REGISTRY, BROKEN.name, BROKEN)
    out = reproduce([BROKEN.name, "retrieval-basics"], out=tmp_path, overrides=FAST)
    assert not out.ok and list(out.failures) == [BROKEN.name]
    assert "RuntimeError: this experiment <always> fails" in out.failures[BROKEN.name]
    assert [r.experiment for r in out.runs] == ["retrieval-basics"] and out.runs[0].passed
    page = (tmp_path / "index.html").read_text()
    assert "this experiment &lt;always&gt; fails" in page and "retrieval-basics" in page
    assert (tmp_path / BROKEN.name / "error.txt").exists()
    assert (tmp_path / "retrieval-basics" / "claims.json").exists()

    result = CliRunner().invoke(app, ["reproduce", "--only", BROKEN.name, "--only", "retrieval-basics",
                                      "--out", str(tmp_path / "cli"), "--quiet"])
    assert result.exit_code == 1
    assert (tmp_path / "cli" / "index.html").exists()


def test_local_cluster_gives_the_same_results_as_in_process(tmp_path):
    here = reproduce(["retrieval-basics"], out=tmp_path / "a", overrides=FAST)
    there = reproduce(["retrieval-basics"], out=tmp_path / "b", overrides=FAST, workers=2)
    assert there.backend.startswith("local cluster") and here.backend == "in-process"
    a, b = here.runs[0].result, there.runs[0].result
    assert set(a.tables) == set(b.tables)
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    assert [c.to_dict() for c in here.runs[0].claims] == [c.to_dict() for c in there.runs[0].claims]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "one, not both"),
        (["--scheduler", "nonsense"], "--scheduler"),
    ],
)
def test_bad_backend_choices_exit_2_with_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, ["reproduce", "--only", "retrieval-basics", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_output_folder_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["reproduce", "--only", "retrieval-basics", "--out", str(blocker / "x")])
    assert result.exit_code == 2 and "--out" in result.output


def test_unreachable_scheduler_exits_2_quickly(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--only", "retrieval-basics", "--out", str(tmp_path),
                                      "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
