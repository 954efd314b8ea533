"""The simulator's `big` scenario (10,000 workers, ~1 M tasks, the hub's policy): wall
and CPU seconds of one run, and the sha256 of its metrics.json, which must not change
for the same seed unless a change means to.

    python benchmarks/sim_big.py                 # the full scenario, seed 1 (minutes)
    python benchmarks/sim_big.py --scale 0.05    # a small run, to check it works

Each run is `workyard sim big --seed S` in a process of its own, timed from outside;
CPU seconds are the child's user + system time, the figure to compare on a loaded
machine. Target: under 60 s of wall time for the full scenario.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MISSED, ROOT, machine, median, target, write_result

#: the full scenario's target, wall seconds
TARGET_WALL = 60.0


def run_once(seed: int, scale: float, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "workyard.sim", "big", "--seed", str(seed),
                        "--scale", str(scale), "--out", out, "--no-plots", "-q"],
                       cwd=ROOT, check=True, timeout=timeout)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        metrics = (Path(out) / "metrics.json").read_bytes()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "metrics_sha256": hashlib.sha256(metrics).hexdigest()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="worker counts and rates (the target holds for 1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(),
                              "settings": {"seed": args.seed, "scale": args.scale,
                                           "runs": args.runs}}
    try:
        runs = [run_once(args.seed, args.scale, args.timeout) for _ in range(args.runs)]
    except subprocess.TimeoutExpired:
        print(f"big (scale {args.scale:g}): a run took longer than --timeout {args.timeout:g} s "
              f"(load {os.getloadavg()[0]:.1f}); nothing written", file=sys.stderr)
        return 1
    hashes = sorted({r["metrics_sha256"] for r in runs})
    result["runs"] = runs
    result["summary"] = {"wall_s": median([r["wall_s"] for r in runs]),
                         "cpu_s": median([r["cpu_s"] for r in runs]),
                         "metrics_sha256": hashes[0] if len(hashes) == 1 else hashes,
                         "target_wall_s": TARGET_WALL}
    path = write_result("sim_big", result, args.out)
    met, verdict = target(result["summary"]["wall_s"], "<=", TARGET_WALL)
    if args.scale != 1:
        verdict = "(a scaled run: the target is for the full scenario)"
    s = result["summary"]
    print(f"big (scale {args.scale:g}, seed {args.seed}): {s['wall_s']} s wall, "
          f"{s['cpu_s']} s CPU {verdict}; metrics.json sha256 {s['metrics_sha256']}; "
          f"load {result['machine']['load_avg_start'][0]} → "
          f"{result['machine']['load_avg_end'][0]}; wrote {path}")
    if len(hashes) > 1:
        print("runs with the same seed gave different metrics.json", file=sys.stderr)
        return 1
    return 0 if met or args.scale != 1 else MISSED


if __name__ == "__main__":
    sys.exit(main())
