"""The exact CPU fast paths of ClassicalHopfield.retrieve (Hebbian) against plain loops.

The references below step one state at a time with the integer weight matrix
N W = X^T X (minus P on the diagonal), in numpy int64, for the whole budget: no cycle
shortcut, no compaction, no incremental overlaps. The asynchronous one visits neurons in
the order ``torch.rand(shape).argsort(-1)`` that ``retrieve`` documents, one draw per sweep.
"""

import numpy as np
import pytest
import torch

import kvmem.memory.hopfield as hopfield
from kvmem.memory.hopfield import ClassicalHopfield
from kvmem.memory import _hopfield_numba

pytestmark = pytest.mark.usefixtures("one_thread")


def rand_pm(shape, rng, dtype=torch.float64):
    return torch.from_numpy(rng.choice([-1.0, 1.0], size=shape)).to(dtype)


def int_weights(x, zero_diagonal):
    """N W per memory, int64: x [C, P, N] -> [C, N, N]."""
    xi = x.astype(np.int64)
    w = np.einsum("cpi,cpj->cij", xi, xi)
    if zero_diagonal:
        w -= xi.shape[1] * np.eye(xi.shape[2], dtype=np.int64)
    return w


def flat_inputs(net, cue, clamp):
    x = net.patterns.numpy()
    batch, (p, n), m = x.shape[:-2], x.shape[-2:], cue.shape[-2]
    shape = (*batch, m, n)
    cues = np.broadcast_to(cue.numpy(), shape).reshape(-1, m, n)
    keep = np.zeros(shape, dtype=bool) if clamp is None else np.broadcast_to(clamp.numpy(), shape)
    return x.reshape(-1, p, n), cues, keep.reshape(-1, m, n), shape


def plain_sync(net, cue, clamp, steps):
    x, cues, keep, shape = flat_inputs(net, cue, clamp)
    w = int_weights(x, net.zero_diagonal)
    states, moved = cues.copy(), np.zeros(cues.shape[:2], dtype=np.int64)
    done = np.zeros(cues.shape[:2], dtype=bool)
    exits = [0]
    for c in range(cues.shape[0]):
        for k in range(cues.shape[1]):
            s, k_, exit_ = cues[c, k].copy(), keep[c, k], steps
            for t in range(1, steps + 1):
                new = np.where(w[c] @ s.astype(np.int64) >= 0, 1.0, -1.0)
                new[k_] = cues[c, k][k_]
                if np.array_equal(new, s):
                    done[c, k], exit_ = True, t
                    break
                moved[c, k] += 1
                s = new
            states[c, k] = s
            exits.append(exit_)
    return states.reshape(shape), moved.reshape(shape[:-1]), done.reshape(shape[:-1]), max(exits)


def plain_async(net, cue, clamp, steps, seed):
    x, cues, keep, shape = flat_inputs(net, cue, clamp)
    w = int_weights(x, net.zero_diagonal)
    gen = torch.Generator().manual_seed(seed)
    states, moved = cues.copy(), np.zeros(cues.shape[:2], dtype=np.int64)
    done = np.zeros(cues.shape[:2], dtype=bool)
    run = 0
    while run < steps and not done.all():
        run += 1
        order = torch.rand(shape, generator=gen).argsort(dim=-1).reshape(cues.shape).numpy()
        for c in range(cues.shape[0]):
            for k in range(cues.shape[1]):
                if done[c, k]:
                    continue
                s, changed = states[c, k], False
                for i in order[c, k]:
                    if keep[c, k, i]:
                        continue
                    new = 1.0 if w[c, i] @ s.astype(np.int64) >= 0 else -1.0
                    if new != s[i]:
                        s[i], changed = new, True
                if changed:
                    moved[c, k] += 1
                else:
                    done[c, k] = True
    return states.reshape(shape), moved.reshape(shape[:-1]), done.reshape(shape[:-1]), run


def assert_same(r, ref, dtype):
    states, moved, done, iterations = ref
    assert r.states.dtype == dtype and r.states.shape == states.shape
    assert np.array_equal(r.states.numpy(), states)
    assert np.array_equal(r.steps.numpy(), moved)
    assert np.array_equal(r.converged.numpy(), done)
    assert r.iterations == iterations


CASES = [  # batch shape, P, N, cues per memory (None: the stored patterns), dtype, zero diagonal, clamp
    ((), 9, 20, 6, torch.float64, True, None),
    ((3,), 7, 16, None, torch.float32, True, "neurons"),
    ((2, 2), 10, 24, 5, torch.float32, True, "full"),
    ((5,), 6, 18, 4, torch.float64, False, None),
    ((4,), 12, 20, 3, torch.float32, True, None),
    ((3,), 8, 22, 1, torch.float64, True, "full"),  # a cue broadcast over the batch below
]


def make_case(i, seed, cases=CASES):
    batch, p, n, m, dtype, zero_diagonal, clamp_kind = cases[i]
    rng = np.random.default_rng(seed)
    x = rand_pm((*batch, p, n), rng, dtype)
    net = ClassicalHopfield(zero_diagonal=zero_diagonal)
    net.write(x)
    cue = x.clone() if m is None else rand_pm((*batch, m, n), rng, dtype)
    if i == 5:
        cue = cue[0]  # [M, N]: one cue for every memory
    clamp = None
    if clamp_kind == "neurons":
        clamp = torch.from_numpy(rng.random(n) < 0.2)
    elif clamp_kind == "full":
        clamp = torch.from_numpy(rng.random(tuple(cue.shape)) < 0.25)
    return net, cue, clamp, dtype


