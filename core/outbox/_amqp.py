"""RabbitMQ as the relay's sink: pika's BlockingConnection on a confirm channel, run in
a worker thread (`trio.to_thread`), one call at a time.

Exchanges are declared (topic, durable) on every new connection before anything is
published on it. Messages are persistent UTF-8 JSON. `publish` returns once the broker
confirmed every message (pika waits for each confirm); any failure drops the
connection, and the next call opens a new one, so a restarted broker is picked up by
the relay's next retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pika
import pika.exceptions
import trio

from ..store import OutboxRow

__all__ = ["AmqpSink"]

log = logging.getLogger("workyard.outbox")

_PROPERTIES = pika.BasicProperties(content_type="application/json",
                                   content_encoding="utf-8", delivery_mode=2)


class AmqpSink:
    def __init__(self, url: str, exchanges: Sequence[str]) -> None:
        self.params = pika.URLParameters(url)
        self.exchanges = tuple(exchanges)
        self._connection: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def start(self) -> None:
        await trio.to_thread.run_sync(self._channel_now, limiter=self._limiter)

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        await trio.to_thread.run_sync(self._publish, rows, limiter=self._limiter)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self._drop, limiter=self._limiter)

    # -- on the worker thread ----------------------------------------------------

    def _channel_now(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._drop()
        connection = pika.BlockingConnection(self.params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for exchange in self.exchanges:
                channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        except BaseException:
            connection.close()
            raise
        self._connection, self._channel = connection, channel
        log.info("event broker connected: %s:%s", self.params.host, self.params.port)
        return channel

    def _publish(self, rows: Sequence[OutboxRow]) -> None:
        fresh = self._channel is None
        for attempt in (1, 2):
            channel = self._channel_now()
            try:
                for row in rows:
                    channel.basic_publish(row.exchange, row.routing_key, row.body, _PROPERTIES)
                return
            except Exception:
                self._drop()
                # an idle connection the broker dropped: one more go on a new one
                if fresh or attempt == 2:
                    raise
                fresh = True

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as exc:  # noqa: BLE001 - it is going away either way
                log.debug("closing the broker connection: %r", exc)
