"""Everything an operator looks at, added to the app in one call: the dashboard and
its views, `/metrics`, `/openapi.json` and `/docs`, and the per-route request counts."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._config import Settings
from ..hub import Hub
from ._app import require
from ._dashboard import add_dashboard_routes
from ._metrics import HubCollector, RequestCounts, metrics_registry
from ._observe import Observer
from ._openapi import add_openapi_routes

__all__ = ["add_observability"]


def add_observability(app: QuartTrio, hub: Hub, settings: Settings) -> Observer:
    """Add the routes; the returned `Observer` must run beside the hub (`serve` starts
    it) for the histograms, series and history to fill."""
    auth: Auth = app.extensions["workyard.auth"]
    observer = Observer(hub)
    requests = RequestCounts()
    streams = [0]
    registry = metrics_registry(HubCollector(
        hub, observer, requests, per_worker=settings.metrics_per_worker, sse_clients=streams))

    app.extensions["workyard.lane"].counted = requests.count  # what the lane answers itself

    @app.after_request
    async def count_request(response: Response) -> Response:
        rule = request.url_rule
        requests.count(rule.rule if rule is not None else "(no route)", request.method,
                       response.status_code)
        return response

    @app.get("/metrics")
    async def metrics() -> Response:
        require(auth, Role.ANY)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    add_dashboard_routes(app, hub, auth, observer, streams)
    add_openapi_routes(app, auth)
    app.extensions["workyard.observer"] = observer
    return observer
