"""Settings are defined once: each field's flag and `WORKYARD_*` variable are derived
from it, values are parsed by the field's real type, and a bad value is refused
with the flag or variable named."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Annotated

import msgspec
import pytest

from workyard import InvalidSetting, Settings
from workyard._config import fields, setting
from workyard.cli import main

#: the flags `workyard serve` has always had, plus the two body/frame limits and the
#: per-worker metrics switch; worker-manager's (Taskcluster credentials, RabbitMQ, event
#: retention); TLS's certificate and key
FLAGS = {
    "host": "--host", "port": "--port", "worker_port": "--worker-port", "db": "--db",
    "synchronous": "--sync", "worker_tokens": "--worker-token",
    "producer_tokens": "--producer-token", "admin_tokens": "--admin-token",
    "ping_interval": "--ping-interval", "ping_timeout": "--ping-timeout",
    "default_capacity": "--capacity", "retention": "--retention",
    "poll_liveness": "--poll-liveness", "max_body": "--max-body", "max_frame": "--max-frame",
    "metrics_per_worker": "--metrics-per-worker", "log_level": "--log-level",
    "summary_interval": "--summary-interval", "backlog": "--backlog",
    "taskcluster_clients": "--taskcluster-client", "amqp_url": "--amqp-url",
    "event_retention": "--event-retention", "heartbeat_liveness": "--heartbeat-liveness",
    "stats_retention": "--stats-retention", "stats_5m_retention": "--stats-5m-retention",
    "stats_1h_retention": "--stats-1h-retention",
    "allow_lockout": "--allow-lockout",
    "certfile": "--certfile", "keyfile": "--keyfile",
    "advertise_url": "--advertise-url", "election_interval": "--election-interval",
    "leader_heartbeat": "--leader-heartbeat",
}

#: one valid non-default text value per field, and the value it must become
VALUES = {
    "host": ("0.0.0.0", "0.0.0.0"), "port": ("9000", 9000), "worker_port": ("9001", 9001),
    "db": (":memory:", ":memory:"), "synchronous": ("full", "FULL"),
    "worker_tokens": ("a, b,", frozenset({"a", "b"})),
    "producer_tokens": ("p", frozenset({"p"})), "admin_tokens": ("x,y", frozenset({"x", "y"})),
    "ping_interval": ("2.5", 2.5), "ping_timeout": ("2.5", 2.5),
    "default_capacity": ("0", 0), "retention": ("0", 0.0), "poll_liveness": ("90", 90.0),
    "max_body": ("1024", 1024), "max_frame": ("2048", 2048), "log_level": ("debug", "DEBUG"),
    "summary_interval": ("0", 0.0),
    "metrics_per_worker": ("50", 50),
    "backlog": ("4096", 4096),
    "taskcluster_clients": ("ci:s3cret", frozenset({"ci:s3cret"})),
    "amqp_url": ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:5672/"),
    "event_retention": ("60", 60.0),
    "heartbeat_liveness": ("30", 30.0), "stats_retention": ("3600", 3600.0),
    "stats_5m_retention": ("86400", 86400.0), "stats_1h_retention": ("7200", 7200.0),
    "allow_lockout": ("true", True),
    "certfile": ("hub.pem", "hub.pem"), "keyfile": ("hub-key.pem", "hub-key.pem"),
    "advertise_url": ("http://10.0.0.5:8470", "http://10.0.0.5:8470"),
    "election_interval": ("0.2", 0.2), "leader_heartbeat": ("2", 2.0),
}


def _parse(cls: type[Settings], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    return parser.parse_args(argv)


def test_every_setting_has_its_flag_and_variable_and_nothing_else() -> None:
    specs = fields(Settings)
    assert {s.name: s.flag for s in specs} == FLAGS
    assert {s.env for s in specs} == {f"WORKYARD_{name.upper()}" for name in FLAGS}
    assert set(VALUES) == {f.name for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_each_variable_is_parsed_by_the_fields_type(name: str) -> None:
    raw, expected = VALUES[name]
    value = getattr(Settings.from_env({f"WORKYARD_{name.upper()}": raw}), name)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_each_flag_is_parsed_by_the_fields_type(name: str) -> None:
    raw, expected = VALUES[name]
    settings = Settings.from_args(_parse(Settings, [FLAGS[name], raw]), {})
    assert getattr(settings, name) == expected


def test_ping_timeout_from_the_environment_is_a_float() -> None:
    assert Settings.from_env({"WORKYARD_PING_TIMEOUT": "2.5"}).ping_timeout == 2.5


def test_no_variables_and_no_flags_give_the_defaults() -> None:
    assert Settings.from_env({}) == Settings() == Settings.from_args(_parse(Settings, []), {})


def test_flags_override_variables_and_an_empty_variable_counts_as_unset() -> None:
    env = {"WORKYARD_PORT": "9000", "WORKYARD_DB": "", "WORKYARD_WORKER_PORT": ""}
    assert Settings.from_env(env).port == 9000
    assert Settings.from_env(env).db == Settings().db
    assert Settings.from_env(env).worker_port is None
    assert Settings.from_args(_parse(Settings, ["--port", "9100"]), env).port == 9100


def test_typed_overrides_are_checked_like_text() -> None:
    assert Settings.from_env({}, ping_interval=3, worker_tokens="a,b").ping_interval == 3.0
    with pytest.raises(InvalidSetting, match="--port 99999"):
        Settings.from_env({}, port=99999)


@dataclasses.dataclass(frozen=True, slots=True)
class _Extended(Settings):
    """A subclass adds settings the same way; these exercise the optional and bool types."""

    grace: Annotated[float, msgspec.Meta(gt=0)] | None = setting(None, "seconds of grace")
    verbose: bool = setting(False, "say more")


def test_an_optional_float_from_the_environment_is_a_float() -> None:
    assert _Extended.from_env({}).grace is None
    grace = _Extended.from_env({"WORKYARD_GRACE": "2.5"}).grace
    assert grace == 2.5 and isinstance(grace, float)
    assert _Extended.from_args(_parse(_Extended, ["--grace", "1"]), {}).grace == 1.0


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("false", False),
                                               ("0", False)])
def test_a_bool_from_the_environment(raw: str, expected: bool) -> None:
    assert _Extended.from_env({"WORKYARD_VERBOSE": raw}).verbose is expected


@pytest.mark.parametrize(("env", "named"), [
    ({"WORKYARD_PORT": "abc"}, "WORKYARD_PORT=abc: expected a whole number from 0 to 65535"),
    ({"WORKYARD_PORT": "99999"}, "WORKYARD_PORT=99999"),
    ({"WORKYARD_WORKER_PORT": "-1"}, "WORKYARD_WORKER_PORT=-1"),
    ({"WORKYARD_PING_INTERVAL": "-1"}, "WORKYARD_PING_INTERVAL=-1: expected a number from 0.05 to 31536000"),
    ({"WORKYARD_PING_TIMEOUT": "0"}, "WORKYARD_PING_TIMEOUT=0"),
    ({"WORKYARD_POLL_LIVENESS": "inf"}, "WORKYARD_POLL_LIVENESS=inf"),
    ({"WORKYARD_RETENTION": "nan"}, "WORKYARD_RETENTION=nan"),
    ({"WORKYARD_DEFAULT_CAPACITY": "1.5"}, "WORKYARD_DEFAULT_CAPACITY=1.5"),
    ({"WORKYARD_MAX_BODY": "0"}, "WORKYARD_MAX_BODY=0"),
    ({"WORKYARD_SYNCHRONOUS": "OFF"}, "WORKYARD_SYNCHRONOUS=OFF: expected one of FULL, NORMAL"),
    ({"WORKYARD_LOG_LEVEL": "LOUD"}, "WORKYARD_LOG_LEVEL=LOUD"),
])
def test_a_bad_variable_is_refused_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidSetting) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(named)


@pytest.mark.parametrize(("argv", "named"), [
    (["--port", "99999"], "--port 99999: expected a whole number from 0 to 65535"),
    (["--log-level", "LOUD"], "--log-level LOUD: expected one of"),
    (["--ping-interval", "-5"], "--ping-interval -5: expected a number from 0.05 to 31536000"),
    (["--capacity", "-1"], "--capacity -1: expected a whole number from 0 to 1000000"),
])
def test_serve_with_a_bad_flag_prints_one_line_and_exits_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workyard.cli.trio.run", lambda *a: pytest.fail("served anyway"))
    assert main(["serve", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"workyard serve: {named}") and "--help" in err


def test_serve_with_a_bad_variable_prints_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKYARD_PORT", "abc")
    monkeypatch.setattr("workyard.cli.trio.run", lambda *a: pytest.fail("served anyway"))
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.startswith("workyard serve: WORKYARD_PORT=abc: expected")


def test_the_help_lists_each_variable_and_default() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for spec in fields(Settings):
        assert spec.flag in text and f"${spec.env}" in text
    assert "default 8470" in text and "one of FULL, NORMAL" in text
