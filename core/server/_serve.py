"""Run a hub: one function, `serve`, wiring the hub, its main port and the optional
worker port together."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import httpx
import trio
from hypercorn.config import Config
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth
from .._config import Settings
from .._errors import InvalidSetting
from ..compat import (
    ClearML,
    QueueConfigurations,
    Registry,
    add_clearml_routes,
    add_polling_routes,
    add_registry_routes,
    add_taskcluster_routes,
)
from ..http import add_observability, create_app
from ..hub import Hub
from ..outbox import POOL_REMOVED, WORKER_MANAGER_EXCHANGES, Relay, Sink
from ..outbox._stream import add_stream_routes, bridge_hub_events
from ..store import MemoryStore, SQLiteStore, Store
from ..transports import PollingFleet, serve_lean_connection, serve_worker_port
from ..transports._tls import server_context
from ._front import ConnectionHandler, serve_front
from ._hypercorn import HTTPServer
from ._lane_server import LaneServer

__all__ = ["build_app", "open_listener", "serve"]

log = logging.getLogger("workyard.server")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_listener(settings: Settings, port: int | None = None) -> socket.socket:
    """A listening TCP socket (on `port`, else `settings.port`) with `settings.backlog`,
    whose unacknowledged sends time out after `ping_timeout`. Every listener is opened
    here, so each honours the backlog (hypercorn never opens its own).

    The hub pings every WebSocket worker and drops one whose pong does not come back
    within `ping_timeout`; with TCP_USER_TIMEOUT a connection whose sends a dead peer
    never acknowledges breaks within the same time (HTTP clients included).
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                        int(settings.ping_timeout * 1000))
    sock.bind((settings.host, settings.port if port is None else port))
    sock.listen(settings.backlog)
    sock.setblocking(False)
    return sock


def build_app(hub: Hub, settings: Settings) -> QuartTrio:
    """The quart-trio app with every HTTP route: producers, views, polling workers, the
    worker-manager, the event stream and the ClearML worker registry. WebSocket workers (`/work/queue`) are served beside
    it, by the lean server."""
    app = create_app(hub, settings)
    auth = Auth(settings)
    fleet = PollingFleet(hub)
    add_polling_routes(app, fleet, auth, QueueConfigurations(hub.store))
    add_registry_routes(app, Registry(hub, fleet), auth)
    add_taskcluster_routes(app, hub, settings, auth)
    add_stream_routes(app, hub, auth)
    add_clearml_routes(app, ClearML(hub, settings))
    add_observability(app, hub, settings)  # dashboard, /metrics, /openapi.json: after the rest
    return app


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def describe_db(db: str) -> str:
    """`--db` as it may be logged: a PostgreSQL URL without its password."""
    if not is_postgres_url(db):
        return db
    from ..store._postgres import describe_url

    return describe_url(db)


def open_relay(hub: Hub, settings: Settings) -> Relay:
    """The outbox relay: to RabbitMQ with `--amqp-url`, else only moving the cursor (the
    embedded stream reads the outbox itself)."""
    sink: Sink | None = None
    if settings.amqp_url:
        from ..outbox._amqp import AmqpSink
        sink = AmqpSink(settings.amqp_url, [*WORKER_MANAGER_EXCHANGES, POOL_REMOVED])
    return Relay(hub.store, hub.feed, sink, retention=settings.event_retention,
                 clock=hub.now)


def open_store(settings: Settings) -> Store:
    """A `postgresql://` URL opens a PostgresStore, ':memory:' a MemoryStore, anything
    else is a SQLite file."""
    if settings.db == ":memory:":
        return MemoryStore()
    if is_postgres_url(settings.db):
        try:
            from ..store import PostgresStore
        except ImportError as exc:  # psycopg is the `postgres` extra
            raise InvalidSetting(f"--db postgresql://...: PostgreSQL needs psycopg ({exc}); "
                                 "pip install 'workyard[postgres]'") from None
        return PostgresStore(settings.db)
    return SQLiteStore(settings.db, synchronous=settings.synchronous)


def open_hub(settings: Settings) -> Hub:
    """The hub `serve` runs unless it is given one (tests build it to keep a handle).
    On PostgreSQL it takes part in the election of the database's leader."""
    store = open_store(settings)
    election = None
    if is_postgres_url(settings.db):
        from ..cluster import Election

        election = Election(store, interval=settings.election_interval,  # type: ignore[arg-type]
                            heartbeat=settings.leader_heartbeat)
    return Hub(store, default_capacity=settings.default_capacity,
               retention=settings.retention, ping_interval=settings.ping_interval,
               ping_timeout=settings.ping_timeout, poll_liveness=settings.poll_liveness,
               heartbeat_liveness=settings.heartbeat_liveness, election=election)


