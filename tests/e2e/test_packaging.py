"""The built wheel holds every module of the source tree, and its package data: the
simulator's scenarios and the dashboard's files (pages, styles, vendored uPlot)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: where each top-level source folder lands in the installed package
SOURCES = {"core": "workyard", "sim": "workyard/sim"}


def source_files() -> set[str]:
    """Every module and packaged data file of the source tree, as its path in the wheel."""
    files = set()
    for folder, target in SOURCES.items():
        root = REPO / folder
        for path in root.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            relative = path.relative_to(root)
            if folder == "core" and relative.parts[0] == "sim":
                continue
            dashboard = folder == "core" and relative.parts[:2] == ("http", "static")
            if path.suffix == ".py" or path.match("scenarios/*.toml") or dashboard:
                files.add(f"{target}/{relative.as_posix()}")
    return files


def test_the_wheel_holds_every_module_scenario_and_dashboard_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = tmp_path.glob("workyard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = source_files() - shipped
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "workyard/sim/scenarios/uniform.toml" in shipped
    assert any(name.startswith("workyard/scheduling/") for name in shipped)
    for static in ("index.html", "app.js", "pages/overview.js", "vendor/uPlot.iife.min.js"):
        assert f"workyard/http/static/{static}" in shipped
