"""Running a hub: its listeners, the main port's front door, hypercorn for the app and
the lean server for WebSocket workers."""

from ._serve import build_app, open_hub, open_listener, open_store, serve

__all__ = ["build_app", "open_hub", "open_listener", "open_store", "serve"]
