"""Producer clients over httpx: `Producer` (blocking) and `AsyncProducer` (trio or asyncio).

Each call is written once, as a generator that yields the HTTP requests it needs
and gets their responses back (submit_many may need several). The two classes
only drive those generators, one with `httpx.Client`, one with `httpx.AsyncClient`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterable, Mapping
from typing import Any, Self, TypeVar

import httpx
import msgspec

from ..protocol import MAX_BATCH, MAX_TASK_WAIT
from ._urls import RETRY_STATUSES, HubURLs, may_retry, moved

__all__ = ["AsyncProducer", "HubError", "Producer"]

T = TypeVar("T")
Call = Generator[httpx.Request, httpx.Response, T]


class HubError(Exception):
    """The hub answered with an error status; `message` is its `error` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _Calls:
    """The API as request/response exchanges, with no I/O of its own."""

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self._client = client

    def _request(self, method: str, path: str, *, body: Any = None,
                 params: Mapping[str, Any] | None = None, wait: float = 0.0) -> httpx.Request:
        timeout = self._client.timeout
        if wait and timeout.read is not None:  # a long poll: the wait on top of the read timeout
            timeout = httpx.Timeout(**{**timeout.as_dict(), "read": timeout.read + wait})
        return self._client.build_request(
            method, path, params=params, timeout=timeout,
            content=None if body is None else msgspec.json.encode(body),
            headers=None if body is None else {"Content-Type": "application/json"},
        )

    def submit(self, task: dict[str, Any]) -> Call[str]:
        response = yield self._request("POST", "/tasks", body=task)
        return _json(response)["id"]

    def submit_many(self, tasks: Iterable[Mapping[str, Any] | msgspec.Struct]) -> Call[list[str]]:
        specs = list(tasks)  # dicts, msgspec Structs (e.g. TaskSpec) or dataclasses
        ids: list[str] = []
        for start in range(0, len(specs), MAX_BATCH):
            response = yield self._request("POST", "/tasks",
                                           body={"tasks": specs[start:start + MAX_BATCH]})
            ids.extend(_json(response)["ids"])
        return ids

    def result(self, task_id: str, wait: float) -> Call[dict[str, Any]]:
        rounds = max(1, math.ceil(wait / MAX_TASK_WAIT))  # longer waits are split
        for i in range(rounds):
            this_wait = min(MAX_TASK_WAIT, wait - i * MAX_TASK_WAIT) if wait > 0 else 0.0
            response = yield self._request("GET", f"/tasks/{task_id}",
                                           params={"wait": f"{this_wait:g}"}, wait=this_wait)
            task = _json(response)
            if task["state"] in ("done", "failed", "cancelled"):
                break
        return task

    def results(self, task_ids: Iterable[str], wait: float) -> Call[list[dict[str, Any]]]:
        wanted = list(task_ids)
        deadline = time.monotonic() + wait
        finished: dict[str, dict[str, Any]] = {}
        distinct = list(dict.fromkeys(wanted))
        for start in range(0, len(distinct), MAX_BATCH):  # at most MAX_BATCH per request
            chunk = distinct[start:start + MAX_BATCH]
            while chunk:
                left = min(MAX_TASK_WAIT, max(0.0, deadline - time.monotonic()))
                response = yield self._request("POST", "/tasks/wait", wait=left,
                                               body={"ids": chunk, "wait": round(left, 3)})
                answer = _json(response)
                if answer["unknown"]:
                    raise HubError(404, "no task " + ", ".join(map(repr, answer["unknown"])))
                finished.update((task["id"], task) for task in answer["finished"])
                chunk = answer["pending"]
                if time.monotonic() >= deadline:
                    break
        return [finished[i] for i in wanted if i in finished]

    def cancel(self, task_id: str) -> Call[dict[str, Any]]:
        return _json((yield self._request("DELETE", f"/tasks/{task_id}")))

    def tasks(self, name: str | None, state: str | None, limit: int) -> Call[list[dict[str, Any]]]:
        params = {k: v for k, v in (("name", name), ("state", state), ("limit", limit)) if v}
        return _json((yield self._request("GET", "/tasks", params=params)))["tasks"]

    def workers(self) -> Call[list[dict[str, Any]]]:
        return _json((yield self._request("GET", "/workers")))["workers"]

    def queues(self) -> Call[dict[str, dict[str, int]]]:
        return _json((yield self._request("GET", "/queues")))["queues"]


