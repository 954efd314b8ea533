"""The Python SDK and the `worker` / `submit` commands, against a real hub.

Servers come from conftest's `start_server` (real hypercorn on a free port, SQLite
in tmp_path). Every wait on the network is bounded by NET_TIMEOUT; nothing sleeps
to let time pass.
"""

from __future__ import annotations

import json
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import NET_TIMEOUT, Served, StartServer
from trio_websocket import CloseReason, ConnectionClosed

from workyard import Settings
from workyard.cli import main
from workyard.client import (
    AsyncProducer,
    Handlers,
    HubError,
    Job,
    Producer,
    Worker,
    WorkerRejected,
)
from workyard.client._worker import _Answers, ws_url
from workyard.transports import FRAMES


async def _echo(job: Job) -> Any:
    return {"data": job.data, "attrs": job.attrs}


# --- handlers (no network) -----------------------------------------------------------------


async def test_handlers_pick_the_most_specific_and_turn_failures_into_errors() -> None:
    handlers = Handlers()

    @handlers.handler("tag")
    async def anywhere(job: Job) -> str:
        return "any"

    @handlers.handler("tag", cloud=["aws", "gcp"], region="eu")
    async def aws_eu(job: Job) -> str:
        return "aws-eu"

    @handlers.handler("boom")
    async def boom(job: Job) -> None:
        raise ValueError("bad input")

    @handlers.handler("opaque")
    async def opaque(job: Job) -> object:
        return object()

    def answer(name: str, **attrs: str) -> Any:
        return handlers.run(Job(id="t1", name=name, attrs=attrs))

    assert [s.to_json() for s in handlers.subscriptions] == [
        {"name": "tag", "filter": {}},
        {"name": "tag", "filter": {"cloud": ["aws", "gcp"], "region": ["eu"]}},
        {"name": "boom", "filter": {}},
        {"name": "opaque", "filter": {}},
    ]
    assert (await answer("tag", cloud="gcp", region="eu"))["data"] == "aws-eu"
    assert (await answer("tag", cloud="azure", region="eu"))["data"] == "any"
    assert await answer("boom") == {"task_id": "t1", "result": "error", "error": "bad input"}
    assert "not JSON-encodable" in (await answer("opaque"))["error"]
    assert "no handler" in (await answer("other"))["error"]


def test_handlers_refuse_sync_functions_and_duplicates() -> None:
    handlers = Handlers()
    with pytest.raises(TypeError, match="async"):
        handlers.add("tag", lambda job: None)  # type: ignore[arg-type]
    handlers.add("tag", _echo, cloud="aws,gcp")
    with pytest.raises(ValueError, match="already"):
        handlers.add("tag", _echo, cloud=["gcp", "aws"])


async def test_a_handler_running_past_the_task_timeout_is_cancelled(autojump_clock: Any) -> None:
    handlers = Handlers()

    @handlers.handler("slow")
    async def slow(job: Job) -> None:
        await trio.sleep(3600)

    answer = await handlers.run(Job(id="t1", name="slow", timeout=5))
    assert answer == {"task_id": "t1", "result": "error", "error": "handler timed out after 5s"}
    assert trio.current_time() == pytest.approx(5)


def test_urls_and_backoff() -> None:
    assert ws_url("http://h:1", "/q", {"capacity": "2"}) == "ws://h:1/q?capacity=2"
    assert ws_url("https://h/hub/", "/work/queue", {}) == "wss://h/hub/work/queue"
    with pytest.raises(ValueError):
        ws_url("ftp://h", "/work/queue", {})
    worker = Worker("http://h", backoff_min=0.5, backoff_max=30)
    assert all(0.25 <= worker.backoff(0) <= 0.5 for _ in range(50))
    assert all(15 <= worker.backoff(n) <= 30 for n in (6, 100, 10_000) for _ in range(50))
    assert worker.capacity == worker.concurrency == 8


