"""The fast lane on the main port: hot routes answered by h11 alone, every other request
on the same connection still answered by hypercorn, and the lane's table as a seam."""

from __future__ import annotations

import json

import httpx
import trio
from conftest import NET_TIMEOUT, Served, http_client, until
from quart_trio import QuartTrio

from workyard.http._lane import Lane, LaneRequest, LaneResponse, json_reply


def _request(method: str, path: str, body: bytes = b"", *extra: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: hub", *extra]
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _connect(server: Served) -> trio.SocketStream:
    url = httpx.URL(server.url)
    return await trio.open_tcp_stream(url.host, url.port)


async def _responses(stream: trio.SocketStream, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`n` HTTP/1.1 responses, each (status, lower-cased headers, body), read in order."""
    data, out = b"", []
    with trio.fail_after(NET_TIMEOUT):
        while len(out) < n:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                lines = data[:head_end].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (line.partition(":") for line in lines[1:])}
                status = int(lines[0].split(" ")[1])
                length = int(headers.get("content-length", "0"))
                if status == 100:
                    out.append((status, headers, b""))
                    data = data[head_end + 4:]
                    continue
                if len(data) >= head_end + 4 + length:
                    out.append((status, headers, data[head_end + 4:head_end + 4 + length]))
                    data = data[head_end + 4 + length:]
                    continue
            chunk = await stream.receive_some(65536)
            assert chunk, f"the server closed the connection after {len(out)} responses"
            data += chunk
    return out


async def test_a_keep_alive_connection_is_handed_to_hypercorn_at_its_first_other_request(
        server: Served) -> None:
    stream = await _connect(server)
    task = json.dumps({"name": "lane", "data": 1}).encode()
    await stream.send_all(_request("POST", "/tasks", task))
    [(status, headers, body)] = await _responses(stream, 1)
    assert status == 201 and "server" not in headers  # the lane's answer: no hypercorn
    task_id = json.loads(body)["id"]
    await stream.send_all(_request("GET", f"/tasks/{task_id}"))
    [(status, headers, body)] = await _responses(stream, 1)
    assert status == 200 and json.loads(body)["state"] == "queued" and "server" not in headers
    await stream.send_all(_request("GET", "/queues"))  # not the lane's
    [(status, headers, body)] = await _responses(stream, 1)
    assert status == 200 and headers["server"] == "hypercorn-h11"
    assert json.loads(body)["queues"]["lane"]["queued"] == 1
    await stream.send_all(_request("POST", "/tasks", task))  # hypercorn's connection now
    [(status, headers, _)] = await _responses(stream, 1)
    assert status == 201 and headers["server"] == "hypercorn-h11"
    await stream.aclose()


async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
        server: Served) -> None:
    stream = await _connect(server)
    tasks = [json.dumps({"name": "pipe", "data": i}).encode() for i in range(3)]
    await stream.send_all(b"".join([_request("POST", "/tasks", tasks[0]),
                                    _request("POST", "/tasks", tasks[1]),
                                    _request("GET", "/workers"),
                                    _request("POST", "/tasks", tasks[2])]))
    answers = await _responses(stream, 4)
    assert [status for status, _, _ in answers] == [201, 201, 200, 201]
    assert "workers" in json.loads(answers[2][2])
    ids = [json.loads(answers[i][2])["id"] for i in (0, 1, 3)]
    assert [bytes((await server.hub.get(i)).data) for i in ids] == [b"0", b"1", b"2"]
    await stream.aclose()


async def test_a_client_waiting_for_100_continue_gets_it_before_sending_the_body(
        server: Served) -> None:
    stream = await _connect(server)
    body = json.dumps({"name": "big", "data": "x" * 2000}).encode()
    await stream.send_all(_request("POST", "/tasks", b"", "Expect: 100-continue",
                                   f"Content-Length: {len(body)}")
                          .replace(b"Content-Length: 0\r\n", b""))
    [(status, _, _)] = await _responses(stream, 1)
    assert status == 100
    await stream.send_all(body)
    [(status, _, answer)] = await _responses(stream, 1)
    assert status == 201 and json.loads(answer)["created"] is True
    await stream.aclose()


async def test_head_and_other_methods_of_a_lane_path_are_answered_as_before(
        server: Served) -> None:
    async with http_client(server.url) as http:
        head = await http.head("/health")
        assert head.status_code == 200 and head.content == b""
        wrong = await http.put("/tasks", content=b"{}")
        assert wrong.status_code == 405 and "error" in wrong.json()
        missing = await http.get("/tasks/nope")
        assert missing.status_code == 404 and missing.json() == {"error": "no task 'nope'"}


async def test_a_request_h11_refuses_is_answered_by_hypercorn_with_a_400(
        server: Served) -> None:
    stream = await _connect(server)
    await stream.send_all(b"POST /tasks HTTP/1.1\r\nHost: hub\r\nContent-Length: ten\r\n\r\n")
    [(status, _, _)] = await _responses(stream, 1)
    assert status == 400
    await stream.aclose()


async def test_a_long_poll_cut_off_by_its_client_is_cancelled_and_leaves_its_worker(
        server: Served) -> None:
    stream = await _connect(server)
    await stream.send_all(_request("POST", "/v1/queue/cut?wait=30", b"{}",
                                   "X-Worker-Id: poller-cut"))
    sessions = server.hub.sessions.attached
    await until(lambda: "poller-cut" in sessions and sessions["poller-cut"].holds > 0)
    await stream.aclose()
    await until(lambda: sessions["poller-cut"].holds == 0)  # cancelled: its poll closed


async def test_a_route_added_to_the_lane_is_matched_and_mounted_in_quart() -> None:
    lane = Lane()
    app = QuartTrio("lane-test")
    lane.mount(app)

    @lane.route(("POST", "PUT"), "/<any(things,stuff):kind>.<action>")
    async def poke(request: LaneRequest) -> LaneResponse:
        return json_reply({"kind": request.view_args["kind"], "body": (await request.body()).decode()})

    route, args = lane.match("POST", "/things.poke") or (None, None)
    assert route is not None and args == {"kind": "things", "action": "poke"}
    assert lane.match("PUT", "/things.poke") is not None
    assert lane.match("GET", "/things.poke") is None  # quart answers that one (405)
    assert lane.match("POST", "/other.poke") is None
    assert lane.match("HEAD", "/things.poke") is None
    response = await app.test_client().post("/stuff.x", data=b"hi")
    assert response.status_code == 200
    assert await response.get_json() == {"kind": "stuff", "body": "hi"}
