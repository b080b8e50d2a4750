"""kvmem.bio.index additions: reading from index codes and attractor clean-up, against plain loops."""

import numpy as np
import pytest
import torch

from kvmem.bio.index import HippocampalIndex, _winners


def data(n=12, d=16, dv=5, seed=0, batch=(), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*batch, n, d, generator=gen, dtype=dtype),
            torch.randn(*batch, n, dv, generator=gen, dtype=dtype))


@pytest.mark.parametrize("separation", ["hardmax", "identity", {"name": "softmax", "beta": 3.0}])
def test_read_codes_of_encoded_cues_is_read(separation):
    x, v = data(batch=(3,))
    index = HippocampalIndex(num_units=120, active=8, separation=separation, seed=4)
    index.write(x, v)
    index.amplify_keys([1, 2], 0.3)
    index.lesion_keys([5])
    index.lesion_units(0.25, seed=2)
    cues = x + 0.4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=x.dtype)
    got = index.read_codes(index.encode(cues), details=True)
    ref = index.read(cues, details=True)
    assert torch.equal(got.values, ref.values)
    assert torch.equal(got.scores, ref.scores)
    assert torch.equal(got.weights, ref.weights)


def test_read_codes_scores_match_a_plain_loop_and_drop_silenced_units():
    x, v = data(n=5, d=9)
    index = HippocampalIndex(num_units=30, active=4, separation="identity", seed=1)
    index.write(x, v)
    index.amplify_keys([0], 2.5)
    index.lesion_units(units=[0, 1, 2, 3, 4, 5])
    gen = torch.Generator().manual_seed(3)
    codes = (torch.rand(3, 30, generator=gen, dtype=torch.float64) < 0.3).double()
    codes[:, :6] = 1.0  # silenced units: must not count
    out = index.read_codes(codes, details=True)
    keys, gains = index.keys.numpy(), index.key_gain.numpy()
    for m in range(3):
        for n in range(5):
            shared = sum(codes[m, u].item() * keys[n, u] for u in range(6, 30))
            assert out.scores[m, n].item() == pytest.approx(gains[n] * shared / 4, abs=1e-12)
        expected = [sum(out.scores[m, n].item() * v[n, j].item() for n in range(5)) for j in range(v.shape[-1])]
        np.testing.assert_allclose(out.values[m].numpy(), expected, atol=1e-12)


def test_read_codes_rejects_bad_input():
    index = HippocampalIndex(num_units=20, active=3)
    with pytest.raises(ValueError, match="empty"):
        index.read_codes(torch.zeros(1, 20))
    x, v = data(n=4, d=6, batch=(2,))
    index.write(x, v)
    with pytest.raises(ValueError, match="codes"):
        index.read_codes(torch.zeros(2, 1, 21))
    with pytest.raises(ValueError, match="codes"):
        index.read_codes(torch.zeros(3, 1, 20))
    with pytest.raises(ValueError, match="codes"):
        index.complete(torch.zeros(2, 1, 19))


def loop_complete(codes, keys, gains, alive, active, power, steps):
    """Plain float64 loops: h_u = sum_mu g_mu (c . c_mu / k)^n c_mu,u; top `active` units with h > 0,
    ties to the lowest unit index; silenced units off; stop when no code changes."""
    codes = [list(map(float, row)) for row in codes]
    n_units = len(alive)
    for _ in range(steps):
        new = []
        for c in codes:
            ov = [sum(c[u] * keys[mu][u] for u in range(n_units)) / active for mu in range(len(keys))]
            h = [sum(gains[mu] * ov[mu] ** power * keys[mu][u] for mu in range(len(keys))) for u in range(n_units)]
            order = sorted(range(n_units), key=lambda u: (-h[u], u))[:active]
            row = [0.0] * n_units
            for u in order:
                if h[u] > 0 and alive[u] > 0:
                    row[u] = 1.0
            new.append(row)
        if new == codes:
            break
        codes = new
    return np.array(codes)


@pytest.mark.parametrize("power", [1, 3])
def test_complete_matches_a_plain_loop(power):
    gen = torch.Generator().manual_seed(5)
    proto = torch.randn(1, 10, generator=gen, dtype=torch.float64)
    x = proto + 0.7 * torch.randn(6, 10, generator=gen, dtype=torch.float64)  # similar inputs: overlapping keys
    v = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    index = HippocampalIndex(num_units=40, active=5, seed=2)
    index.write(x, v)
    index.amplify_keys([2], 0.5)
    index.lesion_keys([4])
    index.lesion_units(units=[7, 11])
    cues = index.encode(x + 0.8 * torch.randn(x.shape, generator=gen, dtype=torch.float64))
    got = index.complete(cues, steps=4, power=power)
    ref = loop_complete(cues.numpy(), index.keys.numpy(), index.key_gain.numpy(), index.unit_mask.numpy(), 5, power, 4)
    np.testing.assert_array_equal(got.numpy(), ref)
    assert bool((got.sum(-1) <= 5).all()) and not bool(got[:, [7, 11]].any())


def test_complete_restores_keys_and_respects_steps_and_lesions():
    x, v = data(n=15, d=40, batch=(2,), seed=6)
    index = HippocampalIndex(num_units=400, active=20, seed=1)
    index.write(x, v)
    # Stored keys of unrelated inputs are fixed points.
    assert torch.equal(index.complete(index.keys, power=3), index.keys)
    noisy = index.encode(x + 0.6 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype))
    assert not torch.equal(noisy, index.keys)
    assert torch.equal(index.complete(noisy, steps=0), noisy)
    assert torch.equal(index.complete(noisy, power=3), index.keys)
    # A lesioned key is no attractor: its own cue no longer completes to it.
    index.lesion_keys([3])
    cleaned = index.complete(noisy[:, 3:4], power=3)
    assert not torch.equal(cleaned, index.keys[:, 3:4])
    with pytest.raises(ValueError, match="steps"):
        index.complete(noisy, steps=-1)
    with pytest.raises(ValueError, match="power"):
        index.complete(noisy, power=0)
    with pytest.raises(TypeError, match="power"):
        index.complete(noisy, power=2.0)


def test_winners_is_a_stable_descending_sort():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        drive = torch.randint(0, 4, (6, 25), generator=gen).double()
        k = int(torch.randint(1, 26, (1,), generator=gen))
        order = torch.sort(drive, dim=-1, descending=True, stable=True).indices[..., :k]
        ref = torch.zeros_like(drive).scatter_(-1, order, 1.0)
        assert torch.equal(_winners(drive, k), ref)
