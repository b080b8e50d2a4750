"""scikit-learn's bundled 8x8 handwritten digits as a seeded train/test split.

``sklearn.datasets.load_digits`` ships 1,797 images (about 180 per digit, 8x8 pixels with
values 0..16) inside the scikit-learn package, so it works offline. Here the pixels are
scaled to [0, 1] (divided by 16), the images can be restricted to chosen digits, and the
split is stratified: within every digit a seeded permutation sends ``test_fraction`` of the
images to the test set. The training set is then put in one seeded random order (so a
loader without shuffling still sees the classes mixed, as in the MNIST files).
"""

from __future__ import annotations

import numpy as np
import torch

from .idx import TrainTest

__all__ = ["load_digits"]


def load_digits(labels: tuple[int, ...] | None = None, *, test_fraction: float = 0.25, seed: int = 0) -> TrainTest:
    """A stratified, seeded train/test split of the 8x8 digits.

    Args:
        labels: keep these digits (0..9), labels unchanged; None keeps all ten.
        test_fraction: the share of each digit's images that goes to the test set, in (0, 1).
        seed: seed of the split and of the training order.

    Returns:
        :class:`kvmem.data.idx.TrainTest` with ``x`` ``[N, 64]`` float32 in [0, 1] and ``y`` int64.

    Raises:
        ValueError: unknown digit, duplicate digits or ``test_fraction`` outside (0, 1).
        TypeError: a non-integer digit or seed.

    Example:
        >>> data = load_digits((0, 1), test_fraction=0.25, seed=0)
        >>> data.x_train.shape, data.x_test.shape
        (torch.Size([270, 64]), torch.Size([90, 64]))
        >>> float(data.x_train.max()), sorted(set(data.y_test.tolist()))
        (1.0, [0, 1])
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    if labels is None:
        labels = tuple(range(10))
    labels = tuple(labels)
    if not labels or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in labels):
        raise TypeError(f"labels: expected a non-empty tuple of integer digits, got {labels!r}")
    if any(not 0 <= d <= 9 for d in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected distinct digits in 0..9, got {labels!r}")

    bunch = _sk_load_digits()
    x_all = bunch.data.astype(np.float32) / 16.0
    y_all = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for d in labels:
        idx = rng.permutation(np.flatnonzero(y_all == d))
        n_test = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train = rng.permutation(np.concatenate(train_idx))
    test = np.sort(np.concatenate(test_idx))
    return TrainTest(
        torch.from_numpy(x_all[train]),
        torch.from_numpy(y_all[train]),
        torch.from_numpy(x_all[test]),
        torch.from_numpy(y_all[test]),
    )
