"""kvmem.bio.scaffold: the grid code, clean-up, path integration, the online pseudo-inverse
and the scaffold memory, each against a plain reference; bad input; determinism."""

import itertools
import math

import pytest
import torch

import kvmem
from kvmem.bio import scaffold as sc
from kvmem.bio.scaffold import ScaffoldMemory


def loop_code(pos, periods, dim):
    """Grid state of one position, written out with Python lists."""
    out = []
    for p in periods:
        block = [0.0] * p**dim
        block[pos[0] % p if dim == 1 else (pos[0] % p) * p + pos[1] % p] = 1.0
        out += block
    return out


def pm1(shape, seed):
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)).double() * 2 - 1


# -- the grid code ----------------------------------------------------------------------


@pytest.mark.parametrize("periods,dim", [((3, 4, 5), 1), ((2, 3, 5), 2), ((5, 7), 2)])
def test_grid_code_matches_loop(periods, dim):
    big = math.prod(periods)
    positions = [list(p) for p in itertools.product(range(-3, big + 4, 5), repeat=dim)]
    got = sc.grid_code(torch.tensor(positions), periods, dim)
    want = torch.tensor([loop_code(p, periods, dim) for p in positions])
    assert torch.equal(got, want)


@pytest.mark.parametrize("periods,dim", [((3, 4, 5), 1), ((2, 3, 5), 2)])
def test_states_distinct_for_every_position_up_to_product(periods, dim):
    states, pos = sc.grid_states(periods, dim)
    big = math.prod(periods)
    assert states.shape == (big**dim, sum(p**dim for p in periods)) == (sc.num_positions(periods, dim), sc.num_grid_cells(periods, dim))
    assert torch.unique(states, dim=0).shape[0] == big**dim
    # ... and the code repeats with period L along each axis (the Chinese remainder theorem).
    shifted = sc.grid_code(pos + big, periods, dim)
    assert torch.equal(shifted, states)
    assert torch.equal(sc.grid_position(states, periods, dim), pos)


def test_module_wta_matches_loop_with_ties():
    periods = (3, 4, 5)
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 3, (50, 12), generator=gen).double()   # many ties
    got = sc.module_wta(g, periods)
    want = torch.zeros_like(g)
    for r in range(g.shape[0]):
        start = 0
        for p in periods:
            block = g[r, start : start + p].tolist()
            best = max(block)
            want[r, start + block.index(best)] = 1.0                # the first maximum wins
            start += p
    assert torch.equal(got, want)


@pytest.mark.parametrize("periods,dim", [((3, 4, 5), 1), ((2, 3, 5), 2)])
def test_path_integration_is_modular_arithmetic(periods, dim):
    gen = torch.Generator().manual_seed(1)
    pos = torch.randint(-100, 100, (64, dim), generator=gen)
    vel = torch.randint(-40, 40, (64, dim), generator=gen)
    got = sc.path_integrate(sc.grid_code(pos, periods, dim), vel, periods, dim)
    assert torch.equal(got, sc.grid_code(pos + vel, periods, dim))
    # Any activity vector is permuted within its modules: compare with an explicit loop.
    g = torch.randn(5, sc.num_grid_cells(periods, dim), generator=gen)
    v = vel[:5]
    out = sc.path_integrate(g, v, periods, dim)
    for r in range(5):
        start = 0
        for p in periods:
            for j in range(p**dim):
                if dim == 1:
                    src = (j - int(v[r, 0])) % p
                else:
                    a, b = divmod(j, p)
                    src = ((a - int(v[r, 0])) % p) * p + (b - int(v[r, 1])) % p
                assert out[r, start + j] == g[r, start + src]
            start += p**dim
    # Shifts compose, and an integer velocity means the same step on every axis.
    two = sc.path_integrate(sc.path_integrate(g, v, periods, dim), v, periods, dim)
    assert torch.equal(two, sc.path_integrate(g, 2 * v, periods, dim))
    assert torch.equal(sc.path_integrate(g, 3, periods, dim), sc.path_integrate(g, [3] * dim, periods, dim))


@pytest.mark.parametrize("dim", [1, 2])
def test_scaffold_path_visits_distinct_neighbouring_positions(dim):
    periods = (2, 3, 5)
    n = sc.num_positions(periods, dim)
    pos, vel = sc.scaffold_path(periods, dim, n, start=[4] * dim)
    assert torch.unique(pos, dim=0).shape[0] == n
    assert torch.equal((pos[:-1] + vel) % 30, pos[1:])
    assert int(vel.abs().sum(-1).max()) == 1                     # one step along one axis at a time
    assert pos[0].tolist() == [4] * dim


# -- pseudo-inverses ----------------------------------------------------------------------


