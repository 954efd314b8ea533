"""Running a hub: listeners and hypercorn's trio worker around the app."""

from ._serve import build_app, open_hub, open_listener, open_store, serve

__all__ = ["build_app", "open_hub", "open_listener", "open_store", "serve"]
