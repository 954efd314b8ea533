"""Every listener honours the `backlog` setting (issue 15, item 6): the main port once
listened with hypercorn's 100 while the worker port had 1,024, and 1,000 simultaneous
upgrades overflowed it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import StartServer

from workyard import Settings
from workyard._errors import InvalidSetting


def listen_backlog(port: int) -> int:
    """The backlog the kernel holds for the listening socket on `port` (ss's Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read a backlog")
@pytest.mark.parametrize("backlog", [None, 2000], ids=["default", "set"])
async def test_the_main_port_and_the_worker_port_listen_with_the_backlog_setting(
    start_server: StartServer, hub_db: str, backlog: int | None
) -> None:
    settings = Settings(port=0, worker_port=0, db=hub_db,
                        **({} if backlog is None else {"backlog": backlog}))
    served = await start_server(settings)
    assert settings.backlog >= 1024
    expected = min(settings.backlog, somaxconn())
    main_port = httpx.URL(served.url).port
    worker_port = httpx.URL(served.hub.worker_url or "").port
    assert main_port and worker_port
    assert listen_backlog(main_port) == listen_backlog(worker_port) == expected


def test_a_backlog_out_of_range_stops_the_start_with_one_line() -> None:
    for bad in ("0", "-1", "70000", "many"):
        with pytest.raises(InvalidSetting, match=r"^--backlog .*: expected a whole number "
                                                 r"from 1 to 65535$"):
            Settings.from_env({}, backlog=bad)
