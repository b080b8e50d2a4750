"""kvmem.bio.tem: exact path integration, causal attention against a float64 loop, the grid world."""

import itertools
import math

import numpy as np
import pytest
import torch

from kvmem.bio.tem import (
    MOVES,
    GridCode,
    GridWorld,
    TEMMemory,
    Walk,
    causal_attention,
    novel_transitions,
    peak_concentration,
    random_keys,
    rate_maps,
    sensory_keys,
    shuffled_information,
    spatial_information,
    visit_numbers,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CODES = [
    {"kind": "plane_wave", "n_modules": 16, "periodic": True},
    {"kind": "plane_wave", "n_modules": 16, "periodic": False},
    {"kind": "plane_wave", "n_modules": None, "periodic": True},
    {"kind": "onehot", "periodic": True},
    {"kind": "onehot", "periodic": False},
]


def explicit_coords(walk, width):
    """Unwrapped (row, col) of every step, by summing the moves of the actions (no world)."""
    r, c = divmod(int(walk.places[0]), width)
    rows, cols = [r], [c]
    for a in walk.actions.tolist():
        r, c = r + MOVES[a][0], c + MOVES[a][1]
        rows.append(r)
        cols.append(c)
    return torch.tensor(rows), torch.tensor(cols)


# -- action matrices and path integration ---------------------------------------------
@pytest.mark.parametrize("spec", CODES)
def test_action_matrices_compose_to_identity_around_closed_loops(spec):
    code = GridCode(6, 7, seed=1, dtype=torch.float64, **spec)
    n, e, s, w = code.matrices
    eye = torch.eye(code.dim, dtype=torch.float64)
    # Opposite moves are inverse, every pair commutes, and N-E-S-W returns to the start.
    assert torch.allclose(s @ n, eye, atol=1e-12) and torch.allclose(w @ e, eye, atol=1e-12)
    for a, b in itertools.combinations(code.matrices, 2):
        assert torch.allclose(a @ b, b @ a, atol=1e-12)
    assert torch.allclose(w @ s @ e @ n, eye, atol=1e-12)
    # Random closed loops: any action sequence whose net displacement is zero.
    gen = np.random.default_rng(0)
    for _ in range(5):
        acts = gen.integers(0, 4, size=30).tolist()
        inverse = [{0: 2, 1: 3, 2: 0, 3: 1}[a] for a in acts]
        loop = acts + list(gen.permutation(inverse))
        prod = eye
        for a in loop:
            prod = code.matrices[a] @ prod
        assert torch.allclose(prod, eye, atol=1e-10)
    # An open path is not the identity.
    assert not torch.allclose(e @ e @ n, eye, atol=1e-3)
    # Going once around the lattice closes the loop; the bounded plane-wave code's lattice is twice the arena.
    lat_h, lat_w = code.lattice
    assert torch.allclose(torch.linalg.matrix_power(e, lat_w), eye, atol=1e-10)
    assert torch.allclose(torch.linalg.matrix_power(n, lat_h), eye, atol=1e-10)
    if spec["kind"] == "plane_wave" and not spec["periodic"]:
        assert lat_w == 14 and not torch.allclose(torch.linalg.matrix_power(e, 7), eye, atol=1e-3)


@pytest.mark.parametrize("spec", CODES)
def test_path_integration_matches_closed_form_codes_of_explicit_coordinates(spec):
    world = GridWorld(6, 7, n_obs=5, periodic=spec["periodic"], seed=2)
    code = GridCode(6, 7, seed=3, dtype=torch.float64, **spec)
    walk = world.random_walk(300, seed=4)
    rows, cols = explicit_coords(walk, 7)
    start = code.code(rows[0], cols[0])
    g = code.integrate(walk.actions, start=start)
    assert g.shape == (301, code.dim)
    assert torch.allclose(g, code.code(rows, cols), atol=1e-10)
    # The world's place ids agree with the explicit coordinates (wrapped on the torus).
    if spec["periodic"]:
        assert torch.equal(walk.places, (rows % 6) * 7 + cols % 7)
    else:
        assert torch.equal(walk.places, rows * 7 + cols) and rows.min() >= 0 and cols.max() < 7
    # Unit norm is kept (orthogonal matrices, f = identity); step() is one integration step.
    assert torch.allclose(g.norm(dim=-1), torch.ones(301, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(code.step(g[:-1], walk.actions), g[1:], atol=1e-12)
    # Batched integration equals integrating each row.
    acts = torch.stack([walk.actions[:50], walk.actions[50:100]])
    gb = code.integrate(acts)
    assert torch.allclose(gb[1], code.integrate(walk.actions[50:100]), atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
def test_aliasing_gap_is_the_largest_similarity_between_distinct_places(periodic):
    code = GridCode(5, 6, n_modules=9, periodic=periodic, seed=5, dtype=torch.float64)
    rows, cols = torch.arange(30) // 6, torch.arange(30) % 6
    g = code.code(rows, cols)
    sim = g @ g.T
    off = sim[~torch.eye(30, dtype=torch.bool)]
    assert code.aliasing_gap == pytest.approx(1 - float(off.max()), abs=1e-12)
    assert code.aliasing_gap > 0 and torch.allclose(sim.diagonal(), torch.ones(30, dtype=torch.float64))
    # All wave-vector classes: 8x8 torus has 33, codes nearly orthogonal.
    full = GridCode(8, 8, n_modules=None, seed=0)
    assert full.n_modules == 33 and full.dim == 66 and full.aliasing_gap > 0.9


# -- causal attention against a plain float64 loop -------------------------------------
def loop_attention(q, k, v, beta):
    """Step t reads steps j < t: explicit softmax of beta q_t . k_j, in float64 Python."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    out = np.zeros((len(q), v.shape[1]))
    weights = np.zeros((len(q), len(q)))
    for t in range(1, len(q)):
        s = [beta * sum(q[t, d] * k[j, d] for d in range(q.shape[1])) for j in range(t)]
        m = max(s)
        e = [math.exp(x - m) for x in s]
        z = sum(e)
        for j in range(t):
            weights[t, j] = e[j] / z
            out[t] += weights[t, j] * v[j]
    return out, weights


@pytest.mark.parametrize("keys", ["position", "random", "sensory"])
@pytest.mark.parametrize("mode", ["parallel", "online"])
def test_predictions_match_a_plain_per_step_loop(keys, mode):
    world = GridWorld(4, 5, n_obs=4, periodic=False, seed=6)
    walk = world.random_walk(45, seed=7)
    model = TEMMemory(world, keys=keys, n_modules=6, beta=7.0, seed=8, dtype=torch.float64)
    pred = model.predict(walk, mode=mode)
    k = model.make_keys(walk)
    v = torch.nn.functional.one_hot(world.observe(walk.places), 4).double()
    out, weights = loop_attention(k, k, v, 7.0)
    assert np.allclose(pred.read.numpy(), out, atol=1e-12)
    assert np.allclose(pred.weights.numpy(), weights, atol=1e-12)
    assert pred.predicted[0] == -1 and not pred.correct[0]
    assert torch.equal(pred.predicted[1:], torch.from_numpy(out[1:].argmax(1)))
    assert torch.equal(pred.correct[1:], pred.predicted[1:] == world.observe(walk.places[1:]))


def test_causal_attention_batched_float32_and_other_similarity():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 12, 5, generator=gen, dtype=torch.float64)
    k = torch.randn(3, 12, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 12, 2, generator=gen, dtype=torch.float64)
    par = causal_attention(q, k, v, beta=2.0)
    onl = causal_attention(q, k, v, beta=2.0, mode="online")
    assert torch.allclose(par.values, onl.values, atol=1e-12)
    for b in range(3):
        out, _ = loop_attention(q[b], k[b], v[b], 2.0)
        assert np.allclose(par.values[b].numpy(), out, atol=1e-12)
    # float32 agrees with float64 to float32 precision; weights are causal and sum to 1.
    p32 = causal_attention(q.float(), k.float(), v.float(), beta=2.0)
    assert torch.allclose(p32.values.double(), par.values, atol=1e-5)
    assert torch.equal(p32.weights.triu() == 0, torch.ones(12, 12, dtype=torch.bool).expand(3, 12, 12))
    assert torch.allclose(par.weights[:, 1:].sum(-1), torch.ones(3, 11, dtype=torch.float64))
    # Negative Euclidean similarity: scores -|q - k|.
    ne = causal_attention(q[0], k[0], v[0], beta=1.5, similarity="neg_euclidean")
    t = 7
    s = -1.5 * (q[0, t] - k[0, :t]).norm(dim=-1)
    assert torch.allclose(ne.values[t], torch.softmax(s, 0) @ v[0, :t], atol=1e-12)


def test_prediction_does_not_depend_on_where_the_code_is_anchored():
    world = GridWorld(6, 6, n_obs=6, seed=9)
    walk = world.random_walk(200, seed=10)
    a = TEMMemory(world, n_modules=10, seed=1, dtype=torch.float64)
    pa = a.predict(walk)
    keys = a.code.integrate(walk.actions, start=a.code.code(torch.tensor(3), torch.tensor(4)))
    v = torch.nn.functional.one_hot(world.observe(walk.places), 6).double()
    other = causal_attention(keys, keys, v, beta=a.beta)
    assert torch.allclose(pa.read, other.values, atol=1e-9)


def test_revisits_are_predicted_and_controls_fail_on_new_paths():
    world = GridWorld(6, 6, n_obs=4, seed=11)
    walk1 = world.walk_until_covered(seed=12)
    walk = walk1.then(world.random_walk(300, start=int(walk1.places[-1]), seed=13))
    visits, novel = walk.visit_numbers(), walk.novel_transitions()
    steps = torch.arange(walk.steps + 1)
    new_path = (visits > 0) & novel & (steps > walk1.steps)
    assert int(new_path.sum()) >= 5
    for kind in ("plane_wave", "onehot"):
        pred = TEMMemory(world, code_kind=kind, n_modules=10).predict(walk)
        assert bool(pred.correct[visits > 0].all())
    sensory = TEMMemory(world, keys="sensory").predict(walk)
    # Four observations on 36 places: the sensory address aliases.
    assert float(sensory.correct[visits > 0].float().mean()) < 0.8


# -- the grid world ----------------------------------------------------------------------
@pytest.mark.parametrize("periodic", [True, False])
def test_random_walks_are_valid_and_seeded(periodic):
    world = GridWorld(5, 4, n_obs=3, periodic=periodic, seed=0)
    walk = world.random_walk(500, start=7, seed=3)
    assert walk.steps == 500 and int(walk.places[0]) == 7 and world.is_valid(walk)
    assert torch.equal(world.step(walk.places[:-1], walk.actions), walk.places[1:])
    again = world.random_walk(500, start=7, seed=3)
    assert torch.equal(walk.places, again.places) and torch.equal(walk.actions, again.actions)
    other = world.random_walk(500, start=7, seed=4)
    assert not torch.equal(walk.actions, other.actions)
    # Every allowed action is used from the places the walk passes: roughly uniform choice.
    counts = np.bincount(walk.actions.numpy(), minlength=4)
    assert counts.min() > 80
    if not periodic:
        rows, cols = walk.places // 4, walk.places % 4
        assert rows.min() >= 0 and rows.max() <= 4 and cols.max() <= 3
        assert world.valid_actions(torch.tensor([0, 19])).tolist() == [[False, True, True, False], [True, False, False, True]]
        with pytest.raises(ValueError, match="leave the bounded world"):
            world.step(0, 0)
    else:
        assert world.step(0, 0).item() == 16 and world.step(0, 3).item() == 3
    # A broken walk is detected.
    bad = Walk(walk.places.clone(), walk.actions.clone())
    bad.places[10] = (bad.places[10] + 1) % 20
    assert not world.is_valid(bad)


def test_walk_until_covered_stops_when_the_last_place_is_reached():
    world = GridWorld(5, 5, seed=1, periodic=False)
    walk = world.walk_until_covered(seed=2)
    assert world.is_valid(walk)
    assert set(walk.places.tolist()) == set(range(25))
    last = int(walk.places[-1])
    assert walk.places.tolist().count(last) == 1
    assert torch.equal(walk.places, world.walk_until_covered(seed=2).places)
    with pytest.raises(ValueError, match="max_steps"):
        world.walk_until_covered(seed=2, max_steps=10)


def test_observations_are_seeded_categories():
    a, b, c = GridWorld(8, 8, 16, seed=5), GridWorld(8, 8, 16, seed=5), GridWorld(8, 8, 16, seed=6)
    assert torch.equal(a.observations, b.observations) and not torch.equal(a.observations, c.observations)
    assert a.observations.min() >= 0 and a.observations.max() < 16 and len(set(a.observations.tolist())) > 8
    assert a.observe(torch.tensor([[0, 63]])).shape == (1, 2)
    assert a.place(2, 3) == 19 and a.coords(19) == (2, 3)


def test_walk_concatenation_visits_and_novel_transitions():
    p = torch.tensor([0, 1, 2, 1, 0, 1])
    a = torch.tensor([1, 1, 3, 3, 1])
    # Plain loops as the reference.
    seen, ref_v = {}, []
    for x in p.tolist():
        ref_v.append(seen.get(x, 0))
        seen[x] = seen.get(x, 0) + 1
    assert visit_numbers(p).tolist() == ref_v == [0, 0, 0, 1, 1, 2]
    assert novel_transitions(p, a).tolist() == [False, True, True, True, True, False]
    w = Walk(p[:3], a[:2]).then(Walk(p[2:], a[2:]))
    assert torch.equal(w.places, p) and torch.equal(w.actions, a)
    with pytest.raises(ValueError, match="start at place"):
        Walk(p[:3], a[:2]).then(Walk(p[3:], a[3:]))


# -- rate maps and spatial information ---------------------------------------------------
def test_rate_maps_and_spatial_information_against_loops():
    gen = np.random.default_rng(0)
    places = gen.integers(0, 6, size=200)
    places[places == 5] = 4  # place 5 never visited
    act = gen.random((200, 3)) ** 4
    act[:, 2] = (places == 1) * 2.0  # a perfect "place cell" at place 1
    maps, occ = rate_maps(torch.from_numpy(act), torch.from_numpy(places), 6)
    for u in range(3):
        for x in range(6):
            sel = act[places == x, u]
            if len(sel):
                assert maps[u, x].item() == pytest.approx(sel.mean(), rel=1e-12)
            else:
                assert math.isnan(maps[u, x].item())
    info = spatial_information(maps, occ)
    for u in range(3):
        mean = act[:, u].mean()
        ref = 0.0
        for x in range(5):
            px = (places == x).mean()
            r = act[places == x, u].mean()
            if r > 0:
                ref += px * (r / mean) * math.log2(r / mean)
        assert info[u].item() == pytest.approx(ref, rel=1e-10)
    assert info[2].item() == pytest.approx(math.log2(1 / (places == 1).mean()), rel=1e-10)
    assert peak_concentration(maps)[2].item() == pytest.approx(1.0)
    # Shift 0 is the plain measure; shift s is the measure with the positions rolled by s.
    sh = shuffled_information(torch.from_numpy(act), torch.from_numpy(places), 6, [0, 17])
    assert torch.allclose(sh[0], info, rtol=1e-10)
    rolled = rate_maps(torch.from_numpy(act), torch.from_numpy(np.roll(places, 17)), 6)
    assert torch.allclose(sh[1], spatial_information(*rolled), rtol=1e-10)
    assert sh[1, 2] < info[2] - 1.0


def test_key_helpers():
    k = random_keys(20, 6, seed=3, dtype=torch.float64)
    assert torch.allclose(k.norm(dim=-1), torch.ones(20, dtype=torch.float64))
    assert torch.equal(k, random_keys(20, 6, seed=3, dtype=torch.float64))
    s = sensory_keys(torch.tensor([1, 2, 0]), torch.tensor([3, 0]), n_obs=3)
    assert s.shape == (3, 12) and s[0].sum() == 0
    assert s[1].nonzero().flatten().tolist() == [1 * 4 + 3] and s[2].nonzero().flatten().tolist() == [2 * 4 + 0]


# -- devices and bad input -----------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_tensors_follow_the_device(device):
    world = GridWorld(5, 5, n_obs=4, seed=0, device=device)
    walk = world.walk_until_covered(seed=1)
    assert world.observations.device.type == device and walk.places.device.type == device
    for keys in ("position", "random", "sensory"):
        pred = TEMMemory(world, keys=keys, n_modules=8).predict(walk)
        for t in (pred.read, pred.weights, pred.keys, pred.correct, pred.predicted):
            assert t.device.type == device
    code = GridCode(5, 5, n_modules=8, device=device)
    assert code.matrices.device.type == device and code.integrate(walk.actions).device.type == device
    cpu = TEMMemory(GridWorld(5, 5, n_obs=4, seed=0), n_modules=8).predict(
        GridWorld(5, 5, n_obs=4, seed=0).walk_until_covered(seed=1))
    here = TEMMemory(world, n_modules=8).predict(walk)
    assert torch.equal(here.correct.cpu(), cpu.correct)


def test_bad_input_raises_clear_errors():
    world = GridWorld(4, 4, n_obs=3, periodic=False, seed=0)
    walk = world.random_walk(10, seed=0)
    with pytest.raises(ValueError, match="height"):
        GridWorld(1, 4)
    with pytest.raises(ValueError, match="n_obs"):
        GridWorld(4, 4, n_obs=0)
    with pytest.raises(TypeError, match="periodic"):
        GridWorld(4, 4, periodic="yes")
    with pytest.raises(ValueError, match="device"):
        GridWorld(4, 4, device="nonsense")
    with pytest.raises(ValueError, match="start"):
        world.random_walk(5, start=16)
    with pytest.raises(ValueError, match="steps"):
        world.random_walk(-1)
    with pytest.raises(ValueError, match="actions"):
        world.step(5, 4)
    with pytest.raises(TypeError, match="places"):
        world.step(torch.tensor([1.5]), 0)
    with pytest.raises(ValueError, match="kind"):
        GridCode(4, 4, kind="hexagonal")
    with pytest.raises(ValueError, match="n_modules"):
        GridCode(4, 4, n_modules=100)
    with pytest.raises(ValueError, match="aliasing gap"):
        GridCode(8, 8, n_modules=1, seed=0)
    with pytest.raises(TypeError, match="dtype"):
        GridCode(4, 4, dtype=torch.int64)
    code = GridCode(4, 4, n_modules=4)
    with pytest.raises(ValueError, match="start"):
        code.integrate(torch.tensor([0, 1]), start=torch.zeros(3))
    with pytest.raises(ValueError, match="g"):
        code.step(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="keys"):
        TEMMemory(world, keys="bogus")
    with pytest.raises(ValueError, match="beta"):
        TEMMemory(world, beta=0.0)
    with pytest.raises(TypeError, match="world"):
        TEMMemory("world")
    with pytest.raises(ValueError, match="code"):
        TEMMemory(world, code=GridCode(4, 4, n_modules=4, periodic=True))
    with pytest.raises(ValueError, match="walk"):
        TEMMemory(GridWorld(4, 4, n_obs=3, periodic=False, seed=0)).predict(
            Walk(torch.tensor([0, 1, 5]), torch.tensor([1, 1])))
    with pytest.raises(TypeError, match="walk"):
        TEMMemory(world).predict(walk.places)
    with pytest.raises(ValueError, match="places"):
        Walk(torch.tensor([0, 1]), torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="places"):
        Walk(torch.tensor([0.0, 1.0]), torch.tensor([1]))
    q = torch.randn(5, 3)
    with pytest.raises(ValueError, match="keys"):
        causal_attention(q, torch.randn(5, 4), torch.randn(5, 2))
    with pytest.raises(ValueError, match="values"):
        causal_attention(q, q, torch.randn(4, 2))
    with pytest.raises(ValueError, match="mode"):
        causal_attention(q, q, q, mode="sideways")
    with pytest.raises(ValueError, match="beta"):
        causal_attention(q, q, q, beta=-1.0)
    with pytest.raises(ValueError, match="observations"):
        sensory_keys(torch.tensor([0, 5]), torch.tensor([1]), n_obs=3)
    with pytest.raises(ValueError, match="places"):
        rate_maps(torch.ones(4, 2), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="occupancy"):
        spatial_information(torch.ones(2, 3), torch.ones(4))
