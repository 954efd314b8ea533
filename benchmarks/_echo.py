"""WebSocket echo servers: what a message costs on each server stack, without a hub.

    python benchmarks/_echo.py PORT [trio-websocket | quart | wsproto]

* `trio-websocket` (the default): trio-websocket's server, the ceiling the
  dispatch benchmark compares the hub to.
* `quart`: the hub's own stack, a quart-trio app served by hypercorn's trio worker.
* `wsproto`: the leanest trio server: one task per connection feeding wsproto and
  writing every reply one read produced in a single `send_all`.

Prints `ready` once listening.
"""

from __future__ import annotations

import sys
from functools import partial

import trio

MAX_MESSAGE = 16 * 1024 * 1024


async def trio_websocket(port: int, task_status: trio.TaskStatus[None]) -> None:
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    await serve_websocket(echo, "127.0.0.1", port, ssl_context=None,
                          max_message_size=MAX_MESSAGE, task_status=task_status)


async def quart(port: int, task_status: trio.TaskStatus[None]) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import websocket
    from quart_trio import QuartTrio

    app = QuartTrio("echo")

    @app.websocket("/")
    async def echo() -> None:
        while True:
            await websocket.send(await websocket.receive())

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.websocket_max_message_size = MAX_MESSAGE
    config.loglevel = "WARNING"
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]


async def wsproto(port: int, task_status: trio.TaskStatus[None]) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request

    async def connection(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        async with stream:
            while data := await stream.receive_some(262144):
                ws.receive_data(data)
                out = bytearray()
                for event in ws.events():
                    if isinstance(event, Message):
                        out += ws.send(Message(data=event.data))
                    elif isinstance(event, Request):
                        out += ws.send(AcceptConnection())
                    elif isinstance(event, Ping):
                        out += ws.send(event.response())
                    elif isinstance(event, CloseConnection):
                        await stream.send_all(out + ws.send(event.response()))
                        return
                if out:
                    await stream.send_all(out)

    await trio.serve_tcp(connection, port, host="127.0.0.1", task_status=task_status)


STACKS = {"trio-websocket": trio_websocket, "quart": quart, "wsproto": wsproto}


async def main(port: int, stack: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(STACKS[stack], port))
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "trio-websocket")
