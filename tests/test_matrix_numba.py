"""The compiled block loop of the chunked delta write against a float64 pair loop and the torch path.

The reference is the delta rule written out pair by pair in numpy float64,
``S <- S + beta phi_n^T (v_n - phi_n S)``, independent of both the chunkwise form and
torch. The float32 writes must agree with it to float32 rounding (relative 1e-5 of max|S|,
the bench's check), and the numba and torch paths with each other to the same.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

import kvmem  # noqa: E402
from kvmem.memory import _matrix_numba as nb  # noqa: E402
from kvmem.memory import matrix as matrix_module  # noqa: E402
from kvmem.experiments.base import torch_threads  # noqa: E402

TOL = 1e-5


@pytest.fixture
def calls(monkeypatch):
    """Count the kernel's runs; every write on the auto path takes numba (no size floor)."""
    seen = []
    real = nb.delta_blocks

    def counted(*args, **kwargs):
        seen.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(nb, "delta_blocks", counted)
    monkeypatch.setattr(nb, "backend", "auto")
    monkeypatch.setattr(nb, "MIN_WORK", 0)
    return seen


def pairs(n, dk, dv, seed, batch=()):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(*batch, n, dk, generator=gen)
    return k / k.norm(dim=-1, keepdim=True), torch.randn(*batch, n, dv, generator=gen)


def loop(phi, v, beta, s=None):
    """float64 delta rule pair by pair: phi [N, F], v [N, Dv] -> S [F, Dv]."""
    phi, v = np.asarray(phi, dtype=np.float64), np.asarray(v, dtype=np.float64)
    s = np.zeros((phi.shape[1], v.shape[1])) if s is None else np.array(s, dtype=np.float64)
    for k_n, v_n in zip(phi, v):
        s += beta * np.outer(k_n, v_n - k_n @ s)
    return s


def rel(a, ref):
    return float(np.abs(np.asarray(a, dtype=np.float64) - ref).max() / np.abs(ref).max())


def write(k, v, chunk, backend, monkeypatch, **params):
    monkeypatch.setattr(nb, "backend", backend)
    mem = kvmem.MatrixMemory(k.shape[-1], v.shape[-1], rule="delta", **params)
    mem.write(k, v, chunk_size=chunk)
    return mem


@pytest.mark.parametrize("block, n, chunk, dk, dv, beta", [
    (64, 1000, 300, 32, 48, 1.0),   # chunks and blocks with remainders
    (16, 517, 4096, 24, 37, 0.7),   # one chunk; Dv not a multiple of 16 (uneven column split)
    (8, 203, 64, 12, 5, 1.4),       # fewer columns than a task's minimum: one task
    (32, 130, 1000, 40, 64, 0.5),   # N < 8 C
    (64, 50, 1000, 16, 32, 1.0),    # N < C: one short block
])
def test_numba_matches_the_pair_loop_and_the_torch_path(block, n, chunk, dk, dv, beta, calls, monkeypatch):
    monkeypatch.setattr(matrix_module, "DELTA_BLOCK_NUMBA", block)
    k, v = pairs(n, dk, dv, seed=n)
    ref = loop(k, v, beta)
    with torch_threads(2):
        fast = write(k, v, chunk, "auto", monkeypatch, beta=beta)
    assert calls, "the numba kernel did not run"
    slow = write(k, v, chunk, "torch", monkeypatch, beta=beta)
    assert rel(fast.matrix, ref) < TOL
    assert rel(fast.matrix, slow.matrix.double().numpy()) < TOL
    assert int(fast.writes) == n


def test_a_feature_map_a_key_norm_and_a_state_written_before(calls, monkeypatch):
    k, v = pairs(700, 6, 20, seed=3)
    beta = 0.9
    with torch_threads(2):
        mem = write(k[:100], v[:100], 64, "auto", monkeypatch, beta=beta, feature_map="elu_plus_one", key_norm="l2")
        start = mem.matrix.clone()
        mem.write(k[100:], v[100:], chunk_size=256)
    assert len(calls) >= 2
    phi = mem.features(k).numpy()
    ref = loop(phi[100:], v[100:], beta, s=start.numpy())
    assert rel(mem.matrix, ref) < TOL
    assert rel(mem.matrix, loop(phi, v, beta)) < TOL


def test_a_batch_of_memories_is_split_into_tasks(calls, monkeypatch):
    k, v = pairs(333, 16, 40, seed=4, batch=(3,))
    with torch_threads(2):
        mem = write(k, v, 128, "auto", monkeypatch, beta=0.6)
    assert calls and calls[0][0] == 3
    for i in range(3):
        assert rel(mem.matrix[i], loop(k[i], v[i], 0.6)) < TOL
    # Three memories over two threads: each memory is one task (tasks cover every column once).
    assert nb._tasks(3, 40, 2) == [(0, 0, 40), (1, 0, 40), (2, 0, 40)]
    assert nb._tasks(1, 40, 2) == [(0, 0, 16), (0, 16, 40)]
    assert nb._tasks(1, 128, 4) == [(0, 0, 32), (0, 32, 64), (0, 64, 96), (0, 96, 128)]


