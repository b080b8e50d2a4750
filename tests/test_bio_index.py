"""kvmem.bio.index: sparse expanded keys against plain loops, pattern separation, lesions."""

import math

import numpy as np
import pytest
import torch

import kvmem
from kvmem.bio.index import HippocampalIndex, code_overlap, pattern_separation


def loop_code(x, w, active, alive=None):
    """Plain float64 k-WTA: the `active` units with the largest drive (ties: lowest index), drive > 0."""
    w = np.asarray(w, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    drive = [sum(w[u, i] * x[i] for i in range(len(x))) for u in range(w.shape[0])]
    order = sorted(range(len(drive)), key=lambda u: (-drive[u], u))[:active]
    code = np.zeros(len(drive))
    for u in order:
        if drive[u] > 0 and (alive is None or alive[u] > 0):
            code[u] = 1.0
    return code


def loop_scores(cue_code, keys, gains, active):
    keys = np.asarray(keys, dtype=np.float64)
    n_mem, n_units = keys.shape
    return np.array([gains[n] * sum(cue_code[u] * keys[n, u] for u in range(n_units)) / active for n in range(n_mem)])


def data(n=20, d=32, dv=6, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, dv, generator=gen, dtype=dtype)


def test_codes_match_a_plain_loop_and_are_k_sparse():
    x, v = data(n=6, d=7)
    index = HippocampalIndex(num_units=40, active=5, seed=3)
    index.write(x, v)
    w = index.projection.numpy()
    for n in range(6):
        np.testing.assert_array_equal(index.keys[n].numpy(), loop_code(x[n], w, 5))
    assert torch.equal(index.keys.sum(-1), torch.full((6,), 5.0, dtype=torch.float64))
    # The same expansion before any write (a fixed function of the seed).
    assert torch.equal(HippocampalIndex(num_units=40, active=5, seed=3).encode(x), index.keys)


def test_zero_cue_drives_nothing_and_matches_nothing():
    x, v = data(n=4, d=8)
    index = HippocampalIndex(num_units=50, active=5)
    index.write(x, v)
    assert index.encode(torch.zeros(1, 8, dtype=torch.float64)).sum() == 0
    assert index.familiarity(torch.zeros(1, 8, dtype=torch.float64)).item() == 0.0


@pytest.mark.parametrize("sep", ["hardmax", {"name": "softmax", "beta": 7.0}])
def test_read_matches_a_plain_loop(sep):
    x, v = data(n=8, d=6, dv=3, seed=1)
    cues = x + 0.8 * data(n=8, d=6, seed=2)[0]
    index = HippocampalIndex(num_units=30, active=4, separation=sep, seed=5)
    index.write(x, v)
    index.amplify_keys([2, 5], 1.7)
    r = index.read(cues, details=True)
    w = index.projection.numpy()
    gains = index.key_gain.numpy()
    for m in range(8):
        s = loop_scores(loop_code(cues[m], w, 4), index.keys.numpy(), gains, 4)
        if sep == "hardmax":
            alpha = np.zeros(8)
            alpha[int(np.argmax(s))] = 1.0  # np.argmax takes the first maximum, as HardMax does
        else:
            e = np.exp(7.0 * (s - s.max()))
            alpha = e / e.sum()
        np.testing.assert_allclose(r.scores[m].numpy(), s, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r.values[m].numpy(), alpha @ v.numpy(), rtol=1e-10, atol=1e-12)


def test_identity_separation_is_the_hebbian_matrix():
    x, v = data(n=10, d=12, dv=4, seed=4)
    cues = x + 0.5 * data(n=10, d=12, seed=9)[0]
    index = HippocampalIndex(num_units=60, active=6, separation="identity", seed=2)
    index.write(x, v)
    index.amplify_keys([0], 3.0)
    keys, gains = index.keys.numpy(), index.key_gain.numpy()
    hebb = np.zeros((60, 4))
    for n in range(10):
        for u in range(60):
            for j in range(4):
                hebb[u, j] += gains[n] * keys[n, u] * v[n, j].item() / 6
    codes = index.encode(cues).numpy()
    np.testing.assert_allclose(index.read(cues).numpy(), codes @ hebb, rtol=1e-10, atol=1e-12)


def test_pattern_separation_keys_overlap_less_than_inputs():
    out = pattern_separation(HippocampalIndex(num_units=1000, active=50), [0.2, 0.5, 0.8, 0.95], dim=100, num_pairs=100)
    np.testing.assert_allclose(out["input_overlap"].numpy(), [0.2, 0.5, 0.8, 0.95], atol=0.03)
    assert bool((out["key_overlap"] < out["input_overlap"] - 0.05).all())
    assert bool((out["key_overlap"].diff() > 0).all())  # separation, not scrambling: still ordered
    # Unrelated inputs share about active/U of their units (chance).
    far = pattern_separation(HippocampalIndex(num_units=1000, active=50), [0.0], dim=100, num_pairs=200)
    assert abs(far["key_overlap"].item() - 0.05) < 0.02


def test_noisy_and_partial_cues_reinstate_the_right_value():
    x, v = data(n=100, d=100, dv=10, seed=6, dtype=torch.float32)
    index = HippocampalIndex(num_units=2000, active=100, seed=1)
    index.write(x, v)
    gen = torch.Generator().manual_seed(7)
    noisy = x + 0.7 * torch.randn(x.shape, generator=gen)  # input cosine about 0.82
    partial, _ = kvmem.paradigms.corruption.mask(x, 0.5, seed=8)  # half the entries set to 0
    for cue in (noisy, partial):
        assert (index.read(cue, details=True).weights.argmax(-1) == torch.arange(100)).float().mean() >= 0.97
    assert torch.equal(index.read(x), v)


def test_lesion_units_silences_a_fraction_per_trial_and_lowers_familiarity_exactly():
    x = torch.randn(3, 15, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.randn(3, 15, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    index = HippocampalIndex(num_units=200, active=20, seed=4)
    index.write(x, v)
    index.lesion_units(0.3)
    assert torch.equal((index.unit_mask == 0).sum(-1), torch.tensor([60, 60, 60]))
    assert not torch.equal(index.unit_mask[0], index.unit_mask[1])  # independent trials
    index.lesion_units(0.2)  # cumulative, among the living
    assert torch.equal((index.unit_mask == 0).sum(-1), torch.tensor([100, 100, 100]))
    # An exact cue now matches its own key on the surviving units only.
    surviving = (index.keys * index.unit_mask.unsqueeze(-2)).sum(-1) / 20
    assert torch.equal(index.read(x, details=True).scores.diagonal(dim1=-2, dim2=-1), surviving)
    codes = index.encode(x)
    assert bool((codes * (1 - index.unit_mask.unsqueeze(-2))).sum() == 0)
    # New memories are encoded by the surviving units only.
    index.write(x[:, :1] + 1.0, v[:, :1])
    assert bool((index.keys[:, -1] * (1 - index.unit_mask)).sum() == 0)


def test_lesion_chosen_units_and_all_units():
    x, v = data(n=5, d=10)
    index = HippocampalIndex(num_units=50, active=5)
    index.write(x, v)
    index.lesion_units(units=[0, 1, 2])
    assert index.unit_mask[:3].sum() == 0 and index.unit_mask[3:].sum() == 47
    index.lesion_units(units=torch.ones(50, dtype=torch.bool))
    assert bool((index.familiarity(x) == 0).all())


def test_lesion_keys_removes_access_but_keeps_the_value():
    x, v = data(n=10, d=30, seed=3)
    index = HippocampalIndex(num_units=500, active=25)
    index.write(x, v)
    stored = index.values.clone()
    index.lesion_keys([4])
    r = index.read(x, details=True)
    assert r.scores[4, 4] == 0
    assert not torch.equal(r.values[4], v[4])  # recall of memory 4 lost
    keep = [i for i in range(10) if i != 4]
    assert torch.equal(r.values[keep], v[keep])  # the others unaffected
    assert torch.equal(index.values, stored)  # the cortical value is still there
    index.amplify_keys([4], 100.0)  # a removed key cannot be reactivated
    assert index.read(x, details=True).scores[4, 4] == 0


def test_amplify_keys_scales_scores_and_reactivates_a_silent_memory():
    # Ten variants of one input: similar memories interfere with each other.
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(1, 50, generator=gen, dtype=torch.float64)
    x = base + 0.6 * torch.randn(10, 50, generator=gen, dtype=torch.float64)
    v = torch.eye(10, dtype=torch.float64)
    index = HippocampalIndex(num_units=1000, active=50)
    index.write(x, v)
    before = index.read(x, details=True).scores
    index.amplify_keys([3], 0.2)  # a silent engram: the key is there but weak
    after = index.read(x, details=True).scores
    torch.testing.assert_close(after[:, 3], 0.2 * before[:, 3], rtol=1e-12, atol=0)
    torch.testing.assert_close(after[:, [0, 1, 2, 4]], before[:, [0, 1, 2, 4]], rtol=0, atol=0)
    assert index.read(x[3:4]).argmax().item() != 3  # not recalled from its own cue
    index.amplify_keys([3], 5.0)  # optogenetic strength beta
    assert index.read(x[3:4]).argmax().item() == 3
    torch.testing.assert_close(index.read(x, details=True).scores, before, rtol=1e-12, atol=1e-15)


def test_degrade_values_adds_noise_of_the_given_size_to_chosen_memories():
    x, v = data(n=40, d=20, dv=50, seed=2)
    index = HippocampalIndex(num_units=400, active=20)
    index.write(x, v)
    fam = index.familiarity(x)
    index.degrade_values(0.5, memories=list(range(20)))
    delta = index.values - v
    assert delta[20:].abs().max() == 0
    assert abs(delta[:20].std().item() - 0.5) < 0.03  # 1000 draws: SE of the SD is about 0.011
    assert abs(delta[:20].mean().item()) < 0.05
    # Key matching is untouched (recognition spared); the recalled content is degraded.
    assert torch.equal(index.familiarity(x), fam)
    assert torch.equal(index.read(x), index.values)


def test_batched_index_equals_separate_indexes():
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, 12, 16, generator=gen), torch.randn(3, 12, 5, generator=gen)
    cues = x + 0.5 * torch.randn(x.shape, generator=gen)
    batched = HippocampalIndex(num_units=120, active=10, separation={"name": "softmax", "beta": 9.0})
    batched.write(x[:, :7], v[:, :7])
    batched.write(x[:, 7:], v[:, 7:])
    chosen = torch.zeros(3, 12, dtype=torch.bool)
    chosen[1, 4] = True
    batched.amplify_keys(chosen, 3.0)  # a per-trial choice of memories
    out = batched.read(cues)
    for t in range(3):
        single = HippocampalIndex(num_units=120, active=10, separation={"name": "softmax", "beta": 9.0})
        single.write(x[t], v[t])
        if t == 1:
            single.amplify_keys([4], 3.0)
        torch.testing.assert_close(out[t], single.read(cues[t]), rtol=0, atol=0)
    # One set of queries broadcasts to every trial.
    assert batched.read(cues[0]).shape == (3, 12, 5)


def test_same_seed_same_result_and_different_seed_differs():
    def run(seed):
        x, v = data(n=10, d=16, seed=1)
        index = HippocampalIndex(num_units=100, active=10, seed=seed)
        index.write(x.expand(2, 10, 16), v.expand(2, 10, 6))
        index.lesion_units(0.25)
        index.degrade_values(0.3)
        return index
    a, b, c = run(7), run(7), run(8)
    for name in ("keys", "values", "unit_mask", "projection"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))
    # An explicit seed gives the same draw whatever the internal generator's state.
    d, e = run(7), run(7)
    e.degrade_values(0.1)  # advances e's internal generator only
    d.lesion_units(0.1, seed=123)
    e.lesion_units(0.1, seed=123)
    assert torch.equal(d.unit_mask, e.unit_mask)
    d.lesion_units(0.1)
    e.lesion_units(0.1)
    assert not torch.equal(d.unit_mask, e.unit_mask)


def test_save_and_load_round_trip_including_lesions_and_generator(tmp_path):
    x, v = data(n=9, d=12, seed=5)
    index = HippocampalIndex(num_units=80, active=8, separation={"name": "softmax", "beta": 4.0}, seed=2)
    index.write(x, v)
    index.lesion_units(0.2)
    index.lesion_keys([1])
    index.amplify_keys([2], 2.5)
    path = tmp_path / "index.safetensors"
    kvmem.save(index, path)
    loaded = kvmem.load(path)
    assert isinstance(loaded, HippocampalIndex) and loaded.config() == index.config()
    assert torch.equal(loaded.read(x), index.read(x))
    index.lesion_units(0.3)
    loaded.lesion_units(0.3)  # the saved generator state continues the same stream
    assert torch.equal(loaded.unit_mask, index.unit_mask)


def test_code_overlap_closed_form():
    a = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(code_overlap(a, b), torch.tensor([2.0 / 3.0, 0.0]))
    assert math.isclose(code_overlap(torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])).item(), 24 / 25, rel_tol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="active"):
        HippocampalIndex(num_units=10, active=11)
    with pytest.raises(TypeError, match="num_units"):
        HippocampalIndex(num_units=10.0)
    with pytest.raises(ValueError, match="separation"):
        HippocampalIndex(separation="nope")
    index = HippocampalIndex(num_units=50, active=5)
    with pytest.raises(ValueError, match="empty"):
        index.read(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="empty"):
        index.lesion_units(0.1)
    x, v = data(n=5, d=8)
    index.write(x, v)
    with pytest.raises(ValueError, match="queries"):
        index.read(torch.zeros(1, 9))
    with pytest.raises(ValueError, match="keys"):
        index.write(torch.zeros(2, 9, dtype=torch.float64), torch.zeros(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="values"):
        index.write(torch.zeros(2, 8, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="exactly one"):
        index.lesion_units()
    with pytest.raises(ValueError, match="exactly one"):
        index.lesion_units(0.1, units=[0])
    with pytest.raises(ValueError, match="fraction"):
        index.lesion_units(1.5)
    with pytest.raises(ValueError, match="units"):
        index.lesion_units(units=[50])
    with pytest.raises(ValueError, match="memories"):
        index.lesion_keys([5])
    with pytest.raises(ValueError, match="memories"):
        index.lesion_keys(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="memories"):
        index.lesion_keys(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="memories"):
        index.lesion_keys("all")
    with pytest.raises(ValueError, match="beta"):
        index.amplify_keys([0], 0.0)
    with pytest.raises(ValueError, match="noise"):
        index.degrade_values(-1.0)
    with pytest.raises(ValueError, match="similarities"):
        pattern_separation(index, [1.5], dim=8)
    with pytest.raises(TypeError, match="index"):
        pattern_separation(kvmem.SlotMemory())


def test_pattern_separation_device_argument():
    from kvmem.bio.index import HippocampalIndex, pattern_separation

    default = pattern_separation(HippocampalIndex(num_units=500, active=25, seed=3), [0.5, 0.9], num_pairs=40, seed=1)
    cpu = pattern_separation(HippocampalIndex(num_units=500, active=25, seed=3), [0.5, 0.9], num_pairs=40, seed=1,
                             device="cpu")
    for name in default:
        assert torch.equal(default[name], cpu[name])
    if torch.cuda.is_available():
        gpu = pattern_separation(HippocampalIndex(num_units=500, active=25, seed=3), [0.5, 0.9], num_pairs=40, seed=1,
                                 device="cuda")
        assert gpu["key_overlap"].device.type == "cuda"
        torch.testing.assert_close(gpu["input_overlap"].cpu(), cpu["input_overlap"], rtol=1e-5, atol=1e-6)
