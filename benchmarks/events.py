"""Outbox → RabbitMQ: throughput with publisher confirms, and the latency from a
committed change to a consumer at a steady rate.

    .venv/bin/python benchmarks/events.py [--events 10000] [--rate 500] [--seconds 5]

The store (a SQLite file, synchronous=NORMAL), the outbox relay and its pika sink run
as the hub runs them; the consumer is a separate process (pika, a queue bound `#`).
Latency: from handing the change to the store (so its commit counts) to the consumer
receiving the message (one clock: the same machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
import trio

from workyard.outbox import WORKER_MANAGER_EXCHANGES, Feed, Relay
from workyard.outbox._amqp import AmqpSink
from workyard.store import AppendEvents, OutboxEvent, OutboxRow, SQLiteStore

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
EXCHANGE = WORKER_MANAGER_EXCHANGES[4]  # worker-running


def consume(queue: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    latencies = []
    for method, _, body in channel.consume(queue, auto_ack=True, inactivity_timeout=30):
        if method is None:
            break
        latencies.append(time.time() - json.loads(body)["committed"])
        if len(latencies) >= count:
            break
    connection.close()
    out.put(latencies)


def declare_queue() -> str:
    queue = f"queue/bench/{uuid.uuid4().hex}"
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(queue, auto_delete=False)
    channel.queue_bind(queue, EXCHANGE, "#")
    connection.close()
    return queue


def delete_queue(queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    connection.channel().queue_delete(queue)
    connection.close()


async def throughput(db: Path, events: int) -> float:
    store = SQLiteStore(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        body = b'{"committed": 0}'
        last = 0
        for i in range(0, events, 100):
            (seqs,) = await store.commit(AppendEvents([
                OutboxEvent(EXCHANGE, "primary.bench._._._._._._", body, 0.0)
                for _ in range(min(100, events - i))]))
            last = int(seqs[-1])  # type: ignore[arg-type]
        relay = Relay(store, Feed(), AmqpSink(URL, [EXCHANGE]))
        started = time.perf_counter()
        await nursery.start(relay.run)
        await relay.wait_delivered(last)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return events / elapsed


async def latency(db: Path, rate: float, seconds: float) -> list[float]:
    count = int(rate * seconds)
    queue = declare_queue()
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    reader = multiprocessing.Process(target=consume, args=(queue, count, out))
    reader.start()
    store, feed = SQLiteStore(db), Feed()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            relay = Relay(store, feed, AmqpSink(URL, [EXCHANGE]))
            await nursery.start(relay.run)
            start = trio.current_time()
            last = 0
            for n in range(count):
                await trio.sleep_until(start + n / rate)
                # stamped as the change is handed to the store: the commit itself counts
                body = json.dumps({"committed": time.time()}).encode()
                (seqs,) = await store.commit(AppendEvents([OutboxEvent(
                    EXCHANGE, "primary.bench._._._._._._", body, 0.0)]))
                last = int(seqs[0])  # type: ignore[index]
                # what the hub's ledger does next: the feed wakes the relay
                feed.committed([OutboxRow(last, EXCHANGE, "k", body, 0.0)])
            await relay.wait_delivered(last)
            nursery.cancel_scope.cancel()
    finally:
        reader.join(60)
        delete_queue(queue)
    return out.get(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = trio.run(throughput, Path(tmp) / "t.db", args.events)
        print(f"outbox -> RabbitMQ with confirms: {rate:,.0f} events/s ({args.events} events)")
        sys.stdout.flush()
        lat = sorted(trio.run(latency, Path(tmp) / "l.db", args.rate, args.seconds))
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"commit -> consumer at {args.rate:g} events/s for {args.seconds:g} s: "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
              f"({len(lat)} events)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
