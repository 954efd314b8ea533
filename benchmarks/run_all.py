"""Run every benchmark, each in its own process with a time limit, then update RESULTS.md.

    python benchmarks/run_all.py            # the full set: 3 runs each (about 10 minutes)
    python benchmarks/run_all.py --quick    # 1 small run each, to check they work (~2 minutes)

Each benchmark writes benchmarks/results/<name>.json; report.py renders those
into the table of benchmarks/RESULTS.md. A benchmark that fails or runs out of
time is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, full arguments, quick arguments, time limit in seconds for the full set)
BENCHMARKS: list[tuple[str, list[str], list[str], float]] = [
    ("scheduler.py", [], ["--runs", "1", "--blocks", "3", "--block", "500"], 300),
    ("store.py", [], ["--repeats", "1", "--tasks", "2000"], 300),
    ("connections.py", ["--runs", "3"], ["--runs", "1", "--connections", "1000"], 900),
    ("dispatch.py", ["--runs", "3"],
     ["--runs", "1", "--tasks", "5000", "--latency-seconds", "2"], 1200),
    ("polling.py", ["--runs", "3"],
     ["--runs", "1", "--tasks", "5000", "--latency-seconds", "2"], 900),
    ("poll_latency.py", ["--rounds", "1000", "--out", str(HERE / "results/poll_latency.json")],
     ["--rounds", "100"], 300),
    ("demo_fleet.py", ["--runs", "3"], ["--runs", "1", "--tasks", "2000"], 300),
    ("demo_fleet.py", ["--runs", "3", "--worker-port"],
     ["--runs", "1", "--tasks", "2000", "--worker-port"], 300),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one small run each; results go to $TMPDIR/workyard-bench-quick")
    parser.add_argument("--only", nargs="+", help="run only these scripts (e.g. dispatch.py)")
    args = parser.parse_args(argv)

    failed = []
    for script, full, quick, limit in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        extra = quick if args.quick else full
        if args.quick:  # results go to a scratch directory, not over the latest full set
            scratch = Path(tempfile.gettempdir()) / "workyard-bench-quick"
            scratch.mkdir(parents=True, exist_ok=True)
            extra = [*extra, "--out", str(scratch / script.replace(".py", ".json"))]
        print(f"== {script} {' '.join(extra)}", flush=True)
        t0 = time.monotonic()
        try:
            code = subprocess.run([sys.executable, str(HERE / script), *extra], cwd=HERE,
                                  timeout=limit).returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {limit:g} s"
        print(f"== {script}: {'ok' if code == 0 else code} in {time.monotonic() - t0:.0f} s",
              flush=True)
        if code != 0:
            failed.append(script)
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "report.py")], check=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