@pytest.mark.parametrize("n,d", [(5, 9), (9, 5), (7, 7)])
def test_online_pinv_matches_torch_pinv(n, d):
    gen = torch.Generator().manual_seed(n * 10 + d)
    a = torch.randn(3, n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(3, n, 4, generator=gen, dtype=torch.float64)
    w = sc.online_pinv(a, y)
    assert torch.allclose(w, (torch.linalg.pinv(a) @ y).mT, atol=1e-9)


def test_online_pinv_with_dependent_and_zero_inputs():
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    a = torch.cat([base, base[:2] * 2 - base[2:], torch.zeros(1, 10, dtype=torch.float64), base[:1]], dim=0)
    y = torch.randn(a.shape[0], 3, generator=gen, dtype=torch.float64)
    assert torch.linalg.matrix_rank(a) == 4
    want = (torch.linalg.pinv(a) @ y).mT
    assert torch.allclose(sc.online_pinv(a, y), want, atol=1e-9)
    # The recursion's state is (A A^T)^+ and I - A A^+ (inputs as columns).
    w, gram, resid = sc.online_pinv_init(10, 3)
    for k in range(a.shape[0]):
        w, gram, resid = sc.online_pinv_step(w, gram, resid, a[k], y[k])
    assert torch.allclose(gram, torch.linalg.pinv(a.T @ a), atol=1e-9)
    assert torch.allclose(resid, torch.eye(10, dtype=torch.float64) - a.T @ torch.linalg.pinv(a.T), atol=1e-9)


def test_gram_pinv_helper_matches_torch_pinv():
    gen = torch.Generator().manual_seed(4)
    for shape in [(2, 30, 12), (2, 12, 30)]:
        a = torch.randn(*shape, generator=gen, dtype=torch.float64)
        assert torch.allclose(sc._pinv(a), torch.linalg.pinv(a), atol=1e-10)


# -- the scaffold -------------------------------------------------------------------------


@pytest.mark.parametrize("periods,dim,n_h,nonlin", [((3, 4, 5), 1, 60, "relu"), ((2, 3, 5), 2, 150, "relu"), ((3, 4, 5), 1, 60, "sign")])
def test_every_scaffold_state_is_a_fixed_point(periods, dim, n_h, nonlin):
    mem = ScaffoldMemory(periods, dim, n_h, nonlinearity=nonlin, seed=2)
    states, _ = sc.grid_states(periods, dim)
    assert torch.equal(mem.settle(states, steps=3), states)
    h = mem.hidden(states)
    assert torch.unique(h, dim=0).shape[0] == states.shape[0]        # distinct hippocampal states too


@pytest.mark.parametrize("return_rule", ["pseudo_inverse", "hebbian"])
def test_scaffold_weights_against_plain_construction(return_rule):
    periods, n_h = (3, 4, 5), 40
    mem = ScaffoldMemory(periods, 1, n_h, threshold=0.7, return_rule=return_rule, seed=5)
    gen = torch.Generator().manual_seed(5)
    w_hg = torch.randn(n_h, 12, generator=gen, dtype=torch.float64)
    states = torch.tensor([loop_code([x], periods, 1) for x in range(60)], dtype=torch.float64)
    h = torch.clamp(states @ w_hg.T - 0.7, min=0)
    if return_rule == "pseudo_inverse":
        w_gh = (torch.linalg.pinv(h) @ states).T
    else:
        w_gh = sum(torch.outer(states[m], h[m]) for m in range(60)) / 60
    assert torch.allclose(mem.w_hg.double(), w_hg, atol=1e-6)
    assert torch.allclose(mem.w_gh.double(), w_gh, atol=1e-5)


def test_sparse_connectivity():
    mem = ScaffoldMemory((3, 4, 5), 1, 200, connectivity=0.3, seed=0)
    frac = float((mem.w_hg != 0).double().mean())
    assert 0.25 < frac < 0.35


def _written(rule, dtype=torch.float64, batch=(2,)):
    mem = ScaffoldMemory((3, 4, 5), 1, 50, rule=rule, seed=1)
    keys = mem.keys_at(torch.arange(30)[:, None]).to(dtype).expand(*batch, 30, 12)
    s = pm1((*batch, 30, 150), 7).to(dtype)
    mem.write(keys[..., :18, :], s[..., :18, :])
    mem.write(keys[..., 18:, :], s[..., 18:, :])                     # two writes: the rules accumulate
    return mem, keys, s


def test_write_rules_against_references():
    heb, keys, s = _written("hebbian")
    h = torch.relu(keys @ heb.w_hg.T - 0.5)
    w_sh = torch.zeros(2, 150, 50, dtype=torch.float64)
    w_hs = torch.zeros(2, 50, 150, dtype=torch.float64)
    for b in range(2):
        for m in range(30):
            w_sh[b] += torch.outer(s[b, m], h[b, m]) / 50
            w_hs[b] += torch.outer(h[b, m], s[b, m]) / 150
    assert torch.allclose(heb.w_sh, w_sh) and torch.allclose(heb.w_hs, w_hs)

    pinv, _, _ = _written("pseudo_inverse")
    assert torch.allclose(pinv.w_sh, (torch.linalg.pinv(h) @ s).mT, atol=1e-9)
    assert torch.allclose(pinv.w_hs, (torch.linalg.pinv(s) @ h).mT, atol=1e-9)

    online, _, _ = _written("online_pseudo_inverse")
    assert torch.allclose(online.w_sh, pinv.w_sh, atol=1e-8)
    assert torch.allclose(online.w_hs, pinv.w_hs, atol=1e-8)
    assert len(online) == 30 and online.value_dim == 150


def test_read_is_the_key_value_read_of_the_paper():
    mem, keys, s = _written("pseudo_inverse")
    # Uniform noise below 1 leaves each module's winner in place (the clean-up's job).
    noisy_query = keys[:, :5] + 0.9 * torch.rand(2, 5, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = mem.read(noisy_query, details=True)
    q = sc.module_wta(noisy_query, (3, 4, 5))
    assert torch.equal(q, keys[:, :5])
    scores = q @ mem.w_hg.T                                            # S = K q, K = rows of W_hg
    alpha = torch.clamp(scores - 0.5, min=0)                           # alpha = sigma(S)
    assert torch.equal(r.scores, scores) and torch.equal(r.weights, alpha)
    assert torch.allclose(r.values, alpha @ mem.w_sh.mT)               # alpha V, V = W_sh^T
    assert torch.allclose(r.values, s[:, :5], atol=1e-8)               # 30 pairs < N_h = 50: exact


def test_recall_against_plain_pipeline_and_corrects_noise():
    mem, keys, s = _written("pseudo_inverse")
    mem.output = "sign"
    cue = kvmem.paradigms.corruption.flip_bits(s, 0.1, seed=3)
    r = mem.recall(cue, details=True)
    # The same steps with the weights, written out.
    h0 = torch.relu(cue @ mem.w_hs.mT)
    g = sc.module_wta(h0 @ mem.w_gh.T, (3, 4, 5))
    h = torch.relu(g @ mem.w_hg.T - 0.5)
    assert torch.equal(r.grid, g) and torch.equal(r.hidden, h)
    assert torch.equal(r.values, torch.where(h @ mem.w_sh.mT >= 0, 1.0, -1.0).double())
    assert torch.equal(r.values, s)                                    # every noisy cue corrected
    assert torch.equal(r.positions[..., 0], torch.arange(30).expand(2, 30))
    # A cue with a third of its entries erased works too.
    partial = s.clone()
    partial[..., :50] = 0
    assert torch.equal(mem.recall(partial), s)


def test_recall_broadcasts_cues_over_the_batch():
    mem, _, s = _written("pseudo_inverse")
    one = mem.recall(s[0, :4])                                         # [4, D] against both memories
    assert one.shape == (2, 4, 150)
    assert torch.allclose(one[0], s[0, :4], atol=1e-8)


@pytest.mark.parametrize("periods,dim,n_h", [((3, 4, 5), 1, 60), ((2, 3, 5), 2, 150)])
def test_sequence_replay_by_path_integration(periods, dim, n_h):
    mem = ScaffoldMemory(periods, dim, n_h, output="sign", seed=4)
    length = 45
    s = pm1((3, length, 160), 9)
    keys = mem.write_sequence(s, start=[2] * dim)
    pos, vel = sc.scaffold_path(periods, dim, length, start=[2] * dim)
    assert torch.equal(mem.positions_of(keys), pos)
    cue = kvmem.paradigms.corruption.flip_bits(s[:, :1], 0.1, seed=1)
    seq = mem.recall_sequence(cue, length)
    assert seq.values.shape == (3, 1, length, 160)
    assert torch.equal(seq.values[:, 0], s)
    assert torch.equal(seq.positions[:, 0], pos.expand(3, length, dim))
    # A given start replaces the cue; a path that stays put is refused.
    again = mem.recall_sequence(s[:, :1], 5, start=pos[10], velocities=vel[10:14])
    assert torch.equal(again.values[:, 0], s[:, 10:15])
    with pytest.raises(ValueError, match="revisits"):
        ScaffoldMemory(periods, dim, n_h).write_sequence(s[:, :3], velocities=torch.zeros(2, dim, dtype=torch.long))


def test_graceful_degradation_past_n_hidden():
    # Past N_h stored patterns the readout blurs but every pattern keeps a large overlap.
    mem = ScaffoldMemory((3, 4, 5, 7), 1, 60, output="sign", seed=0)
    s = pm1((2, 120, 200), 11)
    mem.write(mem.keys_at(torch.arange(120)[:, None]).double().expand(2, 120, 19), s)
    overlap = (mem.recall(s) * s).mean(-1)
    theory = math.erf(math.sqrt(0.5 / (2 * 0.5)))                      # a = N_h / P = 1/2
    assert abs(float(overlap.mean()) - theory) < 0.05
    assert float(overlap.min()) > 0.3


# -- state, dtype, determinism --------------------------------------------------------------


def test_same_seed_same_result_and_different_seed_differs():
    a, _, s = _written("pseudo_inverse")
    b, _, _ = _written("pseudo_inverse")
    assert torch.equal(a.w_hg, b.w_hg) and torch.equal(a.recall(s), b.recall(s))
    c = ScaffoldMemory((3, 4, 5), 1, 50, rule="pseudo_inverse", seed=2)
    assert not torch.equal(c.w_hg, ScaffoldMemory((3, 4, 5), 1, 50, seed=1).w_hg)


def test_dtype_follows_first_write_and_save_load_roundtrip(tmp_path):
    mem, keys, s = _written("online_pseudo_inverse", dtype=torch.float32)
    assert mem.w_hg.dtype == torch.float32 and mem.recall(s).dtype == torch.float32
    mem64, _, s64 = _written("pseudo_inverse", dtype=torch.float64)
    assert mem64.w_hg.dtype == torch.float64
    path = tmp_path / "scaffold.safetensors"
    kvmem.save(mem, path)
    back = kvmem.load(path)
    assert isinstance(back, ScaffoldMemory) and back.config() == mem.config()
    assert torch.equal(back.recall(s), mem.recall(s))
    back.write(keys[:, :1], s[:, :1])                                  # the online state came back too
    mem.write(keys[:, :1], s[:, :1])
    assert torch.equal(back.w_sh, mem.w_sh)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"periods": (4, 6)}, ValueError, "coprime"),
        ({"periods": (1, 3)}, ValueError, ">= 2"),
        ({"periods": ()}, TypeError, "non-empty"),
        ({"periods": (3.0, 4)}, TypeError, "integers"),
        ({"dim": 3}, ValueError, "dim"),
        ({"dim": True}, TypeError, "dim"),
        ({"num_hidden": 0}, ValueError, "num_hidden"),
        ({"threshold": -1.0}, ValueError, "threshold"),
        ({"nonlinearity": "tanh"}, ValueError, "nonlinearity"),
        ({"return_rule": "delta"}, ValueError, "return_rule"),
        ({"rule": "delta"}, ValueError, "rule"),
        ({"output": "softmax"}, ValueError, "output"),
        ({"connectivity": 1.5}, ValueError, "connectivity"),
        ({"periods": (97, 101, 103), "dim": 2}, ValueError, "scaffold states"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ScaffoldMemory(**kwargs)


def test_input_errors():
    mem = ScaffoldMemory((3, 4, 5), 1, 40)
    keys = mem.keys_at(torch.arange(4)[:, None])
    s = pm1((4, 16), 0).float()
    with pytest.raises(ValueError, match="empty"):
        mem.read(keys)
    with pytest.raises(ValueError, match="empty"):
        mem.recall(s)
    with pytest.raises(ValueError, match="scaffold"):
        mem.write(keys * 0.5, s)
    two = keys.clone()
    two[0, 1] = 1.0                                                    # two active units in module 1
    with pytest.raises(ValueError, match="one active unit per module"):
        mem.write(two, s)
    with pytest.raises(ValueError, match="N_g"):
        mem.write(torch.ones(4, 11), s)
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        mem.write(keys, bad)
    mem.write(keys, s)
    with pytest.raises(ValueError, match="last dimension 16"):
        mem.write(keys, s[:, :8])
    with pytest.raises(ValueError, match="sensory dimension"):
        mem.recall(s[:, :8])
    with pytest.raises(ValueError, match="key dimension"):
        mem.read(torch.ones(2, 5))
    with pytest.raises(TypeError, match="cues"):
        mem.recall([1.0, 2.0])
    with pytest.raises(ValueError, match="steps"):
        mem.recall(s, steps=0)
    with pytest.raises(ValueError, match="velocities"):
        mem.recall_sequence(s[:1], 4, velocities=torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="velocities"):
        mem.recall_sequence(s[:1], 3, velocities=torch.ones(2, 1))
    with pytest.raises(ValueError, match="positions"):
        mem.keys_at(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="positions"):
        sc.grid_code(torch.zeros(3, 1), (3, 4, 5))
    with pytest.raises(ValueError, match="length"):
        sc.scaffold_path((3, 4), 1, 13)
    with pytest.raises(ValueError, match="N_g"):
        sc.module_wta(torch.ones(3, 5), (3, 4))
    with pytest.raises(ValueError, match="targets"):
        sc.online_pinv(torch.ones(3, 2), torch.ones(4, 2))
