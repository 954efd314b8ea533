"""The `workyard` command: serve, worker, submit, sim."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .._config import Settings
from .._errors import InvalidSetting
from ..sim._cli import add_commands as sim_commands
from ._client import add_commands as client_commands
from ._startup import explain

__all__ = ["main"]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)


#: objects allocated between two young collections (CPython's default: 700). Each task
#: allocates a few dozen objects that live for a round trip; with the default, a young
#: collection ran every ~20 tasks and moved the ones in flight to the older generations,
#: whose full collections then cost 15-20 % of a busy hub's CPU, in pauses of ~0.1 s.
YOUNG_COLLECTION = 10_000


def _settle_gc() -> None:
    """Once the hub serves: keep what startup allocated (modules, classes, routes, about
    100,000 objects) out of every later collection, and collect young objects less
    often. Reference counting frees almost everything a task allocates; the collector
    only has cycles to find, and these settings leave it fewer objects to walk."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_args(args)
        settings.refuse_lockout()
    except InvalidSetting as exc:  # one line, no traceback: what is wrong and what to do
        print(f"workyard serve: {exc} (fix or remove it; workyard serve --help lists "
              "every setting)", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    try:
        trio.run(_serve_until_signalled, settings)
    except Exception as exc:  # ExceptionGroups from the nursery included
        problem = explain(exc, settings)
        if problem is None:
            raise
        print(f"workyard serve: {problem}", file=sys.stderr)
        return 2
    return 0


async def _serve_until_signalled(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly: the store flushes its
    queued writes and every worker connection closes."""
    from ..hub._summary import log_activity
    from ..server import open_hub, serve

    hub = open_hub(settings)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, settings, hub=hub))
            _settle_gc()
            nursery.start_soon(log_activity, hub, settings.summary_interval)
            async for signum in signals:
                logging.getLogger("workyard.server").info(
                    "%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the hub (SQLite store by default)",
                       description="Run the hub. Flags override WORKYARD_* environment "
                       "variables, which override the defaults.")
    Settings.add_arguments(p)
    p.set_defaults(run=_serve)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("workyard")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="workyard", description="A task hub for worker fleets: most-specific matching, "
        "even spread, instant rescheduling.",
        epilog="Start with `workyard serve`; `workyard COMMAND --help` explains each command.")
    parser.add_argument("--version", action="version", version=f"workyard {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_serve, client_commands, sim_commands):
        add(sub)
    args = parser.parse_args(argv)
    if args.command is None:  # `workyard` alone: what it can do, not an error
        parser.print_help()
        return 0
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