class _ScriptedConnection:
    """Plays the hub's side of one connection: these frames, then a close."""

    def __init__(self, *frames: str) -> None:
        self.frames = list(frames)

    async def get_message(self) -> str:
        await trio.lowlevel.checkpoint()
        if not self.frames:
            raise ConnectionClosed(CloseReason(1001, "going away"))
        return self.frames.pop(0)


async def test_worker_logs_error_frames_and_skips_malformed_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker("http://h", worker_id="w1")
    frame = {"task_id": "t1", "task_name": "job", "attrs": {"a": "b"}, "data": [1], "timeout": 5}
    connection = _ScriptedConnection('{"error": "malformed frame: nope"}', "not json",
                                     '{"task_id": "t0"}', json.dumps(frame))
    put, take = trio.open_memory_channel[Job](10)
    closed = await worker._receive(connection, put)  # type: ignore[arg-type]
    assert (closed.code, closed.reason) == (1001, "going away")
    assert take.receive_nowait() == Job(id="t1", name="job", attrs={"a": "b"}, data=[1], timeout=5)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "the hub reports an error: malformed frame: nope" in warnings[0]
    assert ["malformed frame" in w for w in warnings[1:]] == [True, True]


# --- worker and producer against a real hub -------------------------------------------------


async def test_worker_takes_and_answers_tasks(server: Served) -> None:
    worker = Worker(server.url, worker_id="w1", concurrency=3)
    worker.handler("tag", cloud=["aws", "gcp"])(_echo)
    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        await nursery.start(worker.run)
        ids = [await hub.submit("tag", {"n": n}, attrs={"cloud": "gcp"}) for n in range(3)]
        other = await hub.submit("tag", attrs={"cloud": "azure"})
        with trio.fail_after(NET_TIMEOUT):
            results = [await hub.result(i, wait=NET_TIMEOUT) for i in ids]
        assert [r["state"] for r in results] == ["done"] * 3
        assert [r["result"] for r in results] == [
            {"data": {"n": n}, "attrs": {"cloud": "gcp"}} for n in range(3)]
        assert (await hub.result(other, wait=0))["state"] == "queued"
        (seen,) = await hub.workers()
        assert seen["id"] == "w1" and seen["capacity"] == 3 and seen["processed"] == 3
        assert seen["subscriptions"] == [{"name": "tag", "filter": {"cloud": ["aws", "gcp"]}}]
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_fails_the_task_with_its_message(server: Served) -> None:
    worker = Worker(server.url)

    @worker.handler("boom")
    async def boom(job: Job) -> None:
        raise RuntimeError(f"cannot handle {job.data['what']}")

    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        nursery.start_soon(worker.run)
        task_id = await hub.submit("boom", {"what": "this"}, retries=0)
        with trio.fail_after(NET_TIMEOUT):
            task = await hub.result(task_id, wait=NET_TIMEOUT)
        assert task["state"] == "failed"
        assert task["error"] == "cannot handle this"
        assert task["attempts"][-1]["outcome"] == "error"
        nursery.cancel_scope.cancel()


async def test_worker_reconnects_after_the_hub_restarts_and_finishes_the_task(
    start_server: StartServer, hub_db: str
) -> None:
    served = await start_server()
    port = int(served.url.rsplit(":", 1)[1])
    worker = Worker(served.url, worker_id="w1", backoff_min=0.01, backoff_max=0.05)
    first_attempt_started = trio.Event()

    @worker.handler("job")
    async def job(job: Job) -> str:
        if not first_attempt_started.is_set():
            first_attempt_started.set()
            await trio.sleep_forever()  # cancelled when the connection drops
        return "second attempt"

    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        async with AsyncProducer(served.url) as hub:
            task_id = await hub.submit("job")
            with trio.fail_after(NET_TIMEOUT):
                await first_attempt_started.wait()
            await served.stop()
            restarted = await start_server(Settings(port=port, db=hub_db))
            assert restarted.url == served.url
            with trio.fail_after(NET_TIMEOUT):
                task = await hub.result(task_id, wait=NET_TIMEOUT)
        assert task["state"] == "done" and task["result"] == "second attempt"
        assert worker.connections == 2
        nursery.cancel_scope.cancel()


