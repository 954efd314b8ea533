"""The README's examples, run as a reader would run them, against a served hub.

Each example is taken from README.md as written; the only changes are the ones a
reader's machine makes: the hub listens on a free port instead of 8470, `.venv/bin/`
is this interpreter's folder, and a placeholder id (`5c0f...`) is the id the previous
command printed. Installs (`pip install`) are not run: the test environment has the
extras they name. Examples that need nothing but a hub are all here: producers' curl,
the Python worker, the shell's worker and submit, the polling worker, the simulator.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from conftest import NET_TIMEOUT, Served

from workyard.client import AsyncProducer
from workyard.hub import Event, WorkerAttached, WorkerDetached

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent
PLACEHOLDER = "5c0f..."
#: the simulator example runs a full hour of three policies: its own, larger bound
SIM_TIMEOUT = 240.0

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the README uses curl")


def block(language: str, containing: str) -> str:
    """The one fenced block of `language` in README.md that contains `containing`."""
    found = [b for b in re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL) if containing in b]
    assert len(found) == 1, f"README.md has {len(found)} {language} blocks with {containing!r}"
    return found[0]


def commands(shell: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comment lines dropped."""
    joined = shell.replace("\\\n", " ")
    return [line for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def inline(starting: str) -> str:
    """The README's one inline code span that starts with `starting`."""
    found = re.findall(rf"`({re.escape(starting)}[^`]*)`", README)
    assert len(found) == 1, f"README.md has {len(found)} spans starting {starting!r}"
    return found[0]


def local(text: str, url: str, previous_id: str | None = None) -> str:
    """`text` as it runs here: this hub's address, this venv, the id printed before."""
    port = url.rsplit(":", 1)[1]
    text = text.replace("localhost:8470", f"127.0.0.1:{port}")
    text = text.replace("http://127.0.0.1:8470", url).replace(".venv/bin/", f"{BIN}/")
    if previous_id is not None:
        text = text.replace(PLACEHOLDER, previous_id)
    assert "8470" not in text and (previous_id is None or PLACEHOLDER not in text), text
    return text


async def sh(command: str, *, cwd: Path | None = None, timeout: float = NET_TIMEOUT,
             env: dict[str, str] | None = None) -> str:
    with trio.fail_after(timeout):
        done = await trio.run_process(["bash", "-c", command], capture_stdout=True,
                                      capture_stderr=True, check=False, cwd=cwd, env=env)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout.decode()


async def next_event(events: AsyncIterator[Event], kind: type[Event]) -> Event:
    """The next `kind` event, within NET_TIMEOUT * 2 (a process has to start first)."""
    with trio.fail_after(NET_TIMEOUT * 2):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError("the event stream ended")


async def background(nursery: trio.Nursery, argv: list[str], log: Path,
                     env: dict[str, str] | None = None) -> trio.Process:
    sink = log.open("wb")
    process: trio.Process = await nursery.start(_run, argv, sink, env)
    return process


async def _run(argv: list[str], sink: Any, env: dict[str, str] | None, *,
               task_status: trio.TaskStatus[trio.Process]) -> None:
    with sink:
        await trio.run_process(argv, check=False, stdout=sink, stderr=subprocess.STDOUT,
                               env=env, task_status=task_status)


async def stop(process: trio.Process, events: AsyncIterator[Event]) -> None:
    """SIGTERM the worker process and wait until the hub has detached it."""
    process.terminate()
    await next_event(events, WorkerDetached)
    with trio.fail_after(NET_TIMEOUT):
        await process.wait()


def env_with(**extra: str) -> dict[str, str]:
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}, **extra}


async def test_the_producer_and_python_worker_examples_run_as_written(
    server: Served, tmp_path: Path, nursery: trio.Nursery
) -> None:
    code = block("python", "from workyard.client import Worker")
    script = tmp_path / "worker.py"
    script.write_text(local(code, server.url))
    submit, long_poll = commands(block("sh", "localhost:8470/tasks -d"))
    with server.hub.events.subscribe() as events:
        worker = await background(nursery, [sys.executable, str(script)], tmp_path / "w.log")
        attached = await next_event(events, WorkerAttached)
        assert attached.subscriptions == [{"name": "tag", "filter": {"cloud": ["aws", "gcp"]}}]

        created = json.loads(await sh(local(submit, server.url)))
        assert created["created"] is True
        task = json.loads(await sh(local(long_poll, server.url, created["id"])))
        assert (task["state"], task["result"]) == ("done", {"tagged": "aws"})
        await stop(worker, events)
    printed = (tmp_path / "w.log").read_text()
    assert "connected to" in printed  # the example says it connected
    assert f"tagging {created['id']} {{'cloud': 'aws', 'account': '123'}}" in printed


