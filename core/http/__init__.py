"""The HTTP face of the hub (quart-trio): producer routes, fleet views, error mapping."""

from ._app import create_app, json_response, number_arg, require

__all__ = ["create_app", "json_response", "number_arg", "require"]
