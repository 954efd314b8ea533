"""Benchmark result lines say whether a target was met: a miss is never "ok"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _common import MISSED, target
from dispatch import LATENCY_TARGETS
from report import _latency_rows
from run_all import BENCHMARKS as RUNS
from run_all import outcome


def test_a_ratio_just_above_its_ceiling_is_a_miss() -> None:
    assert target(1.52, "<=", 1.5) == (False, "(target <= 1.5: MISS)")
    assert target(1.5, "<=", 1.5) == (True, "(target <= 1.5: ok)")


def test_a_rate_below_its_floor_or_missing_is_a_miss() -> None:
    assert target(1999, ">=", 2000)[0] is False
    assert target(None, ">=", 2000) == (False, "(target >= 2000: MISS)")
    assert target(2500, ">=", 2000)[0] is True


def test_run_all_tells_a_miss_from_ok_and_from_a_failure() -> None:
    assert outcome(0) == "ok"
    assert outcome(MISSED).startswith("MISS")
    assert outcome(1) == "FAILED (exit status 1)"
    assert outcome("timed out after 300 s") == "FAILED (timed out after 300 s)"


def test_every_benchmark_run_writes_its_own_result_file() -> None:
    names = [name for _, name, *_ in RUNS]
    assert len(names) == len(set(names))


def test_a_half_peak_latency_above_its_target_is_missed_and_the_curve_is_shown() -> None:
    measured = {"latency_rate": 2000, "latency_hub_cpu": 0.6, "latency_p50_ms": 4.0,
                "latency_p99_ms": 30.0, "dispatch_p50_ms": 3.0, "dispatch_p99_ms": 80.0,
                "stored_p50_ms": 8.0, "stored_p99_ms": 90.0,
                "curve": [{"share": 0.1, "rate": 400, "dispatch_p50_ms": 2.0,
                           "dispatch_p99_ms": 9.0, "hub_cpu": 0.1}]}
    dispatched, stored, curve = _latency_rows("seed 000", measured, LATENCY_TARGETS)
    assert dispatched.endswith("| **missed** |")  # p99 80 ms against < 50
    assert stored.endswith("| met |")  # p99 90 ms against < 100
    assert "10 % (400/s): 2 / 9 ms" in curve


def test_the_clearml_rows_say_met_or_missed_for_each_of_its_four_targets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import report

    summary = {"reports_per_s": 2999, "ingest_p99_ms": 12.0, "hub_cpu_us_per_report": 300,
               "inprocess_reports_per_s": 5000, "inprocess_p99_ms": 9.0,
               "inprocess_cpu_us_per_report": 200, "get_stats_p50_ms": 99.0,
               "get_stats_month_p50_ms": 250.0}
    fake = {"machine": {}, "summary": summary,
            "settings": {"workers": 1000, "stats_workers": 100, "days": 30.0, "seconds": 30.0}}
    monkeypatch.setattr(report, "_load", lambda name: fake if name == "clearml" else None)
    lines, _ = report.rows()
    clearml = [line for line in lines if "clearml" in line]
    assert "1,000 workers, 14 metrics, 30 s runs |" in clearml[0]
    assert [line.rsplit("|", 2)[-2].strip() for line in clearml] == [
        "**missed**", "-", "met", "**missed**"]
