"""The `workyard` command: serve, worker, submit, sim."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .._config import Settings
from ..sim._cli import add_commands as sim_commands
from ._client import add_commands as client_commands

__all__ = ["main"]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(
        host=args.host, port=args.port, worker_port=args.worker_port, db=args.db,
        synchronous=args.sync, worker_tokens=args.worker_token,
        producer_tokens=args.producer_token, admin_tokens=args.admin_token,
        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
        default_capacity=args.capacity, retention=args.retention,
        poll_liveness=args.poll_liveness, log_level=args.log_level,
    )
    _setup_logging(settings.log_level)
    trio.run(_serve_until_signalled, settings)
    return 0


async def _serve_until_signalled(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly: the store flushes its
    queued writes and every worker connection closes."""
    from ..server import serve

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve, settings))
            async for signum in signals:
                logging.getLogger("workyard.server").info(
                    "%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the hub (SQLite store by default)",
                       description="Run the hub. Flags override WORKYARD_* environment "
                       "variables, which override the defaults.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8470; 0 picks a free one)")
    p.add_argument("--worker-port", type=int, metavar="N",
                   help="optional: also serve GET /work/queue, and nothing else, on port N "
                   "(the same WebSocket server as the main port's; 0 picks a free one)")
    p.add_argument("--db", help="SQLite file (default ./workyard.db; ':memory:' keeps nothing)")
    p.add_argument("--sync", choices=["NORMAL", "FULL"], type=str.upper,
                   help="SQLite synchronous mode (default NORMAL: survives kill -9; "
                   "FULL: survives power loss)")
    p.add_argument("--worker-token", metavar="TOKENS", help="comma-separated worker tokens")
    p.add_argument("--producer-token", metavar="TOKENS", help="comma-separated producer tokens")
    p.add_argument("--admin-token", metavar="TOKENS", help="comma-separated admin tokens")
    p.add_argument("--ping-interval", type=float, metavar="S",
                   help="seconds between pings to WebSocket workers (default 20)")
    p.add_argument("--ping-timeout", type=float, metavar="S",
                   help="drop a worker whose ping is unacknowledged this long (default 10)")
    p.add_argument("--capacity", type=int, metavar="N",
                   help="default tasks in flight per worker (default 32; 0: unlimited)")
    p.add_argument("--retention", type=float, metavar="S",
                   help="seconds to keep final tasks (default 86400)")
    p.add_argument("--poll-liveness", type=float, metavar="S",
                   help="a polling worker silent this long is gone (default 60)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    p.set_defaults(run=_serve)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, client_commands, sim_commands):
        add(sub)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
