"""A real kill -9 (issue 15, item 13): a `workyard serve` process killed while a worker
holds tasks; once restarted on the same file, each task's history shows the attempt
the kill cut off, counted as a lost worker, and the task runs again."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio
from conftest import NET_TIMEOUT, http_client
from trio_websocket import open_websocket_url

TASKS = 3


async def start_hub(db: Path) -> tuple[trio.Process, str]:
    """`workyard serve` on a free port; its URL, read from its start-up log."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "workyard.cli", "serve", "--port", "0", "--db", str(db)],
        stderr=subprocess.PIPE)
    assert process.stderr is not None
    log = b""
    with trio.fail_after(NET_TIMEOUT):
        while not (found := re.search(rb"serving on (http://\S+)", log)):
            chunk = await process.stderr.receive_some(4096)
            assert chunk, f"workyard serve exited: {log.decode()}"
            log += chunk
    return process, found.group(1).decode()


def running_in_file(db: Path) -> int:
    """Tasks the store has durably marked running (read beside the hub, as a backup would)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM tasks WHERE state = 'running'")
                   .fetchone()[0])


async def test_attempts_cut_off_by_a_kill_9_are_in_each_tasks_history_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "hub.db"
    process, url = await start_hub(db)
    try:
        async with http_client(url) as http:
            ids = (await http.post("/tasks", json={"tasks": [
                {"name": "t", "data": i} for i in range(TASKS)]})).json()["ids"]
            ws_url = "ws" + url.removeprefix("http") + "/work/queue?task=t&worker_id=doomed"
            async with open_websocket_url(ws_url) as ws:
                with trio.fail_after(NET_TIMEOUT):
                    held = [json.loads(await ws.get_message())["task_id"] for _ in ids]
                    while running_in_file(db) < TASKS:  # bounded poll: the group commit
                        await trio.sleep(0.01)
                assert sorted(held) == sorted(ids)
                process.send_signal(signal.SIGKILL)
                with trio.fail_after(NET_TIMEOUT):
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    restarted, url = await start_hub(db)
    try:
        async with http_client(url) as http:
            for task_id in ids:
                task = (await http.get(f"/tasks/{task_id}")).json()
                assert task["state"] == "queued", task
                assert [(a["worker"], a["outcome"]) for a in task["attempts"]] == [
                    ("doomed", "worker_lost")]
            async with open_websocket_url("ws" + url.removeprefix("http") +
                                          "/work/queue?task=t&worker_id=heir") as ws:
                for _ in ids:
                    with trio.fail_after(NET_TIMEOUT):
                        frame = json.loads(await ws.get_message())
                    await ws.send_message(json.dumps({"task_id": frame["task_id"],
                                                      "result": "done", "data": frame["data"]}))
                for i, task_id in enumerate(ids):
                    with trio.fail_after(NET_TIMEOUT):
                        task = (await http.get(f"/tasks/{task_id}",
                                               params={"wait": NET_TIMEOUT})).json()
                    assert (task["state"], task["result"]) == ("done", i)
                    assert [a["outcome"] for a in task["attempts"]] == ["worker_lost", "done"]
    finally:
        restarted.send_signal(signal.SIGTERM)
        with trio.fail_after(NET_TIMEOUT):
            await restarted.wait()
