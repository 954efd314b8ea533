"""The HTTP face of the hub (quart-trio): producer routes, fleet views, error mapping,
and what an operator looks at (dashboard, /metrics, /openapi.json)."""

from ._app import create_app, json_response, number_arg, require
from ._observability import add_observability

__all__ = ["add_observability", "create_app", "json_response", "number_arg", "require"]
