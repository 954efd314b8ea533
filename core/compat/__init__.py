"""The public protocols workyard speaks: Resoto's worker queue (seed 000), Katar's
polling workers (seed 002) and presque's worker registry (seed 004)."""

from ._katar import PollingFleet, add_polling_routes
from ._resoto import add_websocket_routes

__all__ = ["PollingFleet", "add_polling_routes", "add_websocket_routes"]
