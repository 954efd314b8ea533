"""The public HTTP protocols workyard speaks, as thin shells over the hub and its
transports: ClearML's `workers.*` registry with machine statistics (seed 001),
Katar's polling workers (seed 002), Taskcluster's worker-manager (seed 003) and
presque's worker registry (seed 004). Resoto's worker queue (seed 000, WebSocket)
needs no HTTP framework: it is `transports`."""

from ._clearml import ClearML, add_clearml_routes
from ._katar import QueueConfigurations, add_polling_routes
from ._presque import Registry, add_registry_routes
from ._taskcluster import add_taskcluster_routes

__all__ = [
    "ClearML",
    "QueueConfigurations",
    "Registry",
    "add_clearml_routes",
    "add_polling_routes",
    "add_registry_routes",
    "add_taskcluster_routes",
]
