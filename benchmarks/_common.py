"""What every benchmark script shares: starting a hub process, CPU accounting, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MISSED",
    "RESULTS_DIR",
    "Hub",
    "cpu_seconds",
    "free_port",
    "machine",
    "median",
    "percentile",
    "raise_fd_limit",
    "rss_bytes",
    "run_hub",
    "runqueue_wait",
    "stop_process",
    "system_cpu_seconds",
    "target",
    "thread_cpu_seconds",
    "wait_for_port",
    "write_result",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None,
                  timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def system_cpu_seconds(pid: int) -> float:
    """The system (kernel) part of `cpu_seconds`: syscalls, e.g. socket and file I/O."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[12]) / _TICKS


def thread_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of the process's main thread alone (a trio hub's event loop): the
    rest is its worker threads' (the store's writer, reads)."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def runqueue_wait(pid: int) -> float:
    """Seconds the threads of a process have spent so far ready to run but waiting for a
    core (the kernel's schedstat): beside its CPU time, how much a loaded machine held it
    back."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit(want: int) -> int:
    """Raise this process's (and its children's) open-file limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Hub:
    """A `workyard serve` process."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, db: str) -> None:
        self.proc = proc
        self.port = port
        self.db = db
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def run_hub(db: str, *extra: str, profile: str | None = None,
            stop_timeout: float = 10.0, log: Path | None = None) -> Iterator[Hub]:
    """Start the hub in its own process (as a user would: the `workyard serve` command).

    `profile`: a file for py-spy's collapsed stacks (`pip install py-spy`); the hub
    then runs under `py-spy record`, so its CPU figures include the sampler.
    `log`: where its stderr goes (default "{db}.log", beside a SQLite file).
    """
    port = free_port()
    # WORKYARD_BENCH_HUB: another entry point with `workyard`'s arguments, e.g. a script
    # that patches the hub first, for before/after runs under the same conditions.
    entry = os.environ.get("WORKYARD_BENCH_HUB", "-m workyard.cli").split()
    cmd = [sys.executable, *entry, "serve", "--port", str(port), "--db", db,
           "--log-level", "WARNING", *extra]
    if profile:
        spy = Path(sys.executable).parent / "py-spy"
        cmd = [str(spy) if spy.exists() else "py-spy", "record", "--format", "raw",
               "--rate", "200", "--output", profile, "--", *cmd]
    log_path = log or Path(f"{db}.log")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=log_file)
        try:
            wait_for_port(port, proc)
            yield Hub(proc, port, db)
        finally:
            stop_process(proc, stop_timeout)
    if proc.returncode != 0:  # show why, then let the caller's exception (if any) go on
        sys.stderr.write(f"hub exited with {proc.returncode}:\n"
                         + log_path.read_text(errors="replace")[-4000:])


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0,
                 sig: int = signal.SIGINT) -> None:
    """Ask `proc` to stop (SIGINT: the hub's graceful shutdown); kill it after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def median_of(values: Sequence[Any]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def end_to_end_summary(hubs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of what `_producer.end_to_end` measured: peak and half-peak latency."""
    lats = [h["latency"] or {} for h in hubs]
    peak = [h["peak"] for h in hubs]
    return {
        "tasks_per_s": median_of([p["tasks_per_s"] for p in peak]),
        "hub_cpu_us_per_task": median_of([p["hub_cpu_us_per_task"] for p in peak]),
        "hub_cpu": median_of([p["hub_cpu"] for p in peak]),
        "clients_cpu": median_of([p["clients_cpu"] for p in peak]),
        "latency_rate": median_of([x.get("rate") for x in lats]),
        "latency_p50_ms": median_of([x.get("p50_ms") for x in lats]),
        "latency_p99_ms": median_of([x.get("p99_ms") for x in lats]),
        "dispatch_p50_ms": median_of([x.get("dispatch_p50_ms") for x in lats]),
        "dispatch_p99_ms": median_of([x.get("dispatch_p99_ms") for x in lats]),
        "latency_hub_cpu": median_of([x.get("hub_cpu") for x in lats]),
        "stored_p50_ms": median_of([x.get("sampled_stored_p50_ms") for x in lats]),
        "stored_p99_ms": median_of([x.get("sampled_stored_p99_ms") for x in lats]),
    }


#: exit status of a benchmark that ran but missed a target: run_all.py reports it as a
#: miss, never as "ok"
MISSED = 3


def target(value: float | None, op: str, limit: float) -> tuple[bool, str]:
    """Whether `value` meets `op limit` ("<=" or ">="), and how a result line says so,
    e.g. "(target <= 1.5: MISS)". No value (the measurement failed) is a miss."""
    met = value is not None and (value <= limit if op == "<=" else value >= limit)
    return met, f"(target {op} {limit:g}: {'ok' if met else 'MISS'})"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_result(name: str, result: dict[str, Any], out: str | None = None) -> Path:
    """Write `result` (whose "machine" was taken at the start) adding the load at the end."""
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
