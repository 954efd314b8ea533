"""The public protocols workyard speaks, as thin HTTP shells over the hub and its
transports: Resoto's worker queue (seed 000), Katar's polling workers (seed 002)
and presque's worker registry (seed 004)."""

from ._katar import QueueConfigurations, add_polling_routes
from ._presque import Registry, add_registry_routes
from ._resoto import add_websocket_routes

__all__ = [
    "QueueConfigurations",
    "Registry",
    "add_polling_routes",
    "add_registry_routes",
    "add_websocket_routes",
]