async def test_worker_reconnects_when_the_hub_drops_the_connection(server: Served) -> None:
    worker = Worker(server.url, worker_id="w1", backoff_min=0.01, backoff_max=0.05)
    attempts: list[str] = []
    started = trio.Event()

    @worker.handler("job")
    async def job(job: Job) -> int:
        attempts.append(job.id)
        if len(attempts) == 1:
            started.set()
            await trio.sleep_forever()
        return len(attempts)

    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        nursery.start_soon(worker.run)
        task_id = await hub.submit("job")
        with trio.fail_after(NET_TIMEOUT):
            await started.wait()
            server.hub.sessions.attached["w1"].link.scope.cancel()  # type: ignore[union-attr]  # hub hangs up
            task = await hub.result(task_id, wait=NET_TIMEOUT)
        assert task["state"] == "done" and task["result"] == 2
        assert [a["outcome"] for a in task["attempts"]] == ["worker_lost", "done"]
        assert worker.connections == 2
        nursery.cancel_scope.cancel()


async def test_answers_ready_in_one_round_share_a_frame_and_later_ones_the_next() -> None:
    sent: list[Any] = []

    class Socket:
        async def send_message(self, message: str) -> None:
            sent.append(json.loads(message))
            await trio.lowlevel.checkpoint()  # others finish while this one is out

    answers = _Answers(Socket())  # type: ignore[arg-type]

    async def later(i: int) -> None:
        await trio.lowlevel.checkpoint()  # a round after the first three
        await trio.lowlevel.checkpoint()
        await answers.send({"task_id": str(i), "result": "done"})

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(answers.send, {"task_id": str(i), "result": "done"})
        nursery.start_soon(later, 3)
    assert [sorted(a["task_id"] for a in frame) if isinstance(frame, list)
            else frame["task_id"] for frame in sent] == [["0", "1", "2"], "3"]


async def test_a_busy_worker_takes_and_answers_tasks_in_fewer_frames_than_tasks(
        server: Served) -> None:
    worker = Worker(server.url, worker_id="w1", concurrency=8)
    worker.handlers.add("job", _echo)
    before = (FRAMES.sent, FRAMES.received)
    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        await nursery.start(worker.run)
        ids = await hub.submit_many([{"name": "job", "data": i} for i in range(40)])
        with trio.fail_after(NET_TIMEOUT):
            tasks = [await hub.result(task_id, wait=NET_TIMEOUT) for task_id in ids]
        nursery.cancel_scope.cancel()
    assert [t["result"]["data"] for t in tasks] == list(range(40))
    sent, received = FRAMES.sent - before[0], FRAMES.received - before[1]
    assert sent < 40 and received < 40, (sent, received)  # arrays of tasks and of answers