@pytest.mark.parametrize("case", range(len(CASES)))
def test_sync_equals_plain_loop(case):
    # P/N from 0.3 to 0.6: cues wander, fall into 2-cycles or settle after long transients.
    net, cue, clamp, dtype = make_case(case, 100 + case)
    for steps in (0, 1, 2, 3, 7, 20):
        assert_same(net.retrieve(cue, steps=steps, clamp=clamp), plain_sync(net, cue, clamp, steps), dtype)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_async_equals_plain_loop(case):
    net, cue, clamp, dtype = make_case(case, 200 + case)
    for steps, seed in ((0, 0), (1, 1), (2, 2), (12, 3)):
        r = net.retrieve(cue, steps=steps, clamp=clamp, mode="async", seed=seed)
        assert_same(r, plain_async(net, cue, clamp, steps, seed), dtype)


def test_sync_cases_exercise_cycles_transients_and_fixed_points():
    # The comparisons above are only worth something if the shortcuts were taken.
    cycling = settled_late = fixed = 0
    for case in range(len(CASES)):
        net, cue, clamp, _ = make_case(case, 100 + case)
        r = net.retrieve(cue, steps=20, clamp=clamp)
        cycling += int((~r.converged).sum())
        settled_late += int((r.converged & (r.steps >= 3)).sum())
        fixed += int((r.steps == 0).sum())
    assert cycling > 0 and settled_late > 0 and fixed > 0


def test_two_cycle_ends_on_the_parity_of_the_budget():
    # Stored [1, 1]: N W = [[0, 1], [1, 0]], so [1, -1] and [-1, 1] swap for ever, while the
    # stored pattern itself is a fixed point; both in one batch.
    net = ClassicalHopfield()
    net.write(torch.tensor([[1.0, 1.0]]))
    cue = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    for steps in range(1, 8):
        r = net.retrieve(cue, steps=steps)
        expected = [1.0, -1.0] if steps % 2 == 0 else [-1.0, 1.0]
        assert r.states.tolist() == [expected, [1.0, 1.0]]
        assert r.steps.tolist() == [steps, 0] and r.converged.tolist() == [False, True]
        assert r.iterations == steps
        assert_same(r, plain_sync(net, cue, None, steps), torch.float32)


def test_sync_many_memories_packs_the_used_patterns(monkeypatch):
    # Many memories, few slow cues: later steps run on a copy of the used memories' patterns.
    # This is about the numpy path's layout, so that path is forced (numba has no layout).
    monkeypatch.setattr(_hopfield_numba, "backend", "numpy")
    rng = np.random.default_rng(7)
    x = rand_pm((16, 12, 32), rng)
    net = ClassicalHopfield()
    net.write(x)
    packed = []
    init = hopfield._Slots.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        packed.append(self.mem is not None)

    monkeypatch.setattr(hopfield._Slots, "__init__", spy)
    r = net.retrieve(x, steps=25)
    assert any(packed)
    assert_same(r, plain_sync(net, x, None, 25), torch.float64)


def test_async_equal_keys_follow_argsort(monkeypatch):
    # Keys on a coarse grid tie often; the visiting order among equal keys is whatever
    # argsort gives, which the fast path must reproduce.
    rand = torch.rand

    def coarse(*args, **kwargs):
        return (rand(*args, **kwargs) * 5).floor() / 5

    monkeypatch.setattr(torch, "rand", coarse)
    for case in (0, 2, 3):
        net, cue, clamp, dtype = make_case(case, 300 + case)
        r = net.retrieve(cue, steps=10, clamp=clamp, mode="async", seed=case)
        assert_same(r, plain_async(net, cue, clamp, 10, case), dtype)


def test_async_leaves_a_given_generator_where_the_plain_loop_does():
    net, cue, clamp, _ = make_case(2, 400)
    gen = torch.Generator().manual_seed(11)
    r = net.retrieve(cue, steps=30, clamp=clamp, mode="async", seed=gen)
    ref = torch.Generator().manual_seed(11)
    for _ in range(r.iterations):
        torch.rand(r.states.shape, generator=ref)
    assert 0 < r.iterations < 30 and torch.equal(gen.get_state(), ref.get_state())


def test_hebbian_weights_are_built_on_first_use(tmp_path):
    rng = np.random.default_rng(5)
    x = rand_pm((2, 6, 10), rng, torch.float32)
    net = ClassicalHopfield()
    net.write(x[:, :3])
    net.write(x[:, 3:])
    net.retrieve(x, steps=5)
    assert net._buffers["weights"] is None  # retrieval never needed them
    n = 10
    w = x.transpose(-1, -2) @ x / n
    w = w.masked_fill(torch.eye(n, dtype=torch.bool), 0.0)
    assert torch.equal(net.weights, w)
    fresh = ClassicalHopfield()
    fresh.write(x)
    state = fresh.state_dict()
    assert torch.equal(state["weights"], w)
    other = ClassicalHopfield()
    other.load_state_dict(state)
    assert torch.equal(other.retrieve(x[:, :2]).states, net.retrieve(x[:, :2]).states)
    # A dtype change converts W as it was built (float32), as an eager write would.
    lazy = ClassicalHopfield()
    lazy.write(x)
    assert torch.equal(lazy.double().weights, w.double())


def test_nan_and_non_binary_cues_are_rejected():
    net = ClassicalHopfield()
    net.write(torch.tensor([[1.0, -1.0, 1.0]]))
    with pytest.raises(ValueError, match="cue: contains NaN"):
        net.retrieve(torch.tensor([[1.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"cue: ClassicalHopfield works with \+-1"):
        net.retrieve(torch.tensor([[1.0, 0.5, 1.0]]))
