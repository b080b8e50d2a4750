"""IDX reading on small files written here, and the seeded digits split against sklearn's data."""

import gzip
import struct

import numpy as np
import pytest
import torch

from kvmem.data import idx
from kvmem.data.digits import load_digits


def write_idx(path, array, code=0x08, gz=False):
    """An IDX file written by hand: magic 00 00 code ndim, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    array = np.asarray(array)
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(dtype).tobytes()
    # Closed explicitly: since Python 3.12 a GzipFile buffers writes and an unclosed one,
    # collected without close(), can leave an empty file behind.
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)
    return path


def write_split_files(folder, n_train=12, n_test=5, rows=4, cols=3, labels=range(4), gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
        y = rng.choice(np.array(list(labels), dtype=np.uint8), size=n)
        image_stem, label_stem = idx.FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / (image_stem + suffix), images, gz=gz)
        write_idx(folder / (label_stem + suffix), y, gz=gz)
        out[split] = (images, y)
    return out


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, code, gz):
    rng = np.random.default_rng(code)
    data = rng.integers(-100, 100, size=(3, 2, 5)) if code != 0x08 else rng.integers(0, 256, size=(3, 2, 5))
    if code in (0x0D, 0x0E):
        data = data / 7.0
    path = write_idx(tmp_path / ("f.gz" if gz else "f"), data, code=code, gz=gz)
    out = idx.read_idx(path)
    assert out.shape == (3, 2, 5)
    assert out.dtype.byteorder in ("=", "|") or out.dtype.isnative
    np.testing.assert_array_equal(out, data.astype(out.dtype))


def test_read_idx_reads_the_header_big_endian(tmp_path):
    # 258 = 0x0102: a little-endian reader would see 513 items.
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 1, 2]) + bytes(range(256)) + bytes([7, 9]))
    out = idx.read_idx(path)
    assert out.shape == (258,) and out[-1] == 9 and out.dtype == np.uint8


@pytest.mark.parametrize(
    "raw,match",
    [
        (bytes([0, 0, 8]), "at least 4"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "corrupt IDX header"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "corrupt IDX header"),
        (bytes([0, 0, 8, 0]), "corrupt IDX header"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "too short"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "header says shape"),
    ],
)
def test_corrupt_files_raise_value_error_naming_the_path(tmp_path, raw, match):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as err:
        idx.read_idx(path)
    assert str(path) in str(err.value)


def test_load_split_and_dataset(tmp_path):
    written = write_split_files(tmp_path / "mnist", gz=True)
    images, labels = idx.load_idx_split(tmp_path / "mnist", "train")
    np.testing.assert_array_equal(images, written["train"][0])
    np.testing.assert_array_equal(labels, written["train"][1])
    data = idx.load_idx_dataset(tmp_path / "mnist", labels=(1, 2))
    imgs, y = written["test"]
    keep = np.isin(y, [1, 2])
    assert data.x_test.shape == (keep.sum(), 12) and data.x_test.dtype == torch.float32
    np.testing.assert_allclose(data.x_test.numpy(), imgs[keep].reshape(-1, 12) / 255.0, rtol=1e-6)
    assert data.y_test.tolist() == y[keep].astype(int).tolist() and data.y_test.dtype == torch.int64
    assert float(data.x_train.max()) <= 1.0 and float(data.x_train.min()) >= 0.0


def test_missing_folder_and_files_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot be downloaded") as err:
        idx.load_idx_split(tmp_path / "absent")
    assert "train-images-idx3-ubyte" in str(err.value) and str(tmp_path / "absent") in str(err.value)
    assert isinstance(err.value, ValueError)  # so the command line reports it in one line
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        idx.load_idx_split(tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        idx.load_idx_split(tmp_path / "empty", "valid")
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        idx.read_idx(tmp_path / "nope")


def test_mismatched_counts_and_wrong_kind_of_file(tmp_path):
    folder = tmp_path / "d"
    write_split_files(folder)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="12 images but 3 labels"):
        idx.load_idx_split(folder)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros((12, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="0x00000801"):
        idx.load_idx_split(folder)


def test_dataset_folders_under_a_root(tmp_path):
    write_split_files(tmp_path / "FashionMNIST" / "raw")
    write_split_files(tmp_path / "mnist")
    assert idx.find_dataset_folder(tmp_path, "fashion-mnist") == tmp_path / "FashionMNIST" / "raw"
    assert idx.find_dataset_folder(tmp_path, "mnist") == tmp_path / "mnist"
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        idx.find_dataset_folder(tmp_path / "mnist", "mnist")
    with pytest.raises(ValueError, match="dataset"):
        idx.find_dataset_folder(tmp_path, "cifar")
    with pytest.raises(FileNotFoundError, match="data_dir not found"):
        idx.find_dataset_folder(tmp_path / "x", "mnist")
    # The dotted file-name variant is found too.
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").rename(tmp_path / "mnist" / "t10k-images.idx3-ubyte")
    assert idx.find_file(tmp_path / "mnist", "t10k-images-idx3-ubyte").name == "t10k-images.idx3-ubyte"


def test_digits_split_is_seeded_stratified_scaled_and_filtered():
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    a = load_digits((3, 8), test_fraction=0.25, seed=4)
    b = load_digits((3, 8), test_fraction=0.25, seed=4)
    c = load_digits((3, 8), test_fraction=0.25, seed=5)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.x_train, c.x_train)
    n3, n8 = int((bunch.target == 3).sum()), int((bunch.target == 8).sum())
    assert (a.y_test == 3).sum() == round(0.25 * n3) and (a.y_test == 8).sum() == round(0.25 * n8)
    assert len(a.y_train) + len(a.y_test) == n3 + n8
    assert set(a.y_train.tolist()) == {3, 8} and a.x_train.shape[1] == 64 and a.x_train.dtype == torch.float32
    # Every returned image is an sklearn image divided by 16, with its own label, and none is in both splits.
    lookup = {tuple(row): int(t) for row, t in zip(bunch.data / 16.0, bunch.target)}
    for x, y in ((a.x_train, a.y_train), (a.x_test, a.y_test)):
        assert all(lookup[tuple(row)] == int(t) for row, t in zip(x.double().numpy(), y))
    # sklearn's 1,797 digit images are all distinct, so equal rows would mean a leaked image.
    train_rows = {tuple(r) for r in a.x_train.numpy()}
    assert len(train_rows) == len(a.x_train) and not any(tuple(r) in train_rows for r in a.x_test.numpy())
    assert float(a.x_train.max()) == 1.0 and float(a.x_train.min()) == 0.0
    assert len(load_digits().y_train) + len(load_digits().y_test) == 1797


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"labels": (1, 10)}, ValueError, "labels"),
        ({"labels": (1, 1)}, ValueError, "distinct"),
        ({"labels": (1.5,)}, TypeError, "labels"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"seed": -1}, TypeError, "seed"),
    ],
)
def test_digits_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_digits(**kwargs)