async def test_worker_runs_at_most_concurrency_handlers(server: Served) -> None:
    worker = Worker(server.url, worker_id="w1", concurrency=2, capacity=5)
    running = peak = 0
    two_running, release = trio.Event(), trio.Event()

    @worker.handler("job")
    async def job(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 2:
            two_running.set()
        await release.wait()
        running -= 1

    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        nursery.start_soon(worker.run)
        ids = await hub.submit_many([{"name": "job"}] * 6)
        with trio.fail_after(NET_TIMEOUT):
            await two_running.wait()
        # Hub and worker share this trio run: once every task has been idle for a
        # while, all frames that will be sent have been sent and received.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert (running, worker.running, worker.queued) == (2, 2, 3)  # capacity 5 pushed
        assert (await hub.queues())["job"]["queued"] == 1
        release.set()
        with trio.fail_after(NET_TIMEOUT):
            states = [(await hub.result(i, wait=NET_TIMEOUT))["state"] for i in ids]
        assert states == ["done"] * 6 and peak == 2
        nursery.cancel_scope.cancel()


async def test_worker_tokens(start_server: StartServer, hub_db: str) -> None:
    served = await start_server(Settings(port=0, db=hub_db, worker_tokens=frozenset({"w-secret"}),
                                         producer_tokens=frozenset({"p-secret"})))
    wrong = Worker(served.url, token="nope")
    missing = Worker(served.url)
    for worker in (wrong, missing):
        worker.handler("job")(_echo)
        with trio.fail_after(NET_TIMEOUT), pytest.raises(WorkerRejected) as refused:
            await worker.run()
        assert "token" in str(refused.value) or "authorization" in str(refused.value)

    good = Worker(served.url, token="w-secret")
    good.handler("job")(_echo)
    async with trio.open_nursery() as nursery, AsyncProducer(served.url, "p-secret") as hub:
        nursery.start_soon(good.run)
        with trio.fail_after(NET_TIMEOUT):
            task = await hub.result(await hub.submit("job", 7), wait=NET_TIMEOUT)
        assert task["result"] == {"data": 7, "attrs": {}}
        nursery.cancel_scope.cancel()
    async with AsyncProducer(served.url) as anonymous:
        with pytest.raises(HubError) as denied:
            await anonymous.submit("job")
        assert denied.value.status == 401 and "token" in denied.value.message


async def test_async_producer_api(server: Served) -> None:
    async with AsyncProducer(server.url) as hub:
        first = await hub.submit("job", key="k1", priority=5, attrs={"a": "b"})
        assert await hub.submit("job", key="k1") == first
        cancelled = await hub.cancel(first)
        assert cancelled["state"] == "cancelled"
        with pytest.raises(HubError) as again:
            await hub.cancel(first)
        assert again.value.status == 409 and "already cancelled" in again.value.message
        with pytest.raises(HubError) as missing:
            await hub.result("nope", wait=0)
        assert missing.value.status == 404
        with pytest.raises(HubError) as invalid:
            await hub.submit("job", timeout=0)
        assert invalid.value.status == 400 and "timeout" in invalid.value.message
        assert [t["id"] for t in await hub.tasks(state="cancelled")] == [first]
        assert await hub.workers() == []
        assert "job" in await hub.queues()


async def test_sync_producer_submits_in_batches(server: Served) -> None:
    def produce() -> tuple[list[str], dict[str, Any]]:
        with Producer(server.url) as hub:
            ids = hub.submit_many([{"name": "bulk", "data": i} for i in range(2100)])
            return ids, hub.result(ids[-1], wait=0)

    ids, last = await trio.to_thread.run_sync(produce)
    assert len(set(ids)) == 2100
    assert last["state"] == "queued" and last["data"] == 2099
    assert (await server.hub.store.tasks.get(ids[1500])) is not None


async def test_results_reads_a_large_batch_back_in_a_few_requests(server: Served) -> None:
    worker = Worker(server.url, concurrency=8)
    worker.handler("bulk")(_echo)
    requests: list[str] = []
    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        hub._client.event_hooks["request"].append(
            lambda request: _noted(requests, f"{request.method} {request.url.path}"))
        await nursery.start(worker.run)
        ids = await hub.submit_many([{"name": "bulk", "data": i} for i in range(2100)])
        with trio.fail_after(NET_TIMEOUT):
            results = await hub.results([*ids[::-1], ids[0]], wait=NET_TIMEOUT)
        assert [r["id"] for r in results] == [*ids[::-1], ids[0]]
        assert {r["state"] for r in results} == {"done"}
        assert [r["result"]["data"] for r in results[:2]] == [2099, 2098]
        # 1,000 ids per request; a chunk whose tasks are not all final yet is asked again
        waits = requests.count("POST /tasks/wait")
        assert 3 <= waits < 30 and requests.count("POST /tasks") == 3
        with pytest.raises(HubError) as unknown:
            await hub.results([ids[0], "nope"])
        assert unknown.value.status == 404 and "'nope'" in unknown.value.message
        nursery.cancel_scope.cancel()


async def _noted(requests: list[str], what: str) -> None:
    requests.append(what)


async def test_results_leave_out_tasks_not_final_after_the_wait(server: Served) -> None:
    def produce() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        with Producer(server.url) as hub:
            queued, cancelled = hub.submit("nobody"), hub.submit("nobody")
            hub.cancel(cancelled)
            return hub.results([queued, cancelled], wait=0.05), hub.results([]), cancelled

    results, none, cancelled = await trio.to_thread.run_sync(produce)
    assert [(r["id"], r["state"]) for r in results] == [(cancelled, "cancelled")]
    assert none == []


# --- the CLI ---------------------------------------------------------------------------------


async def test_cli_submit_waits_and_prints_json_lines(
    server: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = Worker(server.url)
    worker.handler("tag", cloud="aws")(_echo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        argv = ["submit", "--url", server.url, "tag", "--attr", "cloud=aws", "--data",
                '{"x": 1}', "--count", "3", "--wait", str(NET_TIMEOUT)]
        with trio.fail_after(NET_TIMEOUT):
            code = await trio.to_thread.run_sync(main, argv)
        assert code == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(t["state"], t["result"]) for t in lines] == [
            ("done", {"data": {"x": 1}, "attrs": {"cloud": "aws"}})] * 3

        argv = ["submit", "--url", server.url, "tag", "--attr", "cloud=azure", "--wait", "0"]
        assert await trio.to_thread.run_sync(main, argv) == 1  # nobody takes it
        (line,) = capsys.readouterr().out.splitlines()
        assert json.loads(line)["state"] == "queued"
        nursery.cancel_scope.cancel()


async def test_cli_worker_runs_tasks_logs_each_and_stops_on_sigterm(
    server: Served, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "workyard.cli", "worker", "--url", server.url, "--task", "echo",
           "--task", "also", "--filter", "cloud=aws,gcp", "--worker-id", "cli-w"]
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        await _run_cli_worker(server, cmd, sink)
    lines = log.read_text().splitlines()
    assert "INFO" in lines[0] and "worker cli-w connected" in lines[0]
    done = [line for line in lines if "): done in " in line]  # one INFO line per task
    assert [line.split(" (")[1].split(")")[0] for line in done] == [
        "echo cloud=aws", "also cloud=aws"]
    assert all(" INFO " in line for line in done)


async def _run_cli_worker(server: Served, cmd: list[str], sink: Any) -> None:
    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        process: trio.Process = await nursery.start(partial(
            trio.run_process, cmd, check=False, stderr=sink))
        with trio.fail_after(NET_TIMEOUT * 2):  # includes the interpreter's start-up
            tasks = [await hub.result(await hub.submit(name, {"n": 1}, attrs={"cloud": "aws"}),
                                      wait=NET_TIMEOUT * 2) for name in ("echo", "also")]
        assert [(t["state"], t["result"]) for t in tasks] == [("done", {"n": 1})] * 2
        assert [w["id"] for w in await hub.workers()] == ["cli-w"]
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(NET_TIMEOUT):
            assert await process.wait() == 0
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the hub has seen the close
        assert await hub.workers() == []


@pytest.mark.parametrize("transport", [[], ["--poll"]], ids=["websocket", "polling"])
async def test_cli_worker_fail_mode(server: Served, transport: list[str]) -> None:
    cmd = [sys.executable, "-m", "workyard.cli", "worker", "--url", server.url, "--task", "x",
           "--mode", "fail", *transport]
    async with trio.open_nursery() as nursery, AsyncProducer(server.url) as hub:
        process: trio.Process = await nursery.start(partial(trio.run_process, cmd, check=False))
        with trio.fail_after(NET_TIMEOUT * 2):
            task = await hub.result(await hub.submit("x", retries=0), wait=NET_TIMEOUT * 2)
        assert task["state"] == "failed" and "failed on purpose" in task["error"]
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(NET_TIMEOUT):
            assert await process.wait() == 0


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--key"):
        main(["submit", "job", "--key", "k", "--count", "2"])
    with pytest.raises(SystemExit, match="valid JSON"):
        main(["submit", "job", "--data", "{nope"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["submit", "job", "--attr", "novalue"])
