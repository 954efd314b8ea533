"""Server settings, each defined once: its type and bounds (the annotation), its default
and help text (`setting(...)`). The `workyard serve` flags, the `WORKYARD_<NAME>`
variables and the validation all come from that one definition.

Values arrive as text (a variable, a flag) or typed (code); `msgspec.convert` turns
them into the field's type and checks its bounds, and a refusal names the flag or
variable it came from. Precedence: defaults, then variables, then flags. An empty
variable counts as unset; tokens are comma-separated.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, TypeVar

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

from ._errors import InvalidSetting
from .protocol._limits import MAX_BODY, MAX_FRAME, MAX_SECONDS

__all__ = ["Settings", "setting"]

T = TypeVar("T")

ENV_PREFIX = "WORKYARD_"
#: the longest duration any setting takes: a year, which also keeps out `inf`
YEAR = MAX_SECONDS

Port = Annotated[int, Meta(ge=0, le=65535)]
Seconds = Annotated[float, Meta(gt=0, le=YEAR)]
#: a limit below a kibibyte would refuse every request
Bytes = Annotated[int, Meta(ge=1024, le=1 << 32)]
#: pings and their timeouts: below 50 ms the hub would do little but ping
PingSeconds = Annotated[float, Meta(ge=0.05, le=YEAR)]
Text = Annotated[str, Meta(min_length=1)]
#: visible ASCII, as a header carries it unchanged (no space, no comma: the separator)
Token = Annotated[str, Meta(pattern=r"^[!-+\--~]+$")]
Tokens = frozenset[Token]


def setting(default: T, help: str, *, flag: str | None = None,
            metavar: str | None = None) -> T:
    """A field's default, help text and (when not `--<field-name>`) flag name."""
    meta = {"help": help, "flag": flag, "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Settings:
    host: Text = setting("127.0.0.1", "address to bind; with no tokens configured, "
                         "loopback only", metavar="ADDR")
    port: Port = setting(8470, "port; 0 picks a free one", metavar="N")
    worker_port: Port | None = setting(
        None, "optional: also serve GET /work/queue, and nothing else, on port N (the same "
        "WebSocket server as the main port's); 0 picks a free one",
        metavar="N")
    db: Text = setting(
        "workyard.db", "SQLite file, or a PostgreSQL URL (postgresql://user@host/dbname, "
        "needs the postgres extra); ':memory:' keeps nothing", metavar="PATH|URL")
    synchronous: Literal["NORMAL", "FULL"] = setting(
        "NORMAL", "SQLite synchronous mode: NORMAL survives kill -9, FULL power loss too",
        flag="--sync", metavar="MODE")
    worker_tokens: Tokens = setting(frozenset(), "comma-separated worker tokens",
                                    flag="--worker-token", metavar="TOKENS")
    producer_tokens: Tokens = setting(frozenset(), "comma-separated producer tokens",
                                      flag="--producer-token", metavar="TOKENS")
    admin_tokens: Tokens = setting(frozenset(), "comma-separated admin tokens",
                                   flag="--admin-token", metavar="TOKENS")
    taskcluster_clients: Tokens = setting(
        frozenset(), "comma-separated Taskcluster credentials CLIENT_ID:ACCESS_TOKEN, checked "
        "with Hawk; they may manage worker pools", flag="--taskcluster-client",
        metavar="ID:TOKEN")
    amqp_url: Text | None = setting(
        None, "publish pool and worker events to RabbitMQ at this amqp:// URL (Taskcluster's "
        "worker-manager exchanges); unset: the embedded stream only", metavar="URL")
    event_retention: Annotated[float, Meta(ge=0, le=100 * YEAR)] = setting(
        24 * 3600.0, "seconds a delivered event stays in the outbox for streams to replay",
        metavar="S")
    ping_interval: PingSeconds = setting(20.0, "seconds between pings to WebSocket workers",
                                     metavar="S")
    ping_timeout: PingSeconds = setting(10.0, "drop a worker whose ping is unacknowledged "
                                    "this many seconds", metavar="S")
    default_capacity: Annotated[int, Meta(ge=0, le=1_000_000)] = setting(
        32, "tasks in flight per worker unless it asks for another `capacity`; 0: unlimited",
        flag="--capacity", metavar="N")
    retention: Annotated[float, Meta(ge=0, le=100 * YEAR)] = setting(
        24 * 3600.0, "seconds a final task is kept before it is purged", metavar="S")
    poll_liveness: Seconds = setting(60.0, "a polling worker that has not polled for this "
                                     "many seconds is gone", metavar="S")
    backlog: Annotated[int, Meta(ge=1, le=65535)] = setting(
        1024, "connections each listening port queues before the hub accepts them (the "
        "kernel caps it at net.core.somaxconn)", metavar="N")
    certfile: Text | None = setting(
        None, "serve TLS (https://, wss://) on every port with this PEM certificate chain; "
        "needs --keyfile", metavar="PATH")
    keyfile: Text | None = setting(None, "the PEM private key of --certfile", metavar="PATH")
    heartbeat_liveness: Seconds = setting(
        600.0, "a ClearML worker (workers.register) that sent no register or status_report "
        "for this many seconds is gone, unless it registered with a timeout of its own",
        metavar="S")
    stats_retention: Annotated[float, Meta(gt=0, le=100 * YEAR)] = setting(
        2 * 24 * 3600.0, "seconds raw machine statistics (workers.status_report samples) "
        "are kept; older reports are refused", metavar="S")
    stats_5m_retention: Annotated[float, Meta(gt=0, le=100 * YEAR)] = setting(
        14 * 24 * 3600.0, "seconds 5-minute rollups of machine statistics are kept (they "
        "answer get_stats for intervals that are multiples of 300 s); never less than "
        "--stats-retention", metavar="S")
    stats_1h_retention: Annotated[float, Meta(gt=0, le=100 * YEAR)] = setting(
        400 * 24 * 3600.0, "seconds hourly rollups of machine statistics are kept (they "
        "answer intervals that are multiples of 3600 s); never less than --stats-retention",
        metavar="S")
    max_body: Bytes = setting(MAX_BODY, "largest HTTP request body, in bytes", metavar="BYTES")
    max_frame: Bytes = setting(MAX_FRAME, "largest WebSocket message, in bytes",
                               metavar="BYTES")
    metrics_per_worker: Annotated[int, Meta(ge=0, le=10_000)] = setting(
        0, "expose per-worker series on /metrics for at most N workers (the busiest); "
        "0: none, which keeps the scrape's size independent of the fleet", metavar="N")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "log level", metavar="LEVEL")
    summary_interval: Annotated[float, Meta(ge=0, le=YEAR)] = setting(
        10.0, "seconds between one-line summaries at INFO (tasks/s, queued, running, "
        "workers; only when something changed); 0: none", metavar="S")
    advertise_url: Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+/?$")] | None = setting(
        None, "with several hubs on one PostgreSQL database: the URL the other hubs relay "
        "workers to while this one leads (stored with the election); default: the URL it "
        "serves on", metavar="URL")
    election_interval: Annotated[float, Meta(ge=0.05, le=60)] = setting(
        0.5, "seconds between a follower's tries for the leadership (several hubs on one "
        "PostgreSQL database)", metavar="S")
    leader_heartbeat: Annotated[float, Meta(ge=0.05, le=60)] = setting(
        1.0, "seconds between the leader's heartbeats on its election session; one not "
        "answered within as long ends its leadership", metavar="S")
    allow_lockout: bool = setting(
        False, "start even when the tokens leave workers or producers no way in (say, "
        "producer tokens only)", metavar="BOOL")

    def refuse_lockout(self) -> None:
        """Raise InvalidSetting for tokens that lock a role out, unless `allow_lockout`:
        with any token configured, a role with neither its own nor an admin token could
        never get in. `serve` calls it (so does the CLI, first, for its one line)."""
        if not self.auth_enabled or self.admin_tokens or self.allow_lockout:
            return
        for role, flag in (("worker", "--worker-token"), ("producer", "--producer-token")):
            if not getattr(self, f"{role}_tokens"):
                raise InvalidSetting(
                    f"tokens are configured but no {flag} or --admin-token: no {role} could "
                    f"get in; add {role} tokens, or --allow-lockout true to start anyway")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.worker_tokens or self.producer_tokens or self.admin_tokens
                    or self.taskcluster_clients)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Defaults, then `WORKYARD_<FIELD>` variables, then `overrides` (what flags
        give; None: not given). Raises InvalidSetting naming the variable or flag."""
        env = os.environ if environ is None else environ
        specs = {spec.name: spec for spec in fields(cls)}
        unknown = set(overrides) - set(specs)
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
        values: dict[str, object] = {}
        for name, spec in specs.items():
            raw, value = env.get(spec.env), overrides.get(name)
            if value is not None and value != "":
                shown = shlex.quote(value) if isinstance(value, str) else repr(value)
                where = f"{spec.flag} {shown}"
            elif raw:
                value, where = raw, f"{spec.env}={shlex.quote(raw)}"
            else:
                continue
            try:
                values[name] = spec.convert(value)
            except msgspec.ValidationError:
                raise InvalidSetting(f"{where}: expected {spec.expected}") from None
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per setting (`dest` is the field name; absent flags are None)."""
        for spec in fields(cls):
            parser.add_argument(spec.flag, dest=spec.name, metavar=spec.metavar,
                                help=spec.help_text)

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  environ: Mapping[str, str] | None = None) -> Self:
        """Settings from parsed `add_arguments` flags over the environment."""
        return cls.from_env(environ, **{s.name: getattr(args, s.name) for s in fields(cls)})


