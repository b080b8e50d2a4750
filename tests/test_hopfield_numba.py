"""The numba kernel of the synchronous Hebbian dynamics against plain loops and the numpy path.

The reference (``plain_sync`` of ``test_hopfield_fastpaths``) steps one state at a time with
the integer matrix N W = X^T X (minus P on the diagonal with a zero diagonal), in numpy
int64, for the whole budget: no cycle shortcut, no incremental overlaps. The numpy fast path (``_sync_hebbian``) must agree too,
in every output: states, steps moved, converged flags and iterations.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

import test_hopfield_fastpaths as fastpaths  # noqa: E402
from test_hopfield_fastpaths import plain_sync, rand_pm  # noqa: E402  (the int64 reference loop)
from test_hopfield_fastpaths import assert_same as check  # noqa: E402

from kvmem.memory import _hopfield_numba as nb  # noqa: E402
from kvmem.memory.hopfield import ClassicalHopfield  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def backend(monkeypatch):
    """Set the backend for one test: ``backend("numba")``."""
    return lambda name: monkeypatch.setattr(nb, "backend", name)


CASES = [  # batch shape, P, N, cues per memory (None: the stored patterns), dtype, zero diagonal, clamp
    ((), 9, 20, 6, torch.float64, True, None),
    ((3,), 7, 16, None, torch.float32, True, "neurons"),
    ((2, 2), 10, 24, 5, torch.float32, True, "full"),
    ((5,), 6, 18, 4, torch.float64, False, None),
    ((4,), 12, 20, 3, torch.float32, False, "full"),
    ((3,), 8, 22, 1, torch.float64, True, "full"),  # one cue [M, N] broadcast over the batch
]


def make_case(i, seed):
    return fastpaths.make_case(i, seed, CASES)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_numba_equals_plain_loop_and_numpy_path(case, backend):
    # P/N from 0.3 to 0.7: cues settle late, fall into 2-cycles, or run out of budget
    # (even and odd budgets end a 2-cycle on either of its states).
    net, cue, clamp, dtype = make_case(case, 500 + case)
    before = cue.clone()
    for steps in (0, 1, 2, 3, 4, 7, 20):
        backend("numba")
        r = net.retrieve(cue, steps=steps, clamp=clamp)
        check(r, plain_sync(net, cue, clamp, steps), dtype)
        backend("numpy")
        check(net.retrieve(cue, steps=steps, clamp=clamp),
              (r.states.numpy(), r.steps.numpy(), r.converged.numpy(), r.iterations), dtype)
    assert torch.equal(cue, before)


def test_cases_exercise_cycles_transients_budget_and_fixed_points(backend):
    backend("numba")
    cycling = settled_late = fixed = 0
    for case in range(len(CASES)):
        net, cue, clamp, _ = make_case(case, 500 + case)
        r = net.retrieve(cue, steps=20, clamp=clamp)
        cycling += int((~r.converged & (r.steps == 20)).sum())
        settled_late += int((r.converged & (r.steps >= 3)).sum())
        fixed += int((r.steps == 0).sum())
    assert cycling > 0 and settled_late > 0 and fixed > 0


def test_two_cycle_parity_and_kernel_direct(backend):
    # Stored [1, 1]: N W = [[0, 1], [1, 0]] swaps [1, -1] and [-1, 1] for ever.
    backend("numba")
    net = ClassicalHopfield()
    net.write(torch.tensor([[1.0, 1.0]]))
    cue = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    for steps in range(0, 8):
        r = net.retrieve(cue, steps=steps)
        moving = [1.0, -1.0] if steps % 2 == 0 else [-1.0, 1.0]
        assert r.states.tolist() == [moving, [1.0, 1.0]]
        assert r.steps.tolist() == [steps, 0]
        assert r.converged.tolist() == [False, steps > 0]
        assert r.iterations == steps
    # The kernel itself: no rows, no steps.
    x = torch.ones(2, 3, 4)
    out, moved, done, it = nb.sync_hebbian(x, torch.ones(0, 4), 0, None, 5, True)
    assert out.shape == (0, 4) and moved.shape == done.shape == (0,) and it == 0
    s = torch.ones(4, 4)
    s[0, 0] = -1
    out, moved, done, it = nb.sync_hebbian(x, s, 2, None, 0, True)
    assert np.array_equal(out, s.numpy()) and not moved.any() and not done.any() and it == 0
    with pytest.raises(TypeError, match="float32"):
        nb.sync_hebbian(x.double(), s.double(), 2, None, 3, True)


def test_capacity_sized_auto_uses_numba_and_matches(backend, monkeypatch):
    rng = np.random.default_rng(3)
    trials, p, n = 8, 30, 160  # alpha ~ 0.19: many wandering probes
    x = rand_pm((trials, p, n), rng, torch.float32)
    net = ClassicalHopfield()
    net.write(x)
    cue = x * torch.where(torch.from_numpy(rng.random((trials, p, n)) < 0.05), -1.0, 1.0)
    backend("auto")
    assert nb.sync_backend(trials * p, p, n) == "numba"
    calls = []
    kernel = nb.sync_hebbian
    monkeypatch.setattr(nb, "sync_hebbian", lambda *a: calls.append(1) or kernel(*a))
    r = net.retrieve(cue, steps=30)
    assert calls == [1]
    backend("numpy")
    ref = net.retrieve(cue, steps=30)
    assert torch.equal(r.states, ref.states) and torch.equal(r.steps, ref.steps)
    assert torch.equal(r.converged, ref.converged) and r.iterations == ref.iterations
    assert int(r.steps.max()) >= 3  # some probes moved for several steps


def test_backend_choice(backend, monkeypatch):
    backend("auto")
    assert nb.sync_backend(0, 10, 100) == "numpy"
    assert nb.sync_backend(10, 10, 100) == "numpy"  # below MIN_WORK: not worth a compile
    assert nb.sync_backend(nb.MIN_WORK, 10, 1) == "numba"
    assert nb.sync_backend(10**6, 2**12, 2**12) == "numpy"  # P N >= 2^24: float64 fields
    backend("numba")
    assert nb.sync_backend(10, 10, 100) == "numba"
    backend("numpy")
    assert nb.sync_backend(10**6, 10, 100) == "numpy"
    backend("fast")
    with pytest.raises(ValueError, match="KVMEM_HOPFIELD_BACKEND"):
        nb.sync_backend(10, 10, 100)
    # Forced numpy: the kernel is never called.
    backend("numpy")
    monkeypatch.setattr(nb, "sync_hebbian", lambda *a: pytest.fail("numba kernel called"))
    net = ClassicalHopfield()
    net.write(torch.ones(2, 300, 200))
    net.retrieve(torch.ones(2, 300, 200), steps=3)


def test_missing_numba_falls_back_or_raises(backend, monkeypatch):
    monkeypatch.setattr(nb, "_kernel", None)
    monkeypatch.setattr(nb, "_load_error", ImportError("no numba here"))
    backend("auto")
    assert nb.sync_backend(10**5, 10, 100) == "numpy"
    backend("numba")
    with pytest.raises(ImportError, match="numba"):
        nb.sync_backend(10**5, 10, 100)
    # Without numba the Hebbian retrieval still works (numpy path).
    backend("auto")
    net, cue, clamp, dtype = make_case(2, 77)
    check(net.retrieve(cue, steps=9, clamp=clamp), plain_sync(net, cue, clamp, 9), dtype)
