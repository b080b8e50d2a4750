"""fig3-forgetting-reactivation: quick profile claims, reproducibility, and the MNIST path on tiny fake IDX files."""

import dataclasses

import numpy as np
import pytest
import torch

from kvmem.experiments import fig3_forgetting_reactivation as fig3
from kvmem.data import idx

from test_data_loaders import write_split_files

EXP = fig3.EXPERIMENT


@pytest.fixture(scope="module")
def quick():
    return EXP.run(EXP.config("quick"), seed=0)


def test_registered_with_both_profiles():
    from kvmem.experiments import REGISTRY

    assert REGISTRY["fig3-forgetting-reactivation"] is EXP
    full = EXP.config("full")
    assert full.dataset == "digits" and full.batch_size == 128 and full.hidden == 64
    assert full.betas[:10] == pytest.approx([1.0 + 0.1 * i for i in range(10)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.lr = 1.0


def test_quick_claims_hold(quick):
    claims = {c.name: c for c in EXP.claims(quick)}
    assert list(claims) == [
        "task1_learned", "task2_learned", "catastrophic_forgetting",
        "reactivation_restores_task1_authors", "reactivation_restores_task1_pairs_only",
        "task1_memories_unchanged_by_task2", "weights_are_w0_plus_tag_memories",
        "subset_recovery_grows_with_fraction", "subset_matches_uniform_effective_beta",
    ]
    assert all(c.passed for c in claims.values()), [c for c in claims.values() if not c.passed]
    s = quick.scalars
    assert s["lr"] == 0.17 and s["epochs_per_task"] == 5 and s["steps_task1"] == 10
    assert s["task1_after_task2_pct"] < s["task1_after_task1_pct"] - 50


def test_tables_are_consistent(quick):
    t = quick.tables
    cfg = EXP.config("quick")
    assert len(t["epochs"]) == 2 * (2 * 5 + 1)
    assert set(t["beta_sweep"]["variant"]) == {"authors", "pairs_only"}
    assert len(t["beta_sweep"]) == 2 * len(cfg.betas)
    # beta = 1 is no intervention: both variants equal the accuracy after Task 2.
    at1 = t["beta_sweep"][t["beta_sweep"]["beta"] == 1.0]
    assert (at1["task1_accuracy_pct"] == quick.scalars["task1_after_task2_pct"]).all()
    sub = t["subset"]
    assert len(sub) == len(cfg.subset_fractions) * cfg.subset_repeats
    assert (sub[sub["fraction"] == 0.0]["n_amplified"] == 0).all()
    last = sub[sub["fraction"] == 1.0]
    assert (last["n_amplified"] == last["n_events"]).all()
    # Amplifying every event by beta is the tag-wide pairs_only reactivation at the same beta.
    full_subset = sub[sub["fraction"] == 1.0]["task1_accuracy_pct"]
    sweep = t["beta_sweep"]
    ref = sweep[(sweep["variant"] == "pairs_only") & (sweep["beta"] == cfg.subset_beta)]["task1_accuracy_pct"]
    assert (full_subset == float(ref.iloc[0])).all()
    # One Task 1 event per training row and epoch: 252 rows x 5 epochs, in both layers.
    assert (t["memory_check"]["task1_pairs"] == quick.scalars["task1_n_train"] * 5).all()
    assert t["paper_beta"]["task1_accuracy_pct"].iloc[-1] == 99.48
    assert t["epochs"]["accuracy_pct"].between(0, 100).all()
    figs = EXP.plot(quick)
    assert set(figs) == {"fig3"} and len(figs["fig3"].axes) == 3


def test_same_seed_same_result_and_seed_matters(quick):
    again = EXP.run(EXP.config("quick"), seed=0)
    for name, table in quick.tables.items():
        assert table.equals(again.tables[name]), name
    other = EXP.run(EXP.config("quick"), seed=1)
    assert not other.tables["epochs"].equals(quick.tables["epochs"])


def test_network_init_is_pytorch_default_from_the_seed():
    gen = torch.Generator().manual_seed(0)
    net = fig3.make_network(64, 64, gen)
    bound = 1 / np.sqrt(64)
    w = net[0].weight.detach()
    assert net[0].bias is None and net[2].bias is None and tuple(net[2].weight.shape) == (4, 64)
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
    assert torch.equal(w, fig3.make_network(64, 64, torch.Generator().manual_seed(0))[0].weight.detach())


def test_bad_config():
    with pytest.raises(ValueError, match="data_dir"):
        EXP.run(EXP.config("quick", {"dataset": "mnist"}))
    with pytest.raises(ValueError, match="dataset"):
        EXP.run(EXP.config("quick", {"dataset": "cifar"}))
    with pytest.raises(ValueError, match="fashion_pair"):
        EXP.run(EXP.config("quick", {"fashion_pair": "both"}))
    with pytest.raises(ValueError, match="task2_digits"):
        EXP.run(EXP.config("quick", {"task2_digits": "1,2"}))
    with pytest.raises(ValueError, match="subset_fractions"):
        EXP.run(EXP.config("quick", {"subset_fractions": "0.5,1.5"}))
    with pytest.raises(ValueError, match="lr"):
        EXP.run(EXP.config("quick", {"lr": "-1"}))


def test_mnist_mode_runs_on_tiny_fake_idx_files(tmp_path):
    # Tiny stand-ins for MNIST (labels 0-3) and Fashion-MNIST (labels 0-3), 6x6 pixels.
    write_split_files(tmp_path / "MNIST" / "raw", n_train=40, n_test=12, rows=6, cols=6, gz=True, seed=1)
    write_split_files(tmp_path / "fashion-mnist", n_train=40, n_test=12, rows=6, cols=6, seed=2)
    cfg = EXP.config("quick", {"dataset": "mnist", "data_dir": str(tmp_path), "fashion_pair": "text"})
    result = EXP.run(cfg, seed=0)
    s = result.scalars
    assert s["dataset"] == "mnist" and s["input_dim"] == 36 and s["lr"] == 6e-4  # the paper's rate
    _, y_fashion = idx.load_idx_split(tmp_path / "fashion-mnist", "test")
    assert s["task2_n_test"] == int(np.isin(y_fashion, [0, 1]).sum())  # "text" pair: labels 0, 1
    assert result.config["data_dir"] == str(tmp_path)
    assert len(EXP.claims(result)) == 9
    figs = EXP.plot(result)  # the paper's logged curves are drawn beside ours in mnist mode
    labels = [line.get_label() for line in figs["fig3"].axes[1].get_lines()]
    assert "paper (logged)" in labels
    code = EXP.run(dataclasses.replace(cfg, fashion_pair="code"), seed=0)
    _, y_fashion_train = idx.load_idx_split(tmp_path / "fashion-mnist", "train")
    assert code.scalars["task2_n_train"] == int(np.isin(y_fashion_train, [2, 3]).sum())
    missing = dataclasses.replace(cfg, data_dir=str(tmp_path / "MNIST"))
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        EXP.run(missing)
