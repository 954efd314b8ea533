"""Scrape /metrics of every local `workyard serve` once a second, as Prometheus would,
for as long as `--duration` says: run it beside `dispatch.py` to see what a scrape
costs the dispatch path.

    python benchmarks/scrape_loop.py --duration 600 &
    python benchmarks/dispatch.py --modes seed000 --echo-stacks

Hubs are found by their command line (`... serve --port N`); each scrape's size and
time are summarized at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx


def hub_ports() -> set[int]:
    ports = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and b"--port" in argv:
            try:
                ports.add(int(argv[argv.index(b"--port") + 1]))
            except (ValueError, IndexError):
                pass
    return ports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between scrapes")
    args = parser.parse_args()
    took: list[float] = []
    sizes: list[int] = []
    end = time.monotonic() + args.duration
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < end:
            started = time.monotonic()
            for port in hub_ports():
                try:
                    response = client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.HTTPError:
                    continue
                took.append(time.monotonic() - started)
                sizes.append(len(response.content))
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    if took:
        print(f"{len(took)} scrapes: median {statistics.median(took) * 1000:.1f} ms, "
              f"max {max(took) * 1000:.1f} ms, median size {statistics.median(sizes)} bytes")


if __name__ == "__main__":
    main()
