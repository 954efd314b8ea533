"""The dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright).

The hub runs in the test's trio loop; Playwright's synchronous API runs on a thread
of its own (its objects belong to the thread that made them), and each step hops
there and back. Nothing sleeps: Playwright's `expect` waits for what the page must
show, with a timeout. Each test saves screenshots under its tmp_path.

Without chromium the tests skip with the reason; under CI (CI=true) they fail.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, StartServer, echo_worker, http_client
from trio_websocket import ConnectionClosed, open_websocket_url

from workyard import Settings

T = TypeVar("T")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: what this closed network needs: without the background-networking flags Chromium's
#: own connections are refused and slow every launch down
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
#: milliseconds the page has to show something
SHOWN = 10_000
ADMIN = "admin-secret"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


class Browser:
    """One Chromium on a thread of its own; `await browser(fn)` runs `fn(chromium)` there."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.Queue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._loop, name="playwright", daemon=True)
        self._thread.start()
        self._ready.result(timeout=60)

    def _loop(self) -> None:
        from playwright.sync_api import sync_playwright
        try:
            with sync_playwright() as playwright:
                chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                      args=CHROMIUM_ARGS)
                self._ready.set_result(None)
                while (job := self._jobs.get()) is not None:
                    fn, future = job
                    try:
                        future.set_result(fn(chromium))
                    except BaseException as exc:  # noqa: BLE001 - handed to the test
                        future.set_exception(exc)
                chromium.close()
        except BaseException as exc:  # noqa: BLE001 - a launch failure, handed to the test
            if not self._ready.done():
                self._ready.set_exception(exc)

    async def __call__(self, fn: Callable[[Any], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return await trio.to_thread.run_sync(future.result)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _missing("chromium is not installed (apt-get install chromium)")
    chromium = Browser()
    yield chromium
    chromium.close()


class Page:
    """A Playwright page, each call run on the browser's thread."""

    def __init__(self, browser: Browser, page: Any, base: str, shots: Path) -> None:
        self.browser, self.page, self.base, self.shots = browser, page, base, shots

    async def do(self, fn: Callable[[Any], T]) -> T:
        return await self.browser(lambda _: fn(self.page))

    async def goto(self, hash_path: str = "") -> None:
        await self.do(lambda p: p.goto(self.base + "/" + hash_path))

    async def expect(self, selector: str, *, count: int | None = None, text: str | None = None,
                     visible: bool = True) -> None:
        from playwright.sync_api import expect

        def check(p: Any) -> None:
            located = p.locator(selector)
            if count is not None:
                expect(located).to_have_count(count, timeout=SHOWN)
            if text is not None:
                expect(located).to_contain_text(text, timeout=SHOWN)
            if visible and count != 0:
                expect(located.first).to_be_visible(timeout=SHOWN)
            if not visible:
                expect(located).to_be_hidden(timeout=SHOWN)
        await self.do(check)

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.do(lambda p: p.screenshot(path=str(path), full_page=True))
        return path


async def open_page(browser: Browser, served: Served, tmp_path: Path) -> Page:
    page = await browser(lambda chromium: chromium.new_page(
        viewport={"width": 1440, "height": 900}))
    errors: list[str] = []
    await browser(lambda _: page.on("pageerror", lambda exc: errors.append(str(exc))))
    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    opened = Page(browser, page, served.url, shots)
    opened.errors = errors  # type: ignore[attr-defined]
    return opened


async def wait_attached(served: Served, worker: str) -> None:
    with trio.fail_after(NET_TIMEOUT):
        while worker not in served.hub.sessions.attached:
            await trio.sleep(0.01)


async def mute_worker(url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                      ) -> None:
    """Takes tasks and never answers, until cancelled (then its connection closes)."""
    async with open_websocket_url(url) as ws:
        task_status.started()
        while True:
            await ws.get_message()


async def submit(http: httpx.AsyncClient, name: str, data: object = None) -> str:
    response = await http.post("/tasks", json={"name": name, "data": data})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_the_overview_shows_attached_workers_and_queues(
        browser: Browser, start_server: StartServer, tmp_path: Path) -> None:
    served = await start_server()
    async with http_client(served.url) as http, trio.open_nursery() as nursery:
        for i in range(3):
            await nursery.start(echo_worker, served.ws(f"/work/queue?task=resize&worker_id=img-{i}"))
        await nursery.start(echo_worker, served.ws("/work/queue?task=tag&cloud=aws&worker_id=tagger"))
        for i in range(6):
            await submit(http, "resize", {"image": i})
        await submit(http, "report")  # nobody takes it: it stays queued

        page = await open_page(browser, served, tmp_path)
        await page.goto()
        for worker in ("img-0", "img-1", "img-2", "tagger"):
            await page.expect(f'#workers tr[data-worker="{worker}"]', count=1)
        await page.expect('#workers tr[data-worker="tagger"]', text="tag (cloud=aws)")
        await page.expect('#queues tr[data-queue="resize"] .processed', text="6")
        await page.expect('#queues tr[data-queue="report"] .queued', text="1")
        await page.expect("#stat-workers b", text="4")
        await page.expect("#live.on", text="live")
        await page.screenshot("overview")

        await page.goto("#/queue/resize")
        await page.expect("#spread tr[data-worker]", count=3)
        await page.expect("#fairness", text="1")
        await page.expect(".uplot", count=3)
        await page.screenshot("queue")

        await page.goto("#/events")
        await page.expect('#feed tr[data-type="task.submitted"]', count=7)
        await submit(http, "report")
        await page.expect('#feed tr[data-type="task.submitted"]', count=8)  # live
        await page.screenshot("events")

        await page.goto("#/tasks?name=resize")
        await page.expect("tr[data-task]", count=6)
        await page.screenshot("tasks")
        nursery.cancel_scope.cancel()
    assert not page.errors  # type: ignore[attr-defined]


async def test_a_submitted_task_reaches_done_without_a_reload(
        browser: Browser, start_server: StartServer, tmp_path: Path) -> None:
    served = await start_server()
    async with http_client(served.url) as http, trio.open_nursery() as nursery:
        task_id = await submit(http, "thumbnail", {"size": 64})
        page = await open_page(browser, served, tmp_path)
        await page.goto(f"#/task/{task_id}")
        await page.expect("#task-state [data-state]", text="queued")
        await page.do(lambda p: p.evaluate("window.notReloaded = true"))

        await nursery.start(echo_worker, served.ws("/work/queue?task=thumbnail&worker_id=thumbs"))
        await page.expect("#task-state [data-state]", text="done")
        await page.expect("#task-result", text='"size": 64')
        await page.expect("tr.attempt", count=1, text="thumbs")
        assert await page.do(lambda p: p.evaluate("window.notReloaded")) is True
        await page.screenshot("task")
        nursery.cancel_scope.cancel()


async def test_a_disconnecting_worker_disappears_and_its_task_moves(
        browser: Browser, start_server: StartServer, tmp_path: Path) -> None:
    served = await start_server()
    async with http_client(served.url) as http, trio.open_nursery() as nursery:
        mute = trio.CancelScope()

        async def run_mute(*, task_status: trio.TaskStatus[None]) -> None:
            with mute:
                await mute_worker(served.ws("/work/queue?task=encode&worker_id=flaky"),
                                  task_status=task_status)

        await nursery.start(run_mute)
        await wait_attached(served, "flaky")
        task_id = await submit(http, "encode", "clip")
        page = await open_page(browser, served, tmp_path)
        await page.goto()
        await page.expect('#workers tr[data-worker="flaky"]', text="1 / 32")

        await nursery.start(echo_worker, served.ws("/work/queue?task=encode&worker_id=steady"))
        await page.expect('#workers tr[data-worker="steady"]', count=1)
        mute.cancel()  # its connection closes: the hub detaches it and moves its task
        await page.expect('#workers tr[data-worker="flaky"]', count=0)
        await page.expect('#workers tr[data-worker="steady"]', text="1")
        await page.screenshot("worker-gone")

        await page.goto(f"#/task/{task_id}")
        await page.expect("#task-state [data-state]", text="done")
        await page.expect("tr.attempt", count=2)
        await page.expect("tr.attempt >> nth=0", text="worker_lost")
        await page.expect("tr.attempt >> nth=1", text="steady")

        await page.goto("#/worker/steady")
        await page.expect("#worker-state", text="attached")
        await page.expect(f'#history tr[data-task="{task_id}"]', text="done")
        await page.screenshot("worker")
        nursery.cancel_scope.cancel()


async def test_with_tokens_the_page_asks_for_one_and_the_admin_token_cancels_and_detaches(
        browser: Browser, start_server: StartServer, hub_db: str, tmp_path: Path) -> None:
    served = await start_server(Settings(port=0, db=hub_db, admin_tokens=frozenset({ADMIN})))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with http_client(served.url, headers=headers) as http, trio.open_nursery() as nursery:
        closed: list[str | None] = []

        async def idle_worker(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                await echo_worker(served.ws(
                    f"/work/queue?task=other&worker_id=idle&access_token={ADMIN}"),
                    task_status=task_status)
            except ConnectionClosed as exc:
                closed.append(exc.reason.reason)

        await nursery.start(idle_worker)
        await wait_attached(served, "idle")
        task_id = await submit(http, "waits", [1, 2, 3])
        page = await open_page(browser, served, tmp_path)

        await page.goto(f"#/task/{task_id}")
        await page.expect("#token-form", text="Token")
        await page.expect("#cancel", count=0)  # no token: no action (and nothing to read)
        await page.screenshot("token-asked")

        await page.do(lambda p: p.fill("#token-input", ADMIN))
        await page.do(lambda p: p.click("#token-form button[type=submit]"))
        await page.expect("#token-form", visible=False)
        await page.expect("#task-state [data-state]", text="queued")
        await page.do(lambda p: p.click("#cancel"))
        await page.expect("#task-state [data-state]", text="cancelled")
        await page.expect("#cancel", count=0)
        task = (await http.get(f"/tasks/{task_id}")).json()
        assert task["state"] == "cancelled"

        await page.goto()
        await page.do(lambda p: p.click('#workers button[data-detach="idle"]'))
        await page.expect('#workers tr[data-worker="idle"]', count=0)
        await page.screenshot("admin")
        nursery.cancel_scope.cancel()
    assert "idle" not in served.hub.sessions.attached
    assert closed == ["detached by an admin"]


async def test_the_docs_page_lists_every_operation(
        browser: Browser, server: Served, tmp_path: Path) -> None:
    page = await open_page(browser, server, tmp_path)
    async with http_client(server.url) as http:
        document = (await http.get("/openapi.json")).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    await page.do(lambda p: p.goto(server.url + "/docs"))
    await page.expect("details.op[id^=get_], details.op[id^=post_], details.op[id^=put_], "
                      "details.op[id^=delete_]", count=operations)
    await page.screenshot("docs")
    assert json.dumps(document)  # the page rendered the document it was served
