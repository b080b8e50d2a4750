"""The matrix-product synchronous step of DenseAssociativeMemory against two references.

The polynomial step is computed as one ``[..., M, P] @ [..., P, N]`` product when its
numbers provably fit float64's integers (``_exact_product``). It must agree bit for bit
with (a) the term-by-term formula over ``[..., M, P, N]`` that the class used before and
(b) a plain Python-int loop, ties (field exactly 0 -> +1) included; beyond the bound the
term-by-term formula is used unchanged.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from kvmem.memory.hopfield import DenseAssociativeMemory


def pm(shape, gen, dtype=torch.float64):
    """Random +-1 tensor."""
    return torch.where(torch.rand(shape, generator=gen) < 0.5, 1.0, -1.0).to(dtype)


def term_by_term(dam: DenseAssociativeMemory, states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Reference (a): the step as the class computed it before the product form.

    For each state, pattern and neuron, the overlap with that neuron left out, then the
    energy terms with the neuron set to +1 and to -1, summed over the patterns in float64.
    """
    xi = patterns.double()[..., None, :, :]  # [..., 1, P, N]
    s = states.double()
    overlap = s @ patterns.double().transpose(-1, -2)  # [..., M, P]
    others = overlap[..., None] - xi * s[..., None, :]  # [..., M, P, N]
    if dam.kind == "polynomial":
        field = dam._f(others + xi).sum(-2) - dam._f(others - xi).sum(-2)
    else:
        field = dam._difference(others, xi)
    return torch.where(field >= 0, 1.0, -1.0).to(states.dtype)


def int_loop(n: int, rectified: bool, states: torch.Tensor, patterns: torch.Tensor):
    """Reference (b): Python ints only. Returns (new states, number of exact ties).

    ``states [..., M, N]`` and ``patterns [..., P, N]`` are first broadcast to one batch shape.
    """
    batch = torch.broadcast_shapes(states.shape[:-2], patterns.shape[:-2])
    s_all = states.expand(*batch, *states.shape[-2:]).reshape(-1, *states.shape[-2:]).long().tolist()
    x_all = patterns.expand(*batch, *patterns.shape[-2:]).reshape(-1, *patterns.shape[-2:]).long().tolist()

    def f(v: int) -> int:
        return (max(v, 0) if rectified else v) ** n

    out, ties = [], 0
    for s_b, x_b in zip(s_all, x_all):
        rows = []
        for s in s_b:
            row = []
            for i in range(len(s)):
                total = 0
                for xi in x_b:
                    rest = sum(xi[j] * s[j] for j in range(len(s)) if j != i)
                    total += f(rest + xi[i]) - f(rest - xi[i])
                ties += total == 0
                row.append(1.0 if total >= 0 else -1.0)
            rows.append(row)
        out.append(rows)
    shape = (*batch, states.shape[-2], states.shape[-1])
    return torch.tensor(out, dtype=states.dtype).reshape(shape), ties


# (state batch shape, pattern batch shape): equal, broadcast states, and no batch.
BATCHES = [((), ()), ((2,), (2,)), ((1,), (2, 3)), ((), (3,)), ((2, 1), (2, 2))]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("rectified", [True, False])
def test_step_matches_int_loop_and_old_formula(n, rectified):
    gen = torch.Generator().manual_seed(100 * n + rectified)
    dam = DenseAssociativeMemory(energy="polynomial", n=n, rectified=rectified)
    ties = 0
    for (sb, pb), big_n, p, m in itertools.product(BATCHES, (1, 2, 5, 8), (1, 2, 7), (1, 3)):
        patterns = pm((*pb, p, big_n), gen)
        states = pm((*sb, m, big_n), gen)
        # Cues equal to stored patterns give the largest overlaps (m_mu = N).
        if m > 1 and sb == pb:
            states[..., 0, :] = patterns[..., 0, :]
        assert dam._exact_product(p, big_n)
        got = dam._step(states, patterns)
        want, t = int_loop(n, rectified, states, patterns)
        ties += t
        assert got.shape == want.shape and got.dtype == states.dtype
        assert torch.equal(got, want), (sb, pb, big_n, p, m)
        assert torch.equal(got, term_by_term(dam, states, patterns))
    # Without ties the +1 tie rule would go untested.
    assert ties > 0


