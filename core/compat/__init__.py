"""The public HTTP protocols workyard speaks: Katar's polling workers (seed 002) and
presque's worker registry (seed 004). Resoto's worker queue (seed 000, WebSocket) is
`transports`: it needs no HTTP framework."""

from ._katar import PollingFleet, add_polling_routes

__all__ = ["PollingFleet", "add_polling_routes"]
