"""Run every benchmark, each in its own process with a time limit, then update RESULTS.md.

    python benchmarks/run_all.py            # the full set: 3 runs each (about 10 minutes)
    python benchmarks/run_all.py --quick    # 1 small run each, to check they work (~2 minutes)

Each benchmark writes benchmarks/results/<name>.json; report.py renders those
into the table of benchmarks/RESULTS.md. A benchmark that fails or runs out of
time is reported and the others still run; the exit status is then 1. A benchmark that
ran but missed a target (exit status 3) is reported as a MISS, never as "ok"; misses
alone leave the exit status 0, since a small --quick run is not expected to meet them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MISSED  # a benchmark's exit status when it ran but missed a target

HERE = Path(__file__).resolve().parent

#: (script, result name, full arguments, quick arguments, time limit in seconds for the
#: full set); the result name is the JSON file's, unique even when a script runs twice
BENCHMARKS: list[tuple[str, str, list[str], list[str], float]] = [
    ("scheduler.py", "scheduler", [], ["--runs", "1", "--blocks", "3", "--block", "500"], 300),
    ("store.py", "store", [], ["--repeats", "1", "--tasks", "2000"], 300),
    ("connections.py", "connections", ["--runs", "3"],
     ["--runs", "1", "--connections", "1000"], 900),
    ("dispatch.py", "dispatch", ["--runs", "3"],  # with its latency-vs-rate curve
     ["--runs", "1", "--tasks", "5000", "--latency-seconds", "2", "--curve-seconds", "1"],
     1800),
    ("polling.py", "polling", ["--runs", "3"],
     ["--runs", "1", "--tasks", "5000", "--latency-seconds", "2"], 900),
    ("poll_latency.py", "poll_latency", ["--rounds", "1000"],
     ["--rounds", "100", "--submits", "200"], 300),
    ("demo_fleet.py", "demo_fleet", ["--runs", "3"], ["--runs", "1", "--tasks", "2000"], 300),
    ("peer_celery.py", "peer_celery", [], ["--tasks", "2000", "--mixed", "40"], 600),
    ("demo_fleet.py", "demo_fleet_worker_port", ["--runs", "3", "--worker-port"],
     ["--runs", "1", "--tasks", "2000", "--worker-port"], 300),
    # needs PostgreSQL (WORKYARD_TEST_POSTGRES, default the local one)
    ("failover.py", "failover", ["--runs", "5"],
     ["--runs", "1", "--workers", "20", "--warmup", "2", "--after", "2", "--outage", "3"],
     900),
    # needs RabbitMQ, and stops and starts it once (rabbitmqctl) in the middle
    ("events.py", "events", ["--runs", "3"],
     ["--runs", "1", "--events", "2000", "--seconds", "2", "--cycles", "200"], 600),
    ("sim_big.py", "sim_big", [], ["--scale", "0.02"], 1200),
    ("clearml_registry.py", "clearml", ["--runs", "3", "--queries", "10"],
     ["--runs", "1", "--seconds", "3", "--stats-workers", "10", "--hours", "2", "--days", "3",
      "--queries", "3"], 1500),
]


def outcome(code: int | str) -> str:
    """How run_all tells a benchmark's end: ok, a missed target, or a failure."""
    if code == 0:
        return "ok"
    if code == MISSED:
        return "MISS: ran, but missed a target (see its last line)"
    return f"FAILED ({code if isinstance(code, str) else f'exit status {code}'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one small run each; results go to $TMPDIR/workyard-bench-quick")
    parser.add_argument("--only", nargs="+", help="run only these scripts (e.g. dispatch.py)")
    args = parser.parse_args(argv)

    failed, missed = [], []
    for script, name, full, quick, limit in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        extra = quick if args.quick else full
        results = HERE / "results"
        if args.quick:  # results go to a scratch directory, not over the latest full set
            results = Path(tempfile.gettempdir()) / "workyard-bench-quick"
            results.mkdir(parents=True, exist_ok=True)
        extra = [*extra, "--out", str(results / f"{name}.json")]
        print(f"== {script} {' '.join(extra)}", flush=True)
        t0 = time.monotonic()
        try:
            code = subprocess.run([sys.executable, str(HERE / script), *extra], cwd=HERE,
                                  timeout=limit, check=False).returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {limit:g} s"
        print(f"== {name}: {outcome(code)} in {time.monotonic() - t0:.0f} s", flush=True)
        if code == MISSED:
            missed.append(name)
        elif code != 0:
            failed.append(name)
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "report.py")], check=True)
    if missed:
        print(f"missed a target: {', '.join(missed)}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
