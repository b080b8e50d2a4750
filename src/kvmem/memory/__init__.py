"""Memories with one contract: ``write(keys, values)``, ``read(queries)``.

Importing this package registers every memory class with :func:`kvmem.load`.
"""

from .base import MEMORY_CLASSES, Memory, ReadResult, Retrieval, register_memory
from .hopfield import ClassicalHopfield, DenseAssociativeMemory, ModernHopfield
from .matrix import MatrixMemory
from .sdm import SparseDistributedMemory, fit_softmax_beta, softmax_fit
from .slots import SlotMemory
from .universal import UniversalHopfield

__all__ = [
    "MEMORY_CLASSES",
    "ClassicalHopfield",
    "DenseAssociativeMemory",
    "MatrixMemory",
    "Memory",
    "ModernHopfield",
    "ReadResult",
    "Retrieval",
    "SlotMemory",
    "SparseDistributedMemory",
    "UniversalHopfield",
    "fit_softmax_beta",
    "register_memory",
    "softmax_fit",
]
