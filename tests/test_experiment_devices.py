"""The ``device`` setting that every registered experiment shares.

Each experiment takes ``device`` ('cpu', 'cuda' or 'cuda:N') as the last, documented field
of its config, with the default 'cpu' that no profile changes, and rejects anything else
(and CUDA where there is none) with a ValueError naming ``device`` before doing any work.
The CPU-against-CUDA comparisons, which need per-experiment tolerances, are in
``test_experiment_devices_{core,bio,puzzles}.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kvmem import experiments

NAMES = experiments.names()


def _quick(name: str, device: str):
    return dataclasses.replace(experiments.REGISTRY[name].profiles["quick"], device=device)


@pytest.mark.parametrize("name", NAMES)
def test_device_is_the_last_documented_setting_and_defaults_to_cpu(name):
    experiment = experiments.REGISTRY[name]
    fields = dataclasses.fields(experiment.config_type)
    assert fields[-1].name == "device"
    assert fields[-1].default == "cpu"
    for profile in experiment.profiles.values():
        assert profile.device == "cpu"
    assert "device:" in experiment.config_type.__doc__
    # The command line's --set parses it as a plain string.
    assert experiment.config("quick", {"device": "cuda:0"}).device == "cuda:0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_rejected(name, device):
    with pytest.raises(ValueError, match="device"):
        experiments.REGISTRY[name].run(_quick(name, device), seed=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", ["tpu", "gpu", "mps", "", "cuda:x", "not a device"])
def test_unknown_device_is_rejected(name, bad):
    with pytest.raises(ValueError, match="device"):
        experiments.REGISTRY[name].run(_quick(name, bad), seed=0)
