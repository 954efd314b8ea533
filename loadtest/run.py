"""Run a load test: `python loadtest/run.py SCENARIO [--duration 60s] [--users N] [--out DIR]`.

1. Reads SCENARIO (a simulator scenario name like `uniform`, or a TOML path),
   writes it with this run's duration, drain and scale as scenario.toml, and
   turns that into a locust plan.
2. Serves `workyard serve` on a free loopback port with a temporary database.
3. Runs locust headless with the plan's users (more than one locust process when
   one would be the bottleneck and the machine has cores to spare). Producers
   submit for `--duration`; locust stops once the hub has drained, or after
   `--drain` more seconds. `GET /workers` is snapshotted throughout.
4. Stops the hub, reads every task it recorded, runs the simulator on the same
   scenario, and writes report.md / report.json beside locust's HTML report and
   CSVs in the output folder.

Every run ends by itself within duration + drain + start-up (at most 15 s for
the fleet to attach, and a few seconds more), and all traffic stays on the
loopback interface. Exit status 0 means every
submitted task ended final and no task went to a less specific worker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: what a run imports or starts, by module, and the package that brings it
REQUIREMENTS = {"workyard": "workyard", "httpx": "httpx", "trio": "trio",
                "locust": "locust", "websocket": "websocket-client"}
INSTALL = "pip install -e '.[load]'"


def missing_requirements(find: Any = importlib.util.find_spec) -> list[str]:
    """The packages of REQUIREMENTS this interpreter cannot import."""
    return [package for module, package in REQUIREMENTS.items() if find(module) is None]


def _require() -> None:
    """Refuse to start, in one line saying how to install them, if packages are missing:
    checked before anything is imported or started, so nothing runs for nothing."""
    missing = missing_requirements()
    if missing:
        print(f"loadtest/run.py: {', '.join(missing)} not installed for {sys.executable}; "
              f"install them from the repository root with: {INSTALL} (in the virtualenv "
              "you run this with, e.g. .venv/bin/" + INSTALL + ")", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    _require()

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest import report, scenario
from loadtest.analysis import Snapshot, summarize
from loadtest.plan import ATTACH_LIMIT, Plan
from workyard import SQLiteStore, Task
from workyard.sim import load_scenario

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
REPO = HERE.parent
#: seconds the hub may take to start and report its URL
HUB_START = 20.0
#: seconds locust may take to start and to write its reports, beyond duration + drain
LOCUST_SLACK = 20.0
SNAPSHOT_EVERY = 0.5
#: seconds between progress lines when the console is not a terminal
PROGRESS_EVERY_PIPE = 10.0
#: tasks/s one locust process drives on one core: measured ~1.5 ms of locust CPU per task
#: (submit, WebSocket receive and answer, result long-poll) at 100 tasks/s
TASKS_PER_PROCESS = 600
USERS_PER_PROCESS = 500
#: workers one run may play: each is a locust user with its own connection
MAX_WORKERS = 2000


def seconds(text: str) -> float:
    """`90`, `90s`, `2m`, `1m30s` → seconds."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?",
                         text.strip())
    if not text.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 60s, 2m)")
    h, m, s = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + s


def locust_processes(rate: float, workers: int, cpus: int | None = None) -> int:
    """As many locust processes as the load needs, leaving one core for the hub."""
    cpus = cpus or os.cpu_count() or 1
    needed = max(math.ceil(rate / TASKS_PER_PROCESS), math.ceil(workers / USERS_PER_PROCESS))
    return max(1, min(needed, cpus - 1))


# --- the hub -------------------------------------------------------------------------


