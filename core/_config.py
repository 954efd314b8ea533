"""Server settings, from command-line flags or `WORKYARD_*` environment variables."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

__all__ = ["Settings"]


def _tokens(value: str | None) -> frozenset[str]:
    return frozenset(t.strip() for t in (value or "").split(",") if t.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8470
    #: an optional second port serving only `GET /work/queue`, from the same lean WebSocket
    #: server as the main port (0: a free port); None: workers use the main port alone
    worker_port: int | None = None
    #: SQLite file; ":memory:" keeps nothing across restarts
    db: str = "workyard.db"
    #: SQLite synchronous mode: NORMAL survives a killed process, FULL also a power cut
    synchronous: str = "NORMAL"
    worker_tokens: frozenset[str] = field(default_factory=frozenset)
    producer_tokens: frozenset[str] = field(default_factory=frozenset)
    admin_tokens: frozenset[str] = field(default_factory=frozenset)
    #: seconds between WebSocket pings to each worker
    ping_interval: float = 20.0
    #: a ping not acknowledged within this many seconds drops the worker
    ping_timeout: float = 10.0
    #: in-flight tasks per worker unless it asks for another `capacity` (0: unlimited)
    default_capacity: int = 32
    #: seconds a final task is kept before it is purged
    retention: float = 24 * 3600.0
    #: a polling worker that has not polled for this many seconds is gone
    poll_liveness: float = 60.0
    max_body: int = 16 * 1024 * 1024
    max_frame: int = 16 * 1024 * 1024
    log_level: str = "INFO"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.worker_tokens or self.producer_tokens or self.admin_tokens)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then `WORKYARD_<FIELD>` variables, then explicit overrides (not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"WORKYARD_{f.name.upper()}")
            if raw is None:
                continue
            if f.name.endswith("_tokens"):
                values[f.name] = _tokens(raw)
            elif isinstance(f.default, bool):
                values[f.name] = raw.lower() in ("1", "true", "yes")
            elif isinstance(f.default, int) or f.type == "int | None":
                values[f.name] = int(raw)
            elif isinstance(f.default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        for name, value in overrides.items():
            if value is not None:
                values[name] = _tokens(value) if name.endswith("_tokens") and isinstance(
                    value, str) else value
        return cls(**values)  # type: ignore[arg-type]
