"""Cue corruption: exact counts, per-row independence, seeding, no mutation, mask semantics."""

import math

import numpy as np
import pytest
import torch

from kvmem.paradigms import flip_bits, gaussian_noise, mask


def bipolar(rows, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (rows, n), generator=gen).float() * 2 - 1


@pytest.mark.parametrize("fraction, n, k", [(0.0, 10, 0), (0.1, 10, 1), (0.25, 10, 3), (0.33, 64, 21), (1.0, 7, 7)])
def test_flip_bits_flips_exactly_round_fraction_n_per_row(fraction, n, k):
    x = bipolar(50, n)
    before = x.clone()
    y = flip_bits(x, fraction, seed=3)
    assert torch.equal(x, before)  # input unchanged
    assert ((y != x).sum(-1) == k).all()
    assert torch.equal(y[y != x], -x[y != x])
    b = (x + 1) / 2
    yb = flip_bits(b, fraction, code="binary", seed=3)
    assert ((yb != b).sum(-1) == k).all() and torch.equal(yb[yb != b], 1 - b[yb != b])


def test_round_half_up():
    # 0.25 * 10 = 2.5 -> 3 (Python's round would give 2); 0.05 * 10 = 0.5 -> 1.
    x = torch.ones(4, 10)
    assert ((flip_bits(x, 0.25) != x).sum(-1) == 3).all()
    assert ((mask(x, 0.05)[1]).sum(-1) == 9).all()


def test_rows_are_independent_and_positions_uniform():
    x = torch.ones(4000, 8)
    flipped = flip_bits(x, 0.25, seed=1) != x  # 2 of 8 per row
    patterns = {tuple(r) for r in flipped.int().tolist()}
    assert len(patterns) == 28  # every one of C(8, 2) = 28 position pairs occurs
    # Each position is flipped with probability 1/4: 4000 rows, sd = sqrt(.25 * .75 / 4000) = 0.0068.
    assert (flipped.float().mean(0) - 0.25).abs().max() < 5 * 0.0068
    # Independence: P(both position 0 and 1 flipped) = C(6, 0) / C(8, 2) = 1/28 = 0.0357.
    both = (flipped[:, 0] & flipped[:, 1]).float().mean()
    assert abs(float(both) - 1 / 28) < 5 * math.sqrt((1 / 28) * (27 / 28) / 4000)


def test_batched_leading_dims():
    x = bipolar(24, 16).reshape(2, 3, 4, 16)
    y = flip_bits(x, 0.5, seed=0)
    assert y.shape == x.shape and ((y != x).sum(-1) == 8).all()
    rows = (y != x).reshape(-1, 16)
    assert len({tuple(r) for r in rows.int().tolist()}) > 20  # rows draw their own positions


def test_seeding_and_generators():
    x = bipolar(10, 30)
    assert torch.equal(flip_bits(x, 0.3, seed=5), flip_bits(x, 0.3, seed=5))
    assert not torch.equal(flip_bits(x, 0.3, seed=5), flip_bits(x, 0.3, seed=6))
    assert torch.equal(flip_bits(x, 0.3), flip_bits(x, 0.3, seed=0))  # default seed 0
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    first = flip_bits(x, 0.3, generator=g1)
    assert torch.equal(first, flip_bits(x, 0.3, generator=g2))
    assert not torch.equal(first, flip_bits(x, 0.3, generator=g1))  # the generator advances
    a, _ = mask(x, 0.5, seed=1)
    assert torch.equal(a, mask(x, 0.5, seed=1)[0]) and not torch.equal(a, mask(x, 0.5, seed=2)[0])
    n1 = gaussian_noise(x, 0.1, seed=1)
    assert torch.equal(n1, gaussian_noise(x, 0.1, seed=1)) and not torch.equal(n1, gaussian_noise(x, 0.1, seed=2))
    global_state = torch.get_rng_state()
    flip_bits(x, 0.3, seed=4), mask(x, 0.3, seed=4), gaussian_noise(x, 1.0, seed=4)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator is untouched


def test_mask_random_semantics():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 12, generator=gen)
    before = x.clone()
    y, known = mask(x, 0.25, fill=-7.0, seed=0)
    assert torch.equal(x, before)
    assert known.dtype == torch.bool and known.shape == x.shape
    assert ((~known).sum(-1) == 3).all()
    assert torch.equal(y[known], x[known]) and (y[~known] == -7.0).all()
    assert len({tuple(r) for r in known.int().tolist()}) > 10


def test_mask_bottom_hides_exactly_the_last_k_entries():
    x = torch.arange(1.0, 41.0).reshape(4, 10)
    y, known = mask(x, 0.4, mode="bottom")
    expected = torch.tensor([True] * 6 + [False] * 4).expand(4, 10)
    assert torch.equal(known, expected)
    assert torch.equal(y[:, :6], x[:, :6]) and (y[:, 6:] == 0).all()
    # Halving a flattened 4x4 "image": the bottom two rows go.
    img = torch.ones(1, 16)
    half, known = mask(img, 0.5, mode="bottom", fill=0.5)
    assert half.reshape(4, 4)[2:].eq(0.5).all() and half.reshape(4, 4)[:2].eq(1).all()
    assert mask(x, 0.0, mode="bottom")[1].all() and not mask(x, 1.0, mode="bottom")[1].any()


def test_gaussian_noise_std_and_mean():
    x = torch.full((200, 500), 3.0, dtype=torch.float64)
    y = gaussian_noise(x, 0.5, seed=11)
    assert torch.equal(x, torch.full((200, 500), 3.0, dtype=torch.float64))
    eps = (y - x).numpy().ravel()
    # 100k samples: se(std) ~ 0.5 / sqrt(2 * 1e5) = 0.0011 and se(mean) = 0.0016; 5 sigma bounds.
    assert abs(eps.std() - 0.5) < 5 * 0.5 / math.sqrt(2 * eps.size)
    assert abs(eps.mean()) < 5 * 0.5 / math.sqrt(eps.size)
    assert y.dtype == torch.float64
    assert torch.equal(gaussian_noise(x, 0.0), x)


def test_numpy_input_accepted():
    x = np.ones((3, 8))
    y = flip_bits(x, 0.5, seed=0)
    assert isinstance(y, torch.Tensor) and ((y == -1).sum(-1) == 4).all()
    assert np.all(x == 1)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: flip_bits(x, 1.5), "^fraction"),
        (lambda x: flip_bits(x, -0.1), "^fraction"),
        (lambda x: flip_bits(x, 0.1, code="ternary"), "^code"),
        (lambda x: flip_bits(x * 0.5, 0.1), "^x"),
        (lambda x: flip_bits(x, 0.1, code="binary"), "^x"),
        (lambda x: mask(x, 2.0), "^fraction"),
        (lambda x: mask(x, 0.5, mode="top"), "^mode"),
        (lambda x: mask(x, 0.5, fill=float("nan")), "^fill"),
        (lambda x: gaussian_noise(x, -1.0), "^std"),
        (lambda x: flip_bits(x, 0.1, seed=1, generator=torch.Generator()), "generator"),
        (lambda x: flip_bits(x, 0.1, seed=-1), "^seed"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    x = bipolar(2, 6)
    with pytest.raises(ValueError, match=match):
        call(x)
    assert torch.equal(x, bipolar(2, 6))


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="^x"):
        flip_bits([1.0, -1.0], 0.5)
    with pytest.raises(TypeError, match="^generator"):
        gaussian_noise(torch.zeros(3), 1.0, generator=3)