def add_relay(app: QuartTrio, hub: Hub, client: httpx.AsyncClient) -> None:
    """On a follower, every request but the producers' and the task reads goes to the
    leader (`cluster/_relay.py`)."""
    from ..cluster._relay import relay_request, served_by_follower

    election = hub.election
    assert election is not None

    @app.before_request
    async def relay_to_leader() -> Response | None:
        if hub.leading or served_by_follower(request.method, request.path):
            return None
        return await relay_request(client, election.leader_url, election.url)


def serves_here(hub: Hub) -> Callable[[str, str], bool] | None:
    """Which requests this hub answers itself now (None: all): a follower leaves the
    others to the app, whose `relay_to_leader` sends them on."""
    election = hub.election
    if election is None:
        return None
    from ..cluster._relay import served_by_follower

    return lambda method, path: hub.leading or served_by_follower(method, path)


def worker_entry(hub: Hub, lean: ConnectionHandler) -> ConnectionHandler:
    """Worker connections: served here while this hub leads, else relayed to the leader."""
    election = hub.election
    if election is None:
        return lean

    async def enter(stream: trio.abc.Stream, received: bytes = b"") -> None:
        if hub.leading:
            await lean(stream, received)
            return
        from ..cluster._relay import relay_connection

        async with stream:
            await relay_connection(stream, received, election.leader_url, election.url)

    return enter


async def serve(
    settings: Settings,
    *,
    hub: Hub | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. `task_status.started` gets the base URL, e.g. http://127.0.0.1:8470
    (https:// with `settings.certfile`: TLS on every port).

    On the main port, WebSocket upgrades for `/work/queue` go to the lean WebSocket
    server and everything else to the app on hypercorn (`_front.py`). With
    `settings.worker_port` set, the lean server also has that port to itself; its URL is
    logged and kept in `hub.worker_url`.
    """
    settings.refuse_lockout()
    tls = server_context(settings)
    if not settings.auth_enabled and not _is_loopback(settings.host):
        log.warning("no tokens configured: binding 127.0.0.1 instead of %s; set worker, "
                    "producer or admin tokens to serve other hosts", settings.host)
        settings = replace(settings, host="127.0.0.1")
    if hub is None:
        hub = open_hub(settings)
    auth = Auth(settings)
    listener = open_listener(settings)
    port = listener.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"{'https' if tls else 'http'}://{host}:{port}"

    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    worker_listener = None if settings.worker_port is None else open_listener(
        settings, settings.worker_port)
    lean = worker_entry(hub, partial(serve_lean_connection, hub, auth, settings))
    if hub.election is not None:
        hub.election.url = (settings.advertise_url or url).rstrip("/")
        if settings.advertise_url is None and settings.host in ("0.0.0.0", "::"):
            log.warning("other hubs will relay workers to %s while this hub leads, which "
                        "only this machine can reach; set --advertise-url", url)

    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        hub.relay = open_relay(hub, settings)
        await nursery.start(hub.relay.run)
        nursery.start_soon(bridge_hub_events, hub)
        app = build_app(hub, settings)
        if hub.election is not None:
            relay_client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0),
                                             verify=False, follow_redirects=False,
                                             limits=httpx.Limits(max_connections=None,
                                                                 max_keepalive_connections=100))
            add_relay(app, hub, relay_client)
        await nursery.start(app.extensions["workyard.observer"].run)
        http = HTTPServer(app, config)
        await nursery.start(http.run)
        fast = LaneServer(app.extensions["workyard.lane"], http.serve_connection,
                          max_body=settings.max_body, body_timeout=app.config["BODY_TIMEOUT"],
                          keep_alive=config.keep_alive_timeout, serves=serves_here(hub))
        await nursery.start(partial(serve_front, listener, lean, http.serve_connection, fast,
                                    tls=tls))
        if worker_listener is not None:
            worker_port = worker_listener.getsockname()[1]
            await nursery.start(partial(serve_worker_port, hub, auth, settings,
                                        worker_listener, tls=tls, handler=lean))
            hub.worker_url = f"{'wss' if tls else 'ws'}://{host}:{worker_port}/work/queue"
            log.info("workers: %s (lean worker port)", hub.worker_url)
        if settings.amqp_url:
            log.info("events: RabbitMQ %s, and the stream at %s/events",
                     settings.amqp_url.rsplit("@", 1)[-1], url)
        log.info("workyard serving on %s (store: %s)", url, describe_db(settings.db))
        if hub.election is not None:
            log.info("%s", "leader: this hub schedules" if hub.leading else
                     f"follower: the leader is {hub.election.leader_url or '(being elected)'}"
                     "; workers and other requests are relayed to it")
        log.info("%s", auth.describe())
        task_status.started(url)
