"""Start-up failures of `workyard serve`, told in one line with what to do.

A port in use or a database that cannot be opened surfaces inside the server's
trio nursery, wrapped in ExceptionGroups. `explain` unwraps them and, when every
failure is one we know, returns a line for the user instead of a traceback.
"""

from __future__ import annotations

import errno
import socket
import sqlite3

from .._config import Settings
from .._errors import WorkyardError

__all__ = ["explain"]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def explain(exc: BaseException, settings: Settings) -> str | None:
    """One line saying what stopped `serve` from starting and what to do; None if any
    failure in `exc` is not a known start-up problem (then the traceback is wanted)."""
    lines = [_explain_one(leaf, settings) for leaf in _leaves(exc)]
    if not lines or any(line is None for line in lines):
        return None
    return "; ".join(dict.fromkeys(line for line in lines if line is not None))


def _ports(settings: Settings) -> tuple[str, str]:
    """Which address could not be had, and the flag that picks another."""
    main = f"{settings.host}:{settings.port}"
    if settings.worker_port is None or settings.worker_port == 0:
        return main, "--port"
    worker = f"{settings.host}:{settings.worker_port}"
    if settings.port == 0:  # a free port cannot be in use: it was the worker port
        return worker, "--worker-port"
    return f"{main} or {worker}", "--port or --worker-port"


def _explain_one(exc: BaseException, settings: Settings) -> str | None:
    db = settings.db
    if isinstance(exc, sqlite3.DatabaseError):
        if "not a database" in str(exc):
            return (f"--db {db}: the file is not an SQLite database; pass --db a new or "
                    "existing workyard database file")
        return (f"--db {db}: cannot open the database ({exc}); check that its folder "
                "exists and is writable, or pass --db another path")
    if isinstance(exc, WorkyardError):  # e.g. a database written by a newer workyard
        return exc.message
    if not isinstance(exc, OSError):
        return None
    if exc.filename is not None:  # the database's folder or file
        why = ("it is a file, not a folder" if exc.errno in (errno.EEXIST, errno.ENOTDIR)
               else exc.strerror or str(exc))
        return (f"--db {db}: cannot create or open {exc.filename} ({why}); "
                "pass --db a path in a writable folder")
    where, flag = _ports(settings)
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: the address is already in use (another "
                f"workyard serve?); stop it, or pick a free port with {flag} (0 picks one)")
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need "
                f"privileges); pick another with {flag}")
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL,
                                                          errno.EAFNOSUPPORT):
        return (f"cannot listen on {settings.host}: no such address on this machine; "
                "pass --host an address it has, e.g. 127.0.0.1")
    return None
