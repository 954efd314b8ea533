"""RabbitMQ as the relay's sink: pika's SelectConnection on a confirm channel, its
ioloop in a thread of its own, so publishes are pipelined and confirms tracked as
they come (waiting for each confirm in turn capped the relay at one round trip per
event).

A call hands its rows to the ioloop thread, which publishes them all at once and
counts the broker's acks (`multiple` ones included); the call returns once every row
is confirmed and raises if any is nacked, the connection drops or the confirms do not
come within `CONFIRM_TIMEOUT`. Any failure drops the connection; the next call opens
a new one, so a restarted broker is picked up by the relay's next retry.

Exchanges are declared (topic, durable) on every new connection before anything is
published on it. Messages are persistent UTF-8 JSON whose `message_id` is the
event's outbox seq.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec
import trio
import trio.lowlevel

from ..store import OutboxRow

__all__ = ["AmqpSink"]

log = logging.getLogger("workyard.outbox")

#: seconds to connect and declare the exchanges, and for a batch's confirms
CONNECT_TIMEOUT = 10.0
CONFIRM_TIMEOUT = 30.0


def _properties(row: OutboxRow) -> pika.BasicProperties:
    """Persistent JSON; `message_id` is the outbox seq, so a consumer can drop the
    repeats at-least-once delivery may bring."""
    return pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                delivery_mode=2, message_id=str(row.seq))


class BrokerError(Exception):
    """The broker refused, nacked or dropped what was being published."""


@dataclass(eq=False, slots=True)
class _Batch:
    rows: Sequence[OutboxRow]
    connection: _Connection
    done: trio.Event = field(default_factory=trio.Event)
    unconfirmed: int = 0
    error: BaseException | None = None

    async def wait(self) -> None:
        """Return once every row is confirmed; raise if one is nacked, the connection
        drops, or the confirms take longer than CONFIRM_TIMEOUT (then it is closed)."""
        with trio.move_on_after(CONFIRM_TIMEOUT):
            await self.done.wait()
        if not self.done.is_set():
            self.connection.close()
            raise BrokerError(f"the broker confirmed {len(self.rows) - self.unconfirmed} of "
                              f"{len(self.rows)} events within {CONFIRM_TIMEOUT:g} s")
        if self.error is not None:
            raise self.error


class _CorkedConnection(pika.SelectConnection):
    """pika's SelectConnection, writing a batch's frames to the socket at once: pika
    hands each frame (three per message) to the socket with a send of its own, which
    cost a third of the relay's CPU per event. Between `cork` and `uncork` frames are
    kept and then written as one buffer. It overrides one private hook of pika's
    (`_output_marshaled_frames`, pika 1.x): if a pika release renames it, this class
    simply writes frame by frame again."""

    _corked: list[bytes] | None = None

    def _output_marshaled_frames(self, marshaled_frames: Sequence[bytes]) -> None:
        if self._corked is None:
            super()._output_marshaled_frames(marshaled_frames)
            return
        self._corked.extend(marshaled_frames)

    def cork(self) -> None:
        self._corked = []

    def uncork(self) -> None:
        frames, self._corked = self._corked, None
        if frames:
            super()._output_marshaled_frames([b"".join(frames)])
            self.frames_sent += len(frames) - 1


class _Connection:
    """One broker connection and its ioloop thread. Everything but `open`, `send` and
    `close` runs on that thread; trio hears back through its token."""

    def __init__(self, params: pika.URLParameters, exchanges: Sequence[str]) -> None:
        self.params = params
        self.exchanges = tuple(exchanges)
        self.token = trio.lowlevel.current_trio_token()
        self.ready = trio.Event()
        self.error: BaseException | None = None
        self.closed = False
        self._connection: _CorkedConnection | None = None
        self._channel: pika.channel.Channel | None = None
        #: delivery tag -> its batch, in publish order (confirms come in that order)
        self._unconfirmed: dict[int, _Batch] = {}
        self._tag = 0
        #: batches handed to the thread (trio's side), failed if its loop ends first
        self._sent: deque[_Batch] = deque()
        self._thread = threading.Thread(target=self._run, name="workyard-amqp", daemon=True)

    # -- from trio -----------------------------------------------------------------

    async def open(self) -> None:
        self._thread.start()
        with trio.move_on_after(CONNECT_TIMEOUT):
            await self.ready.wait()
        if not self.ready.is_set():
            self.close()
            raise BrokerError(f"no broker connection within {CONNECT_TIMEOUT:g} s")
        if self.error is not None:
            raise self.error

    def send(self, rows: Sequence[OutboxRow]) -> _Batch:
        """Hand `rows` to the ioloop thread now; wait for them with `_Batch.wait`."""
        batch = _Batch(rows, self)
        self._call(self._publish, batch)
        while self._sent and self._sent[0].done.is_set():
            self._sent.popleft()
        self._sent.append(batch)
        return batch

    def close(self) -> None:
        """Close the connection (its thread ends once it is closed)."""
        self.closed = True
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._close)
            except Exception as exc:  # noqa: BLE001 - its loop is gone already
                log.debug("closing the broker connection: %r", exc)

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        connection = self._connection
        if connection is None or self.closed:
            raise BrokerError("the broker connection is closed")
        connection.ioloop.add_callback_threadsafe(lambda: fn(*args))

    def _abandon(self) -> None:
        """The ioloop ended: whatever it did not confirm fails (on trio's side)."""
        for batch in self._sent:
            if not batch.done.is_set():
                batch.error = batch.error or self.error or BrokerError(
                    "the broker connection closed")
                batch.done.set()
        self._sent.clear()

    def _tell(self, event: trio.Event) -> None:
        try:
            self.token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    # -- on the ioloop thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connection = _CorkedConnection(
                self.params, on_open_callback=self._opened,
                on_open_error_callback=self._open_failed, on_close_callback=self._dropped)
            self._connection.ioloop.start()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits
            self._fail(BrokerError(f"broker connection failed: {exc!r}"))
        finally:
            self.closed = True
            if self._connection is not None:  # its poller and wake-up socket
                try:
                    self._connection.ioloop.close()
                except Exception as exc:  # noqa: BLE001 - going away either way
                    log.debug("closing the broker ioloop: %r", exc)
            try:
                self.token.run_sync_soon(self._abandon)
            except trio.RunFinishedError:
                pass

    def _opened(self, connection: _CorkedConnection) -> None:
        if self.closed:  # closed from trio while it connected
            self._close()
            return
        connection.channel(on_open_callback=self._channel_opened)

    def _channel_opened(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._confirmed,
                                 callback=lambda _: self._declare(0))

    def _declare(self, i: int) -> None:
        assert self._channel is not None
        if i == len(self.exchanges):
            log.info("event broker connected: %s:%s", self.params.host, self.params.port)
            self._tell(self.ready)
            return
        self._channel.exchange_declare(self.exchanges[i], exchange_type="topic", durable=True,
                                       callback=lambda _: self._declare(i + 1))

    def _publish(self, batch: _Batch) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            batch.error = BrokerError("the broker channel is closed")
            self._tell(batch.done)
            return
        batch.unconfirmed = len(batch.rows)
        connection = self._connection
        assert connection is not None
        try:
            connection.cork()
            try:
                for row in batch.rows:
                    self._tag += 1
                    self._unconfirmed[self._tag] = batch
                    channel.basic_publish(row.exchange, row.routing_key, row.body,
                                          _properties(row))
            finally:
                connection.uncork()
        except Exception as exc:  # noqa: BLE001 - the connection is failing
            self._fail(BrokerError(f"publishing failed: {exc!r}"))
            self._close()

    def _confirmed(self, frame: pika.frame.Method) -> None:  # type: ignore[type-arg]
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        tag = method.delivery_tag
        if method.multiple:
            tags = []
            for t in self._unconfirmed:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag]
        for t in tags:
            batch = self._unconfirmed.pop(t, None)
            if batch is None:
                continue
            if nack and batch.error is None:
                batch.error = BrokerError(f"the broker refused event seq {batch.rows[0].seq}"
                                          f"..{batch.rows[-1].seq} (nack)")
            batch.unconfirmed -= 1
            if batch.unconfirmed == 0:
                self._tell(batch.done)

    def _fail(self, error: BaseException) -> None:
        """Every waiting call fails with `error`."""
        if self.error is None:
            self.error = error
        for batch in set(self._unconfirmed.values()):
            if batch.error is None:
                batch.error = error
            self._tell(batch.done)
        self._unconfirmed.clear()
        self._tell(self.ready)

    def _open_failed(self, _: Any, exc: BaseException) -> None:
        self._fail(BrokerError(f"could not connect to the broker: {exc!r}"))
        self._stop()

    def _channel_closed(self, _: Any, reason: BaseException) -> None:
        self._fail(BrokerError(f"the broker closed the channel: {reason!r}"))
        self._close()

    def _dropped(self, _: Any, reason: BaseException) -> None:
        self._fail(BrokerError(f"the broker connection closed: {reason!r}"))
        self._stop()

    def _close(self) -> None:
        self.closed = True
        connection = self._connection
        if connection is not None and not (connection.is_closing or connection.is_closed):
            connection.close()
        elif connection is not None and connection.is_closed:
            self._stop()

    def _stop(self) -> None:
        self.closed = True
        if self._connection is not None:
            self._connection.ioloop.stop()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def wait(self) -> None:
        await trio.lowlevel.checkpoint()
        raise self.error


class AmqpSink:
    """The relay's sink (see `Sink`): one connection at a time, opened by `start`."""

    def __init__(self, url: str, exchanges: Sequence[str]) -> None:
        self.params = pika.URLParameters(url)
        self.exchanges = tuple(exchanges)
        self._connection: _Connection | None = None

    async def start(self) -> None:
        await self._drop()
        connection = self._connection = _Connection(self.params, self.exchanges)
        try:
            await connection.open()
        except BaseException:
            await self._drop()
            raise

    def send(self, rows: Sequence[OutboxRow]) -> _Batch | _Failed:
        connection = self._connection
        if connection is None or connection.closed:
            return _Failed(BrokerError("not connected to the broker"))
        try:
            return connection.send(rows)
        except BrokerError as exc:
            return _Failed(exc)

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            await trio.to_thread.run_sync(connection.join, CONNECT_TIMEOUT)
