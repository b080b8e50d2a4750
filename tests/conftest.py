"""Shared test settings: hypothesis profiles sized for a 2-core CI machine."""

import pytest
from hypothesis import HealthCheck, settings

from kvmem.experiments.base import torch_threads

settings.register_profile("kvmem", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kvmem")


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one intra-op thread for a test module of many tiny operations (a second
    thread only adds synchronisation, several times slower on a busy 2-core machine).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield
