"""Memories with one contract: ``write(keys, values)``, ``read(queries)``."""

from .base import MEMORY_CLASSES, Memory, ReadResult, register_memory
from .matrix import MatrixMemory
from .slots import SlotMemory

__all__ = ["MEMORY_CLASSES", "MatrixMemory", "Memory", "ReadResult", "SlotMemory", "register_memory"]