def _json(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.text.strip() or response.reason_phrase
    raise HubError(response.status_code, message)


def task_body(name: str, data: Any, attrs: Mapping[str, str] | None, priority: int,
              timeout: float, retries: int, schedule_timeout: float | None,
              key: str | None) -> dict[str, Any]:
    """One task as POST /tasks takes it; fields left at the hub's defaults are omitted."""
    body: dict[str, Any] = {"name": name, "data": data, "attrs": dict(attrs or {}),
                            "priority": priority, "timeout": timeout, "retries": retries}
    if schedule_timeout is not None:
        body["schedule_timeout"] = schedule_timeout
    if key is not None:
        body["key"] = key
    return body


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Producer:
    """Submit tasks and read results, blocking.

        with Producer("http://127.0.0.1:8470") as hub:
            task_id = hub.submit("tag", {"url": "..."}, attrs={"cloud": "aws"})
            print(hub.result(task_id, wait=30)["result"])

    `url` may name several hubs on one database (comma-separated, or a list): a
    request one cannot take (unreachable, or 502/503/504) goes to the next.
    Errors from the hub raise `HubError`; network errors are httpx's own.
    """

    def __init__(self, url: str | list[str], token: str | None = None, *,
                 timeout: float = 30.0) -> None:
        self._urls = HubURLs(url)
        self._client = httpx.Client(base_url=self._urls.current, headers=_headers(token),
                                    timeout=timeout)
        self._calls = _Calls(self._client)

    def _send(self, request: httpx.Request) -> httpx.Response:
        """`request` to the current hub, else to the next ones, each once."""
        for left in range(len(self._urls) - 1, -1, -1):
            try:
                response = self._client.send(request)
            except httpx.TransportError as exc:
                if not left or not may_retry(request, exc):
                    raise
            else:
                if not left or response.status_code not in RETRY_STATUSES:
                    return response
                response.close()
            self._client.base_url = self._urls.advance()
            request = moved(request, self._urls.current)
        raise AssertionError("unreachable")

    def _drive(self, call: Call[T]) -> T:
        try:
            request = next(call)
            while True:
                request = call.send(self._send(request))
        except StopIteration as done:
            return done.value

    def submit(self, name: str, data: Any = None, attrs: Mapping[str, str] | None = None,
               priority: int = 0, timeout: float = 60, retries: int = 3,
               schedule_timeout: float | None = None, key: str | None = None) -> str:
        """Submit one task; returns its id (the existing task's id if `key` is known)."""
        return self._drive(self._calls.submit(task_body(
            name, data, attrs, priority, timeout, retries, schedule_timeout, key)))

    def submit_many(self, tasks: Iterable[Mapping[str, Any] | msgspec.Struct]) -> list[str]:
        """Submit task specs (dicts like POST /tasks takes) in batches of 1000; returns ids."""
        return self._drive(self._calls.submit_many(tasks))

    def result(self, task_id: str, wait: float = 30) -> dict[str, Any]:
        """The task, once final or after `wait` seconds, whichever is first."""
        return self._drive(self._calls.result(task_id, wait))

    def results(self, task_ids: Iterable[str], wait: float = 30) -> list[dict[str, Any]]:
        """The final tasks among `task_ids`, in their order, once all are final or after
        `wait` seconds, whichever is first (tasks not final by then are left out). A
        few requests however many tasks (`POST /tasks/wait`, 1000 ids each); an
        unknown id raises HubError 404."""
        return self._drive(self._calls.results(task_ids, wait))

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task that is not final yet (HubError 409 if it is)."""
        return self._drive(self._calls.cancel(task_id))

    def tasks(self, name: str | None = None, state: str | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        return self._drive(self._calls.tasks(name, state, limit))

    def workers(self) -> list[dict[str, Any]]:
        return self._drive(self._calls.workers())

    def queues(self) -> dict[str, dict[str, int]]:
        return self._drive(self._calls.queues())

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncProducer:
    """`Producer` for async code (trio or asyncio: httpx runs on anyio).

        async with AsyncProducer("http://127.0.0.1:8470") as hub:
            task_id = await hub.submit("tag", {"url": "..."})
    """

    def __init__(self, url: str | list[str], token: str | None = None, *,
                 timeout: float = 30.0) -> None:
        self._urls = HubURLs(url)
        self._client = httpx.AsyncClient(base_url=self._urls.current, headers=_headers(token),
                                         timeout=timeout)
        self._calls = _Calls(self._client)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """`request` to the current hub, else to the next ones, each once."""
        for left in range(len(self._urls) - 1, -1, -1):
            try:
                response = await self._client.send(request)
            except httpx.TransportError as exc:
                if not left or not may_retry(request, exc):
                    raise
            else:
                if not left or response.status_code not in RETRY_STATUSES:
                    return response
                await response.aclose()
            self._client.base_url = self._urls.advance()
            request = moved(request, self._urls.current)
        raise AssertionError("unreachable")

    async def _drive(self, call: Call[T]) -> T:
        try:
            request = next(call)
            while True:
                request = call.send(await self._send(request))
        except StopIteration as done:
            return done.value

    async def submit(self, name: str, data: Any = None, attrs: Mapping[str, str] | None = None,
                     priority: int = 0, timeout: float = 60, retries: int = 3,
                     schedule_timeout: float | None = None, key: str | None = None) -> str:
        """Submit one task; returns its id (the existing task's id if `key` is known)."""
        return await self._drive(self._calls.submit(task_body(
            name, data, attrs, priority, timeout, retries, schedule_timeout, key)))

    async def submit_many(self, tasks: Iterable[Mapping[str, Any] | msgspec.Struct]) -> list[str]:
        """Submit task specs (dicts like POST /tasks takes) in batches of 1000; returns ids."""
        return await self._drive(self._calls.submit_many(tasks))

    async def result(self, task_id: str, wait: float = 30) -> dict[str, Any]:
        """The task, once final or after `wait` seconds, whichever is first."""
        return await self._drive(self._calls.result(task_id, wait))

    async def results(self, task_ids: Iterable[str], wait: float = 30) -> list[dict[str, Any]]:
        """The final tasks among `task_ids`, in their order, once all are final or after
        `wait` seconds, whichever is first (see `Producer.results`)."""
        return await self._drive(self._calls.results(task_ids, wait))

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task that is not final yet (HubError 409 if it is)."""
        return await self._drive(self._calls.cancel(task_id))

    async def tasks(self, name: str | None = None, state: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        return await self._drive(self._calls.tasks(name, state, limit))

    async def workers(self) -> list[dict[str, Any]]:
        return await self._drive(self._calls.workers())

    async def queues(self) -> dict[str, dict[str, int]]:
        return await self._drive(self._calls.queues())

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
