"""The public API is deliberate: these names, and no others, are what users import.

Changing a list here is changing the API; do it on purpose.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "workyard": [
        "UNCHANGED", "Attempt", "Conflict", "Dispatch", "Effect", "Finished", "Hub",
        "InvalidInput", "InvalidSetting", "Link", "Liveness", "NotFound", "Outcome", "Policy",
        "QueueView", "Requeued", "SQLiteStore", "Scheduler", "Session", "Settings", "Store",
        "StoreError", "Subscription", "Task", "TaskState", "TooLarge", "Unauthorized",
        "Unavailable", "WorkerState", "WorkerView", "WorkyardError", "build_app",
        "queue_views", "serve", "worker_views",
    ],
    "workyard.events": [
        "Event", "EventStream", "Missed", "TaskCancelled", "TaskDispatched", "TaskFinished",
        "TaskRequeued", "TaskSubmitted", "WorkerAttached", "WorkerCapacityChanged",
        "WorkerDetached",
    ],
    "workyard.client": [
        "AsyncProducer", "Handler", "Handlers", "HubError", "Job", "PollingWorker", "Producer",
        "Worker", "WorkerRejected",
    ],
    "workyard.sim": [
        "RunResult", "Scenario", "ScenarioError", "SpecificityOracle", "WorkerStats",
        "coefficient_of_variation", "fairness", "jain_index", "load_scenario", "max_min_ratio",
        "percentile", "shipped_scenarios", "simulate", "summarize", "write_outputs",
    ],
    "workyard.testing": ["MemoryStore", "RecordingLink"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_public_module_exports_exactly_its_pinned_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_defined_in_private_modules_or_their_own(module: str) -> None:
    """Public names come from underscored modules (trio's style) or the public module
    itself: the module a name is defined in never becomes API by accident."""
    imported = importlib.import_module(module)
    for name in imported.__all__:
        origin = getattr(getattr(imported, name), "__module__", None)
        if origin is None or not origin.startswith("workyard"):
            continue  # constants, and names from other libraries
        assert origin == module or any(p.startswith("_") for p in origin.split(".")), (
            name, origin)


def test_the_clients_import_without_the_server_stack() -> None:
    """A worker or a producer never serves: importing `workyard.client` leaves quart
    and hypercorn unloaded (`workyard.serve` and `build_app` load them on first use)."""
    code = ("import sys, workyard.client; "
            "print(sorted(m for m in ('quart', 'hypercorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
