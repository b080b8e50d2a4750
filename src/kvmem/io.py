"""Saving and loading memories: tensors in safetensors, configuration in JSON.

A file holds the memory's ``state_dict()`` tensors and, in the safetensors header's
metadata, the format version, the class name, the constructor configuration and a
SHA-256 digest of every tensor. Nothing is ever unpickled.

Example:
    >>> import torch, kvmem, tempfile, os
    >>> mem = kvmem.SlotMemory()
    >>> mem.write(torch.randn(4, 8), torch.randn(4, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "mem.safetensors")
    >>> kvmem.save(mem, path)
    >>> torch.equal(kvmem.load(path).values, mem.values)
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .memory.base import MEMORY_CLASSES, Memory

FORMAT = "kvmem-memory"
FORMAT_VERSION = 1


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def save(memory: Memory, path: str | os.PathLike) -> None:
    """Write ``memory`` (configuration and state) to ``path`` in safetensors format.

    Args:
        memory: any kvmem memory.
        path: the file to write (conventionally ``*.safetensors``); replaced if present.
    """
    if not isinstance(memory, Memory):
        raise TypeError(f"memory: expected a kvmem memory, got {type(memory).__name__}")
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in memory.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "class": type(memory).__name__,
        "config": json.dumps(memory.config()),
        "sha256": json.dumps({k: _digest(v) for k, v in tensors.items()}),
    }
    save_file(tensors, os.fspath(path), metadata=metadata)


def load(path: str | os.PathLike) -> Memory:
    """Rebuild a memory saved by :func:`save`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a kvmem file, truncated, tampered with (a digest differs), or
            written by an unsupported format version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no file at {path!r}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"path: {path!r} is not a readable safetensors file (truncated or corrupt?): {err}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"path: {path!r} is not a kvmem memory file")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(
            f"path: {path!r} has format version {meta.get('format_version')!r}; this kvmem reads version {FORMAT_VERSION}"
        )
    try:
        config: dict[str, Any] = json.loads(meta["config"])
        digests: dict[str, str] = json.loads(meta["sha256"])
        cls = MEMORY_CLASSES[meta["class"]]
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"path: {path!r} has damaged metadata ({err})") from None
    if sorted(digests) != sorted(tensors) or any(_digest(tensors[k]) != d for k, d in digests.items()):
        raise ValueError(f"path: {path!r} failed its integrity check: tensors do not match their SHA-256 digests")
    memory = cls(**config)
    memory.load_state_dict(tensors)
    return memory