@dataclass
class Hub:
    process: subprocess.Popen[bytes]
    url: str
    db: Path

    @classmethod
    def start(cls, db: Path, log: Path, *, poll_liveness: float) -> Hub:
        """`workyard serve` on a free loopback port; its log goes to `log`."""
        cmd = [sys.executable, "-m", "workyard.cli", "serve", "--host", "127.0.0.1",
               "--port", "0", "--db", str(db), "--poll-liveness", f"{poll_liveness:g}"]
        with log.open("wb") as sink:
            process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + HUB_START
        while time.monotonic() < deadline:
            found = re.search(r"serving on (http://\S+)", log.read_text(errors="replace"))
            if found:
                return cls(process, found.group(1), db)
            if process.poll() is not None:
                break
            time.sleep(0.05)
        _stop(process)
        raise RuntimeError(f"the hub did not start; see {log}")

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (a clean shutdown: the store flushes), then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _read_tasks(db: Path) -> list[Task]:
    """Every task the hub stored, with its attempts (through the store's public API)."""
    store = SQLiteStore(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        tasks = await store.tasks.find(name=None, state=None, limit=2**62)
        nursery.cancel_scope.cancel()
    return tasks


# --- locust --------------------------------------------------------------------------


def start_locust(plan: Plan, plan_file: Path, url: str, out: Path,
                 processes: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
           "--host", url, "--users", str(plan.users), "--spawn-rate", str(max(plan.users, 1)),
           "--run-time", f"{math.ceil(ATTACH_LIMIT + plan.duration + plan.drain + 5)}s",
           "--csv", str(out / "locust"), "--html", str(out / "locust.html"),
           "--json-file", str(out / "locust"), "--exit-code-on-error", "0", "--only-summary"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    env = {**os.environ, "WORKYARD_LOAD_PLAN": str(plan_file)}
    with (out / "locust.log").open("wb") as sink:
        return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO, start_new_session=True)


def snapshot_workers(url: str, stop: threading.Event) -> list[Snapshot]:
    """`GET /workers` every SNAPSHOT_EVERY seconds until `stop` is set."""
    snapshots: list[Snapshot] = []
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while not stop.is_set():
            at = time.time()
            try:
                workers = client.get("/workers").json()["workers"]
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            else:
                snapshots.append(Snapshot(at, workers))
            stop.wait(SNAPSHOT_EVERY)
    return snapshots


class Progress:
    """Live progress of a run on the console: elapsed of the planned time, tasks done,
    their rate, and what the hub holds. On a terminal one line is rewritten every
    second; otherwise a line is printed every PROGRESS_EVERY_PIPE seconds. `finish`
    leaves a one-line summary."""

    def __init__(self, url: str, duration: float, drain: float, stream: Any = None) -> None:
        self.url = url
        self.duration, self.drain = duration, drain
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.line = ""

    def line_for(self, elapsed: float, queues: dict[str, Any]) -> str:
        done = sum(q.get("processed", 0) + q.get("failed", 0) for q in queues.values())
        queued = sum(q.get("queued", 0) for q in queues.values())
        running = sum(q.get("running", 0) for q in queues.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        return (f"{elapsed:4.0f} s (load {self.duration:g} s + drain <= {self.drain:g} s): "
                f"{done:,} tasks done "
                f"({rate:,.1f}/s), {queued:,} queued, {running:,} running")

    def run(self, stop: threading.Event) -> None:
        every = 1.0 if self.tty else PROGRESS_EVERY_PIPE
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not stop.wait(every):
                self._show(client)
            self._show(client, final=True)

    def _show(self, client: httpx.Client, final: bool = False) -> None:
        try:
            queues = client.get("/queues").json()["queues"]
        except (httpx.HTTPError, ValueError, KeyError):
            queues = None
        if queues is not None:
            self.line = self.line_for(time.monotonic() - self.start, queues)
        if not self.line:
            return
        if self.tty:
            self.stream.write("\r" + self.line.ljust(79) + ("\n" if final else ""))
        else:
            self.stream.write(self.line + "\n")
        self.stream.flush()


def wait_for_locust(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return -signal.SIGKILL


# --- the run -------------------------------------------------------------------------


@dataclass
class Played:
    """What a played plan left behind."""

    tasks: list[Task]
    snapshots: list[Snapshot]
    queues: dict[str, Any]
    locust_code: int


def prepare(args: argparse.Namespace) -> tuple[Path, Path, Plan, int]:
    """Write scenario.toml and plan.json: (output folder, scenario file, plan, processes)."""
    name, raw = scenario.read_source(args.scenario)
    out = Path(args.out or REPO / "out" / "load" /
               f"{name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    (out / "ids").mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "ids").glob("*.txt"), out / "drain.json", out / "locust.json"]:
        stale.unlink(missing_ok=True)  # an earlier run into the same folder
    scenario_file = out / "scenario.toml"
    scenario_file.write_text(scenario.to_toml(scenario.effective(
        raw, duration=args.duration, drain=args.drain, workers=args.users)))
    parsed = load_scenario(scenario_file)
    if parsed.worker_count > MAX_WORKERS:
        raise SystemExit(f"{name} has {parsed.worker_count} workers; a load test plays at most "
                         f"{MAX_WORKERS} (try --users {MAX_WORKERS // 4})")
    plan = scenario.load_plan(parsed, out=out, producers=1)
    processes = args.processes or locust_processes(plan.rate, parsed.worker_count)
    if processes > 1:  # a producer per stream in every process
        plan = scenario.load_plan(parsed, out=out, producers=processes)
    plan.dump(out / "plan.json")
    return out, scenario_file, plan, processes


def play(plan: Plan, out: Path, processes: int) -> Played:
    """Serve a hub, run locust against it until it drained, then read what the hub stored."""
    with tempfile.TemporaryDirectory(prefix="workyard-load-") as tmp:
        db = Path(tmp) / "hub.db"
        hub = Hub.start(db, out / "hub.log", poll_liveness=scenario.POLL_LIVENESS)
        try:
            locust = start_locust(plan, out / "plan.json", hub.url, out, processes)
            stop = threading.Event()
            seen: list[list[Snapshot]] = []
            watcher = threading.Thread(
                target=lambda: seen.append(snapshot_workers(hub.url, stop)), daemon=True)
            watcher.start()
            progress = threading.Thread(target=Progress(
                hub.url, plan.duration, plan.drain).run, args=(stop,),
                daemon=True)
            progress.start()
            try:
                code = wait_for_locust(
                    locust, ATTACH_LIMIT + plan.duration + plan.drain + LOCUST_SLACK)
            finally:
                stop.set()
                watcher.join()
                progress.join()
            try:
                queues = httpx.get(f"{hub.url}/queues", timeout=5.0).json()["queues"]
            except (httpx.HTTPError, ValueError, KeyError):
                queues = {}
        finally:
            hub.stop()
        return Played(trio.run(_read_tasks, db), seen[0] if seen else [], queues, code)


def run(args: argparse.Namespace) -> int:
    out, scenario_file, plan, processes = prepare(args)
    print(f"load test {plan.scenario!r}: {plan.users} locust users in {processes} "
          f"process{'es' if processes > 1 else ''}, {plan.rate:g} tasks/s offered for "
          f"{plan.duration:g} s, drain limit {plan.drain:g} s -> {out}", flush=True)
    if args.plan_only:
        print(f"wrote {scenario_file} and {out / 'plan.json'}")
        return 0
    played = play(plan, out, processes)
    submitted = {line for f in (out / "ids").glob("*.txt")
                 for line in f.read_text().split() if line}
    drain = _read_json(out / "drain.json")
    held = sum(q.get("queued", 0) + q.get("running", 0) for q in played.queues.values())
    summary = summarize(plan, played.tasks, submitted, played.snapshots, held=held,
                        load_start=drain.get("load_start") if drain else None)
    simulated = ((None, "skipped (--no-sim)") if args.no_sim
                 else scenario.simulate(scenario_file, out / "sim"))
    written = report.write(out, plan, summary, drain=drain, locust_code=played.locust_code,
                           processes=processes, queues=played.queues, simulated=simulated)
    print(written.read_text())
    print(f"report: {written}")
    if (out / "locust.html").exists():
        print(f"locust's report: {out / 'locust.html'}")
    else:
        print(f"locust wrote no report (it exited with {played.locust_code}); the end of "
              f"{out / 'locust.log'}:\n" + _tail(out / "locust.log"))
    ok = (summary.submitted > 0 and not summary.lost and not summary.unfinished
          and not summary.violations)
    return 0 if ok else 1


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python loadtest/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", help="simulator scenario name (e.g. uniform) or a TOML file")
    parser.add_argument("--duration", type=seconds, default=60.0,
                        help="how long producers submit (default 60s)")
    parser.add_argument("--drain", type=seconds, default=60.0,
                        help="how long the hub may take afterwards to finish every task "
                        "(default 60s; the run ends as soon as it has)")
    parser.add_argument("--users", type=int, metavar="N",
                        help="scale the scenario to about N workers (arrival rates alike)")
    parser.add_argument("--processes", type=int,
                        help="locust processes (default: as many as the load needs, "
                        "leaving a core for the hub)")
    parser.add_argument("--out", help="output folder (default out/load/SCENARIO-TIME)")
    parser.add_argument("--plan-only", action="store_true",
                        help="write scenario.toml and plan.json, run nothing (to drive a hub "
                        "of your own with locust)")
    parser.add_argument("--no-sim", action="store_true",
                        help="skip the simulator's figures for the same scenario")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