@dataclass(frozen=True, slots=True)
class _Spec:
    """One setting as its flag, variable and converter see it."""

    name: str
    type: Any  # the field's annotation, bounds included
    info: mi.Type  # the same, as msgspec describes it
    default: object
    help: str
    flag: str
    metavar: str | None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def expected(self) -> str:
        return _describe(self.info)

    @property
    def help_text(self) -> str:
        if isinstance(self.default, frozenset):
            default = ", ".join(sorted(self.default)) or "none"
        elif isinstance(self.default, float):
            default = _number(self.default)
        else:
            default = "unset" if self.default is None else str(self.default)
        return f"{self.help} ({_describe(self.info)}; default {default}; ${self.env})" \
            .replace("%", "%%")

    def convert(self, value: object) -> object:
        """`value` (text from a variable or flag, or already typed) as this field's type."""
        base = _without_none(self.info)
        if isinstance(value, str):
            if isinstance(base, mi.FrozenSetType):
                value = [t.strip() for t in value.split(",") if t.strip()]
            elif isinstance(base, mi.LiteralType):  # choices match whatever the case
                value = next((v for v in base.values if str(v).lower() == value.lower()), value)
        return msgspec.convert(value, self.type, strict=False)


def fields(cls: type[Settings]) -> list[_Spec]:
    """The settings of `cls` (a subclass may add its own), in definition order."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.DataclassType)
    described = {f.name: f.type for f in info.fields}
    hints = typing.get_type_hints(cls, include_extras=True)
    specs = []
    for f in dataclasses.fields(cls):
        meta: Mapping[str, Any] = f.metadata
        specs.append(_Spec(
            name=f.name,
            type=hints[f.name],
            info=described[f.name],
            default=f.default,
            help=meta.get("help", ""),
            flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
            metavar=meta.get("metavar"),
        ))
    return specs


def _without_none(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.UnionType):
        rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return info


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _bounds(info: mi.IntType | mi.FloatType) -> str:
    if info.ge is not None and info.le is not None:
        return f" from {_number(info.ge)} to {_number(info.le)}"
    parts = []
    if info.gt is not None:
        parts.append(f"above {_number(info.gt)}")
    if info.ge is not None:
        parts.append(f"{_number(info.ge)} or more")
    if info.le is not None:
        parts.append(f"at most {_number(info.le)}")
    return (" " + " and ".join(parts)) if parts else ""


def _describe(info: mi.Type) -> str:
    """What a value must be, in words, e.g. "a whole number from 0 to 65535"."""
    if isinstance(info, mi.Metadata):
        return _describe(info.type)
    if isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types):
        return _describe(_without_none(info))
    if isinstance(info, mi.BoolType):
        return "true or false (or 1 or 0)"
    if isinstance(info, mi.IntType):
        return "a whole number" + _bounds(info)
    if isinstance(info, mi.FloatType):
        return "a number" + _bounds(info)
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(map(str, info.values))
    if isinstance(info, mi.FrozenSetType):
        return "comma-separated tokens of visible ASCII characters"
    if isinstance(info, mi.StrType):
        return "non-empty text" if info.min_length else "text"
    return str(info)
