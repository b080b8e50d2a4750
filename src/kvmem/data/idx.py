"""Read the IDX files of MNIST and Fashion-MNIST from a folder the user provides.

The IDX format (LeCun et al.) is a big-endian header followed by raw data:

- magic: two zero bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte,
  ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64) and the number of
  dimensions; so labels are ``0x00000801`` and images ``0x00000803``;
- one big-endian uint32 per dimension;
- the entries, big-endian, in C order.

Files may be gzip-compressed (``.gz``). Nothing is downloaded: this environment has no
network, so the files must already be on disk. The standard file names are::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

(the variant ``train-images.idx3-ubyte`` with a dot is accepted too).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "DATASET_FOLDERS",
    "FILES",
    "DataNotFoundError",
    "TrainTest",
    "find_dataset_folder",
    "find_file",
    "load_idx_dataset",
    "load_idx_split",
    "read_idx",
]

# Type code -> big-endian numpy dtype.
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Sub-folders tried under a data root, first match wins (torchvision's layout first).
DATASET_FOLDERS = {
    "mnist": ("MNIST/raw", "MNIST", "mnist"),
    "fashion-mnist": ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist", "fashion"),
}


class DataNotFoundError(FileNotFoundError, ValueError):
    """A data folder or file is missing. Also a ``ValueError``, so the command line reports it in one line."""


class TrainTest(NamedTuple):
    """A train/test split as tensors.

    Attributes:
        x_train: ``[N, D]`` float32 inputs.
        y_train: ``[N]`` int64 labels.
        x_test: ``[M, D]`` float32 inputs.
        y_test: ``[M]`` int64 labels.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array in native byte order.

    Args:
        path: the file.

    Returns:
        an array with the dimensions of the header (e.g. ``[N, 28, 28]`` uint8 for images).

    Raises:
        DataNotFoundError: the file does not exist.
        ValueError: corrupt header (non-zero leading bytes, unknown type code, no
            dimensions) or a data size that disagrees with the header.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(path)
        array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: corrupt IDX header (file has {len(raw)} bytes, expected at least 4)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise ValueError(
            f"{path}: corrupt IDX header: magic 0x{int.from_bytes(raw[:4], 'big'):08X}; expected two zero bytes, "
            f"a type code in {[hex(c) for c in _TYPES]} and at least one dimension (e.g. 0x00000801 labels, 0x00000803 images)"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: corrupt IDX header: {ndim} dimensions announced, file too short for them")
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - head != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} data bytes), file holds {len(raw) - head}")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def find_file(folder: str | Path, stem: str) -> Path:
    """The IDX file ``stem`` in ``folder``: ``stem``, ``stem.gz`` or the dotted variant.

    Raises:
        DataNotFoundError: none of them exists; the message names the folder and the names tried.
    """
    folder = Path(folder)
    dotted = stem.replace("-idx", ".idx")
    names = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataNotFoundError(
        f"{folder}: no {stem} (looked for {', '.join(names)}); put the standard MNIST/Fashion-MNIST IDX files "
        "there (they cannot be downloaded here)"
    )


def load_idx_split(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split from the standard file names in ``folder``.

    Args:
        folder: the folder with the four IDX files.
        split: ``"train"`` or ``"test"`` (the ``t10k`` files).

    Returns:
        images ``[N, rows, cols]`` uint8 and labels ``[N]`` uint8.

    Raises:
        DataNotFoundError: the folder or a file is missing.
        ValueError: unknown split, corrupt header, not images/labels, or counts that differ.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> load_idx_split(d / "nowhere")
        Traceback (most recent call last):
        ...
        kvmem.data.idx.DataNotFoundError: data folder not found: ...
    """
    if split not in FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"data folder not found: {folder}; expected it to hold {', '.join(FILES['train'] + FILES['test'])} "
            "(optionally .gz); the data cannot be downloaded here, copy the files in first"
        )
    image_path, label_path = (find_file(folder, stem) for stem in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path}: expected uint8 images [N, rows, cols] (magic 0x00000803), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{label_path}: expected uint8 labels [N] (magic 0x00000801), got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split")
    return images, labels


def find_dataset_folder(root: str | Path, dataset: str) -> Path:
    """The folder of ``dataset`` (``"mnist"`` or ``"fashion-mnist"``) under a data root.

    MNIST and Fashion-MNIST use the same file names, so each lives in its own sub-folder;
    the names in :data:`DATASET_FOLDERS` are tried in order (torchvision's ``MNIST/raw`` and
    ``FashionMNIST/raw`` first).

    Raises:
        DataNotFoundError: the root or every candidate is missing.
        ValueError: unknown dataset name.
    """
    if dataset not in DATASET_FOLDERS:
        raise ValueError(f"dataset: expected one of {list(DATASET_FOLDERS)}, got {dataset!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"data_dir not found: {root}; the data cannot be downloaded here")
    for sub in DATASET_FOLDERS[dataset]:
        if (root / sub).is_dir():
            return root / sub
    raise DataNotFoundError(
        f"{root}: no {dataset} folder (looked for {', '.join(DATASET_FOLDERS[dataset])}), each holding "
        f"{', '.join(FILES['train'] + FILES['test'])} (optionally .gz); the data cannot be downloaded here"
    )


def load_idx_dataset(folder: str | Path, labels: tuple[int, ...] | None = None) -> TrainTest:
    """Train and test splits from ``folder``, flattened and scaled to [0, 1] (as ``ToTensor``).

    Args:
        folder: the folder with the four IDX files.
        labels: keep only these labels (file order kept); None keeps all.

    Returns:
        :class:`TrainTest` with ``x`` ``[N, rows*cols]`` float32 (pixel / 255) and ``y`` int64.
    """
    out = []
    for split in ("train", "test"):
        images, y = load_idx_split(folder, split)
        keep = np.ones(len(y), dtype=bool) if labels is None else np.isin(y, list(labels))
        x = torch.from_numpy(images[keep].reshape(int(keep.sum()), -1).astype(np.float32) / 255.0)
        out += [x, torch.from_numpy(y[keep].astype(np.int64))]
    return TrainTest(*out)
