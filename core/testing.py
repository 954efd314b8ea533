"""What tests and the simulator use in place of durable parts: the in-memory store."""

from .store import MemoryStore

__all__ = ["MemoryStore"]
