"""Durable state: the store interface, an in-memory store and SQLite."""

from ._memory import MemoryStore, OnCommit, Store
from ._sqlite import SQLiteStore

__all__ = ["MemoryStore", "OnCommit", "SQLiteStore", "Store"]