@pytest.mark.parametrize("rectified", [True, False])
def test_step_exact_near_the_bound(rectified):
    """Fields of order 2^52 still give the exact signs (Python ints as reference)."""
    gen = torch.Generator().manual_seed(7)
    n, big_n, p = 12, 14, 5  # 6 * 5 * 16^12 = 30 * 2^48 <= 2^53
    dam = DenseAssociativeMemory(energy="polynomial", n=n, rectified=rectified)
    assert dam._exact_product(p, big_n) and not dam._exact_product(p + 1, big_n)
    patterns = pm((3, p, big_n), gen)
    states = pm((3, 6, big_n), gen)
    states[:, :p] = patterns  # stored cues: overlaps up to N
    states[:, :p, :2] *= -1  # and cues two flips away
    want, _ = int_loop(n, rectified, states, patterns)
    assert torch.equal(dam._step(states, patterns), want)


def test_beyond_the_bound_keeps_the_old_path(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    dam = DenseAssociativeMemory(energy="polynomial", n=12, rectified=False)
    patterns, states = pm((2, 6, 14), gen), pm((2, 4, 14), gen)
    assert not dam._exact_product(6, 14)

    def fail(*args):
        raise AssertionError("product form used beyond its exactness bound")

    monkeypatch.setattr(DenseAssociativeMemory, "_product_step", fail)
    got = dam._step(states, patterns)
    assert torch.equal(got, term_by_term(dam, states, patterns))
    assert torch.equal(got, int_loop(12, False, states, patterns)[0])


def test_guard():
    poly = DenseAssociativeMemory(energy="polynomial", n=3)
    assert poly._exact_product(1000, 100)
    assert poly._exact_product(2 ** 53 // (6 * 102 ** 3), 100)
    assert not poly._exact_product(2 ** 53 // (6 * 102 ** 3) + 1, 100)
    assert not DenseAssociativeMemory(energy="exponential", beta=0.1)._exact_product(1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_read_dtypes_and_device(dtype):
    gen = torch.Generator().manual_seed(11)
    dam = DenseAssociativeMemory(energy="polynomial", n=3)
    dam.write(pm((2, 9, 10), gen, dtype))
    cue = pm((2, 5, 10), gen, dtype)
    out = dam.read(cue)
    assert out.dtype == dtype and out.device == cue.device and out.shape == (2, 5, 10)
    assert torch.equal(out, term_by_term(dam, cue, dam.patterns))
    assert torch.equal(out.double(), int_loop(3, True, cue, dam.patterns)[0].double())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(12)
    dam = DenseAssociativeMemory(energy="polynomial", n=4, rectified=False)
    x, cue = pm((3, 40, 16), gen, torch.float32), pm((3, 8, 16), gen, torch.float32)
    dam.write(x)
    want = dam.read(cue)
    dam.to("cuda")
    got = dam.read(cue.cuda())
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)


def reference_step(self, states, patterns):
    return term_by_term(self, states, patterns)


# Asynchronous sweeps update one neuron at a time (N Python steps per sweep): one small case.
RETRIEVALS = [("sync", 2, 32, 10, True), ("sync", 3, 16, 30, True), ("sync", 3, 12, 20, False),
              ("sync", 4, 10, 25, True), ("async", 3, 12, 20, False)]


@pytest.mark.parametrize("mode,n,big_n,p,rectified", RETRIEVALS)
def test_retrieve_identical_to_old_formula(monkeypatch, mode, n, big_n, p, rectified):
    gen = torch.Generator().manual_seed(n * 1000 + big_n)
    x = pm((4, p, big_n), gen, torch.float32)
    flips = torch.rand((4, p, big_n), generator=gen) < 0.2
    cue = torch.where(flips, -x, x)
    clamp = torch.zeros(big_n, dtype=torch.bool)
    clamp[:2] = True

    def run():
        dam = DenseAssociativeMemory(energy="polynomial", n=n, rectified=rectified)
        dam.write(x)
        return [dam.retrieve(cue, steps=6, mode=mode, seed=5, clamp=c) for c in (None, clamp)]

    got = run()
    with monkeypatch.context() as patch:
        patch.setattr(DenseAssociativeMemory, "_step", reference_step)
        want = run()
    for g, w in zip(got, want):
        assert torch.equal(g.states, w.states)
        assert torch.equal(g.steps, w.steps)
        assert torch.equal(g.converged, w.converged)
        assert g.iterations == w.iterations
    # The cues were noisy: the dynamics had something to do.
    assert bool((got[0].steps > 0).any())
