"""Machine statistics for the hub's ClearML registry (`workers.status_report`): what a
clearml-agent reports, from psutil, under ClearML's metric names, so a fleet of
workyard workers has the same charts as ClearML agents.

    cpu_usage [%]        memory_used, memory_free (MB)     disk_free_home (%)
    disk_read, disk_write, network_tx, network_rx (MB/s since the previous sample)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import httpx
import msgspec
import psutil
import trio

__all__ = ["MachineStats", "report_stats"]

log = logging.getLogger("workyard.client")

MB = 1024 * 1024


class MachineStats:
    """Samples of this machine; rates are per second since the previous `sample`."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home or os.path.expanduser("~")
        psutil.cpu_percent()  # the first call only starts the measurement
        self._at = time.monotonic()
        self._disk = psutil.disk_io_counters()
        self._net = psutil.net_io_counters()

    def sample(self) -> dict[str, float | list[float]]:
        now = time.monotonic()
        elapsed = max(now - self._at, 1e-3)
        memory = psutil.virtual_memory()
        stats: dict[str, float | list[float]] = {
            "cpu_usage": [psutil.cpu_percent()],
            "memory_used": (memory.total - memory.available) / MB,
            "memory_free": memory.available / MB,
            "disk_free_home": 100.0 - psutil.disk_usage(self.home).percent,
        }
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        if disk is not None and self._disk is not None:  # None in some containers
            stats["disk_read"] = (disk.read_bytes - self._disk.read_bytes) / MB / elapsed
            stats["disk_write"] = (disk.write_bytes - self._disk.write_bytes) / MB / elapsed
        if net is not None and self._net is not None:
            stats["network_tx"] = (net.bytes_sent - self._net.bytes_sent) / MB / elapsed
            stats["network_rx"] = (net.bytes_recv - self._net.bytes_recv) / MB / elapsed
        self._at, self._disk, self._net = now, disk, net
        return stats


async def report_stats(url: str, worker_id: str, token: str | None, every: float,
                       queues: Sequence[str], current: Callable[[], str | None], *,
                       machine: MachineStats | None = None) -> None:
    """POST a `workers.status_report` every `every` seconds until cancelled. A failed
    report is logged and the next one tried: statistics never stop the worker."""
    machine = machine or MachineStats()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0) as client:
        while True:
            await trio.sleep(every)
            body = {"worker": worker_id, "timestamp": int(time.time() * 1000),
                    "task": current(), "queues": list(queues),
                    "machine_stats": machine.sample()}
            try:
                response = await client.post("/workers.status_report",
                                             content=msgspec.json.encode(body))
                if response.status_code != 200:
                    log.warning("worker %s: status report refused: HTTP %d %s", worker_id,
                                response.status_code, response.text[:200])
            except httpx.HTTPError as exc:
                log.warning("worker %s: status report failed: %s", worker_id, exc)