async def test_the_shell_worker_and_submit_examples_run_as_written(
    server: Served, tmp_path: Path, nursery: trio.Nursery
) -> None:
    env = env_with(WORKYARD_URL=server.url)
    worker_cmd = local(inline("workyard worker --task tag"), server.url)
    submit_cmd = local(inline("workyard submit tag"), server.url)
    with server.hub.events.subscribe() as events:
        worker = await background(nursery, ["bash", "-c", f"exec {BIN}/{worker_cmd}"],
                                  tmp_path / "w.log", env)
        await next_event(events, WorkerAttached)
        out = await sh(f"{BIN}/{submit_cmd}", env=env, timeout=NET_TIMEOUT * 2)
        (line,) = out.splitlines()
        task = json.loads(line)
        assert (task["state"], task["result"]) == ("done", {"x": 1})
        await stop(worker, events)
    assert f"task {task['id']} (tag cloud=aws): done in" in (tmp_path / "w.log").read_text()


async def test_the_polling_example_runs_as_written_and_keeps_the_pollers_counters(
    server: Served
) -> None:
    config, poll, report, registry = commands(block("sh", "/v1/queue/tag"))
    url = server.url
    assert json.loads(await sh(local(config, url))) == {"configuration": {"interval": 30000}}

    async def with_a_task_waiting(command: str) -> dict[str, Any]:
        """Run a polling command once a task it takes is queued, so its long poll
        is answered at once."""
        async with AsyncProducer(url) as producer:
            await producer.submit("tag", {"n": 1}, attrs={"cloud": "aws"})
        return json.loads(await sh(command))

    first = await with_a_task_waiting(local(poll, url))
    (leased,) = first["tasks"]
    assert leased["attrs"] == {"cloud": "aws"}

    second = await with_a_task_waiting(local(report, url, leased["_id"]))
    assert len(second["tasks"]) == 1  # the report applied, then the poll took the next task
    done = await server.hub.get(leased["_id"])
    assert done is not None and done.state.value == "done"
    assert msgspec.json.decode(done.result) == {"ok": True}

    view = json.loads(await sh(local(registry, url)))
    assert view["worker_id"] == "poller-1" and view["processed"] == 1  # one worker, one session


async def test_the_simulator_example_writes_its_report_and_plots(tmp_path: Path) -> None:
    (line,) = commands(block("sh", "workyard sim"))
    install, run = (part.strip() for part in line.split("&&"))
    assert "pip install" in install and "'.[sim]'" in install  # the plots' extra
    await sh(local(run, "http://unused:0"), cwd=tmp_path, timeout=SIM_TIMEOUT)
    out = tmp_path / "out" / "sim" / "specific"
    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.png", "latency.png", "metrics.json", "queue_depth.png", "report.md"]
    assert all((out / png).stat().st_size > 10_000
               for png in ("assignments.png", "latency.png", "queue_depth.png"))


def test_every_runnable_example_is_followed() -> None:
    """A new example in README.md needs a test here: each fenced block is either run by
    one of the tests above or is an install, the load test (tests/e2e/test_loadtest.py),
    one a test of its own follows with the real client (ClearML: tests/compat/
    test_clearml_sdk.py; Taskcluster and the event stream: tests/compat/
    test_taskcluster.py, tests/e2e/test_pool_events.py; the dashboard's demo fleet:
    tests/http/; a hub on PostgreSQL: tests/e2e/test_postgres_server.py; TLS:
    tests/hostile/test_tls.py) or a listing."""
    followed = ["localhost:8470/tasks -d", "from workyard.client import Worker",
                "/v1/queue/tag", "workyard sim"]
    elsewhere = ["pip install -e . && .venv/bin/workyard serve", "pytest", "loadtest/run.py",
                 "the `workyard` package", "CLEARML_API_HOST=", "import taskcluster",
                 "localhost:8470/events?exchange=", "workyard submit resize --count 200",
                 "workyard serve --db postgresql://",
                 "--certfile hub.pem"]
    blocks: list[str] = re.findall(r"```\w*\n(.*?)```", README, re.DOTALL)
    matched: Callable[[str], bool] = lambda b: any(k in b for k in followed + elsewhere)
    assert [b for b in blocks if not matched(b)] == []
