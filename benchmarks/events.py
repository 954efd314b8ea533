"""Worker-pool events, outbox → RabbitMQ: throughput with publisher confirms, latency
from a committed change to a consumer, and 1,000 worker attach/detach cycles in pools
with the broker restarted in the middle.

    python benchmarks/events.py [--runs 3] [--events 10000] [--rate 500] [--seconds 5]
                                [--cycles 1000]

The store (a SQLite file), the hub, the outbox relay and its pika sink run in this
process as `workyard serve --amqp-url` runs them; consumers are pika, in a separate
process for the latency. Latency: from handing the change to the store (its commit
counts) to the consumer receiving the message (one clock: the same machine).

Cycles: pools of a provider unique to the run; workers attach to them and detach
(`Hub.attach`/`detach`, as a transport calls them), pools are updated, and some
updates fail in the store (rolled back: the hub undoes them). A third of the way in,
RabbitMQ is stopped (`rabbitmqctl stop_app`) and two thirds in it is started again
(always, however the run ends). Then a durable queue bound to the run's provider must
hold every outbox event (by message_id = outbox seq), in seq order per pool once
repeats are dropped, and nothing of a rolled-back update.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import trio
from _common import MISSED, machine, target, write_result

from workyard import Hub, Subscription
from workyard.outbox import POOL_REMOVED, WORKER_MANAGER_EXCHANGES, Feed, Relay
from workyard.outbox._amqp import AmqpSink
from workyard.store import (
    AppendEvents,
    OutboxEvent,
    OutboxRow,
    PoolRecord,
    SavePool,
    SQLiteStore,
    StoreError,
)
from workyard.testing import RecordingLink

URL = os.environ.get("WORKYARD_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
EXCHANGE = WORKER_MANAGER_EXCHANGES[4]  # worker-running
ALL_EXCHANGES = [*WORKER_MANAGER_EXCHANGES, POOL_REMOVED]
#: seconds any one phase may wait for deliveries before it gives up (bounded runs)
PATIENCE = 120.0


def _channel() -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    return connection, connection.channel()


def declare_queue(bindings: Sequence[tuple[str, str]], durable: bool = False) -> str:
    queue = f"queue/workyard-bench/{uuid.uuid4().hex}"
    connection, channel = _channel()
    channel.queue_declare(queue, durable=durable, auto_delete=False)
    for exchange, pattern in bindings:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_bind(queue, exchange, pattern)
    connection.close()
    return queue


def delete_queue(queue: str) -> None:
    connection, channel = _channel()
    channel.queue_delete(queue)
    connection.close()


# -- throughput ------------------------------------------------------------------------


async def throughput(db: Path, events: int) -> dict[str, float]:
    """Events already in the outbox, delivered by a relay that starts on them."""
    store = SQLiteStore(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        body = b'{"committed": 0}'
        last = 0
        for i in range(0, events, 500):
            (seqs,) = await store.commit(AppendEvents([
                OutboxEvent(EXCHANGE, "primary.bench._._._._._._", body, 0.0)
                for _ in range(min(500, events - i))]))
            last = int(seqs[-1])  # type: ignore[index]
        relay = Relay(store, Feed(), AmqpSink(URL, [EXCHANGE]))
        cpu, started = time.process_time(), time.perf_counter()
        await nursery.start(relay.run)
        with trio.fail_after(PATIENCE):
            await relay.wait_delivered(last)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return {"events_per_s": round(events / elapsed), "cpu_us_per_event": round(
        cpu / events * 1e6, 1)}


# -- latency ---------------------------------------------------------------------------


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


async def latency(db: Path, rate: float, seconds: float) -> list[float]:
    count = int(rate * seconds)
    queue = declare_queue([(EXCHANGE, "primary.bench.#")])
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
                # what the hub's ledger does next: hand the row to the feed (wakes the relay)
                feed.committed([OutboxRow(last, EXCHANGE, "primary.bench._._._._._._", body,
                                          0.0)])
            with trio.fail_after(PATIENCE):
                await relay.wait_delivered(last)
            nursery.cancel_scope.cancel()
    finally:
        reader.join(60)
        delete_queue(queue)
    return sorted(out.get(timeout=5))


# -- attach/detach cycles with a broker restart ----------------------------------------


class FlakyStore(SQLiteStore):
    """Fails every commit that saves a pool whose description says "rollback": the
    change does not commit and the hub undoes it."""

    async def commit(self, *changes: Any) -> Any:
        if any(type(c) is SavePool and c.pool.description.startswith("rollback")
               for c in changes):
            raise StoreError("this benchmark rolls this change back")
        return await super().commit(*changes)


async def rabbitmqctl(*args: str) -> None:
    await trio.run_process(["rabbitmqctl", "-q", *args], capture_stdout=True,
                           capture_stderr=True)


def drain_queue(queue: str) -> list[tuple[int, str, str, dict[str, Any]]]:
    """Every message in `queue`: (seq, exchange, routing key, body), in queue order."""
    connection, channel = _channel()
    got = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((int(props.message_id), method.exchange, method.routing_key,
                    json.loads(body)))
    connection.close()
    return got


async def cycles(db: Path, count: int, pools: int = 4) -> dict[str, Any]:
    provider = f"bench{uuid.uuid4().hex[:8]}"
    rolled_provider = provider + "rb"
    queue = declare_queue([(e, f"primary.{p}.#") for e in ALL_EXCHANGES
                           for p in (provider, rolled_provider)], durable=True)
    store = FlakyStore(db)
    hub = Hub(store)
    relay = Relay(store, hub.feed, AmqpSink(URL, ALL_EXCHANGES))
    ids = [f"bench/pool{i}" for i in range(pools)]
    rolled_back = updates = 0
    down: dict[str, float] = {}
    broker_down = False
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            await nursery.start(relay.run)
            for pool_id in ids:
                await hub.pools.create(PoolRecord(pool_id, provider, "v0", b"{}",
                                                  "bench@example.com", False, 0.0, 0.0))
            subs = [Subscription.of("bench")]
            started = time.perf_counter()
            for i in range(count):
                if i == count // 3:
                    await rabbitmqctl("stop_app")
                    broker_down = True
                    down["stopped"] = time.perf_counter() - started
                elif i == 2 * count // 3:
                    await rabbitmqctl("start_app")
                    await rabbitmqctl("await_startup")
                    broker_down = False
                    down["started"] = time.perf_counter() - started
                pool_id = ids[i % pools]
                link = RecordingLink()
                hub.attach(f"w{i}", subs, link, capacity=1, worker_pool=pool_id,
                           worker_group="bench")
                await trio.sleep(0.002)  # ~2 ms attached: a short life, paced
                hub.detach(f"w{i}", link)
                if i % 10 == 5:
                    pool = hub.pools.get(pool_id)
                    assert pool is not None
                    if i % 50 == 25:  # a change the store refuses: rolled back
                        try:
                            await hub.pools.update(replace(
                                pool.record, provider_id=rolled_provider,
                                description=f"rollback {i}"))
                        except StoreError:
                            rolled_back += 1
                    else:
                        await hub.pools.update(replace(pool.record, description=f"v{i}"))
                        updates += 1
            cycled = time.perf_counter() - started
            # the ledger commits in order: once this update is in, everything before is
            pool = hub.pools.get(ids[0])
            assert pool is not None
            await hub.pools.update(replace(pool.record, description="last"))
            updates += 1
            rows = await store.outbox.read(0, 10 * count + 1000)
            last = rows[-1].seq
            with trio.fail_after(PATIENCE):
                await relay.wait_delivered(last)
            caught_up = time.perf_counter() - started
            failures = relay.failures
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if broker_down:
                await rabbitmqctl("start_app")
                await rabbitmqctl("await_startup")
    try:
        got = await trio.to_thread.run_sync(drain_queue, queue)
    finally:
        await trio.to_thread.run_sync(delete_queue, queue)
    expected = {r.seq: r for r in rows}
    pool_of = {r.seq: json.loads(r.body)["workerPoolId"] for r in rows}
    seen: set[int] = set()
    order_ok, repeats, strangers = True, 0, 0
    last_per_pool: dict[str, int] = {}
    for seq, exchange, key, body in got:
        row = expected.get(seq)
        if row is None or (row.exchange, row.routing_key) != (exchange, key):
            strangers += 1
            continue
        if seq in seen:
            repeats += 1
            continue
        seen.add(seq)
        pool_id = pool_of[seq]
        if seq < last_per_pool.get(pool_id, 0):
            order_ok = False
        last_per_pool[pool_id] = seq
    rolled_seen = sum(1 for _, _, key, _ in got if key.startswith(f"primary.{rolled_provider}."))
    return {
        "cycles": count, "pools": pools, "pool_updates": updates, "rolled_back": rolled_back,
        "outbox_events": len(rows), "delivered": len(seen), "missing": len(expected) - len(seen),
        "repeats": repeats, "strangers": strangers, "in_order_per_pool": order_ok,
        "rolled_back_events": rolled_seen,
        "broker_stopped_at_s": round(down.get("stopped", 0), 2),
        "broker_started_at_s": round(down.get("started", 0), 2),
        "cycles_done_s": round(cycled, 2), "all_delivered_s": round(caught_up, 2),
        "relay_failures_left": failures,
    }


# -- the command -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="throughput and latency runs")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cycles", type=int, default=1000,
                        help="worker attach/detach cycles with a broker restart (0: skip)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/events.json)")
    args = parser.parse_args(argv)
    # the broker outage and the rolled-back updates are the point, not news
    logging.getLogger("workyard").setLevel(logging.CRITICAL)
    started = machine()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            t = trio.run(throughput, Path(tmp) / f"t{n}.db", args.events)
            lat = trio.run(latency, Path(tmp) / f"l{n}.db", args.rate, args.seconds)
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            runs.append({**t, "latency_p50_ms": round(p50 * 1000, 1),
                         "latency_p99_ms": round(p99 * 1000, 1),
                         "latency_max_ms": round(lat[-1] * 1000, 1), "latency_events": len(lat),
                         "load_avg": round(os.getloadavg()[0], 2)})
            print(f"run {n + 1}: {t['events_per_s']:,} events/s with confirms "
                  f"({t['cpu_us_per_event']} µs CPU per event); at {args.rate:g} events/s: "
                  f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms",
                  flush=True)
        cyc = trio.run(cycles, Path(tmp) / "c.db", args.cycles) if args.cycles else None
    summary: dict[str, Any] = {}
    if runs:
        summary = {"events_per_s": statistics.median(r["events_per_s"] for r in runs),
                   "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in runs),
                   "latency_p50_ms": statistics.median(r["latency_p50_ms"] for r in runs),
                   "latency_p99_ms": statistics.median(r["latency_p99_ms"] for r in runs)}
    verdicts = [target(summary.get("events_per_s"), ">=", 5000),
                target(summary.get("latency_p99_ms"), "<=", 20)]
    if cyc is not None:
        print(f"cycles: {cyc['cycles']:,} attach/detach in {cyc['pools']} pools, broker stopped "
              f"at {cyc['broker_stopped_at_s']} s and started at {cyc['broker_started_at_s']} s; "
              f"{cyc['delivered']:,} of {cyc['outbox_events']:,} outbox events delivered "
              f"({cyc['missing']} missing, {cyc['repeats']} repeats), in order per pool: "
              f"{cyc['in_order_per_pool']}; {cyc['rolled_back']} rolled-back updates, "
              f"{cyc['rolled_back_events']} events of them; all delivered at "
              f"{cyc['all_delivered_s']} s", flush=True)
        verdicts.append((cyc["missing"] == 0 and cyc["in_order_per_pool"]
                         and cyc["rolled_back_events"] == 0 and cyc["strangers"] == 0,
                         "(every event, in order, none rolled back)"))
    if summary:
        print(f"median of {len(runs)}: {summary['events_per_s']:,} events/s "
              f"{verdicts[0][1]}; p99 {summary['latency_p99_ms']} ms at {args.rate:g}/s "
              f"{verdicts[1][1]}")
    result = {"machine": started, "settings": vars(args), "runs": runs, "summary": summary,
              "cycles": cyc}
    path = write_result("events", result, args.out)
    print(f"wrote {path}")
    return 0 if all(ok for ok, _ in verdicts) else MISSED


if __name__ == "__main__":
    sys.exit(main())