def test_one_thread_and_two_threads_agree(calls, monkeypatch):
    k, v = pairs(900, 32, 64, seed=5)
    with torch_threads(1):
        one = write(k, v, 512, "auto", monkeypatch, beta=1.0).matrix
    with torch_threads(2):
        two = write(k, v, 512, "auto", monkeypatch, beta=1.0).matrix
    # One thread runs all 64 columns as one task, two threads two tasks of 32 columns.
    assert len(calls) == 4
    assert rel(one, loop(k, v, 1.0)) < TOL
    assert rel(two, one.double().numpy()) < TOL


def test_the_stability_check_and_its_message_are_unchanged(calls, monkeypatch):
    k, v = pairs(300, 8, 16, seed=6)
    mem = write(k[:10], v[:10], 64, "auto", monkeypatch, beta=1.5)
    before = mem.matrix.clone()
    bad = k.clone()
    bad[250] *= 3.0
    messages = []
    for backend in ("auto", "torch"):
        monkeypatch.setattr(nb, "backend", backend)
        with pytest.raises(ValueError, match=r"beta \* \|phi\(k\)\|\^2 < 2") as err:
            mem.write(bad, v, chunk_size=128)
        messages.append(str(err.value))
        assert torch.equal(mem.matrix, before) and int(mem.writes) == 10
    assert messages[0] == messages[1]


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(nb, "backend", "auto")
    assert nb.delta_backend("cpu", torch.float32, 1 << 14, 128, 128) == "numba"
    assert nb.delta_backend("cpu", torch.float32, 8, 8, 8) == "torch"  # below MIN_WORK
    assert nb.delta_backend("cpu", torch.float64, 1 << 14, 128, 128) == "torch"
    assert nb.delta_backend("cpu", torch.float32, 1 << 14, 128, 128, requires_grad=True) == "torch"
    assert nb.delta_backend("meta", torch.float32, 1 << 14, 128, 128) == "torch"
    monkeypatch.setattr(nb, "backend", "numba")
    assert nb.delta_backend("cpu", torch.float32, 8, 8, 8) == "numba"
    assert nb.delta_backend("cpu", torch.float64, 8, 8, 8) == "torch"
    monkeypatch.setattr(nb, "backend", "torch")
    assert nb.delta_backend("cpu", torch.float32, 1 << 14, 128, 128) == "torch"
    monkeypatch.setattr(nb, "backend", "fast")
    with pytest.raises(ValueError, match="KVMEM_MATRIX_BACKEND"):
        nb.delta_backend("cpu", torch.float32, 1 << 14, 128, 128)


def test_forced_torch_path_and_float64_never_call_the_kernel(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the numba kernel ran")

    monkeypatch.setattr(nb, "delta_blocks", boom)
    monkeypatch.setattr(nb, "MIN_WORK", 0)
    k, v = pairs(260, 8, 16, seed=7)
    ref = loop(k, v, 0.8)
    mem = write(k, v, 100, "torch", monkeypatch, beta=0.8)
    assert rel(mem.matrix, ref) < TOL
    mem = write(k.double(), v.double(), 100, "auto", monkeypatch, beta=0.8)
    assert rel(mem.matrix, ref) < 1e-12


def test_the_scipy_blas_fallback(calls, monkeypatch):
    """Without torch's MKL the kernel calls scipy's BLAS (single-threaded via threadpoolctl)."""
    monkeypatch.setattr(nb, "_torch_mkl", lambda: None)
    for name in ("_kernel", "_load_error", "_mkl_local", "_limit_blas", "blas"):
        monkeypatch.setattr(nb, name, None)  # restored afterwards, with the loaded kernel
    k, v = pairs(450, 24, 40, seed=8)
    with torch_threads(2):
        mem = write(k, v, 200, "numba", monkeypatch, beta=0.9)
    assert nb.blas == "scipy" and nb._mkl_local is None and calls
    assert rel(mem.matrix, loop(k, v, 0.9)) < TOL


def test_keys_that_require_grad_written_under_no_grad(calls, monkeypatch):
    k, v = pairs(200, 8, 16, seed=9)
    k.requires_grad_(True)
    with torch.no_grad():
        mem = write(k, v, 128, "auto", monkeypatch, beta=1.0)
    assert calls
    assert rel(mem.matrix, loop(k.detach(), v, 1.0)) < TOL


def test_a_forked_child_gets_a_pool_of_its_own():
    """The parent's pool, copied into a forked child, has no threads: the child makes its own."""
    import os

    assert nb._executor(1).submit(int, "7").result(timeout=10) == 7  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if a task runs on its pool
        code = 1
        try:
            code = 0 if nb._executor(1).submit(int, "8").result(timeout=10) == 8 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
