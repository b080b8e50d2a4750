"""kvmem: key-value memory models, tasks and experiments in one API.

The models of "Key-value memory in the brain" (Gershman, Fiete & Irie 2025) and the work
it builds on: correlation-matrix and slot memories with any similarity, feature map and
separation, and the experiments that test the paper's claims.

Example:
    >>> import torch, kvmem
    >>> mem = kvmem.SlotMemory(similarity="scaled_dot", separation=kvmem.Softmax(beta=8.0))
    >>> mem.write(torch.randn(10, 16), torch.randn(10, 4))
    >>> mem.read(torch.randn(3, 16)).shape
    torch.Size([3, 4])
"""

from . import bio, features, paradigms, separation, similarity
from .io import load, save
from .memory import (
    ClassicalHopfield,
    DenseAssociativeMemory,
    MatrixMemory,
    Memory,
    ModernHopfield,
    ReadResult,
    Retrieval,
    SlotMemory,
    SparseDistributedMemory,
    UniversalHopfield,
    fit_softmax_beta,
)
from .separation import (
    Exponential,
    HardMax,
    RectifiedPolynomial,
    Softmax,
    Threshold,
    TopK,
)

__version__ = "0.1.0"

__all__ = [
    "ClassicalHopfield",
    "DenseAssociativeMemory",
    "ModernHopfield",
    "Retrieval",
    "SparseDistributedMemory",
    "UniversalHopfield",
    "fit_softmax_beta",
    "paradigms",
    "Exponential",
    "HardMax",
    "MatrixMemory",
    "Memory",
    "ReadResult",
    "RectifiedPolynomial",
    "SlotMemory",
    "Softmax",
    "Threshold",
    "TopK",
    "bio",
    "features",
    "load",
    "save",
    "separation",
    "similarity",
    "__version__",
]
