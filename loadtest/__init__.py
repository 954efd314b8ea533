"""Load tests for a real hub, driven by locust.

`run.py` is the entry point: it serves a hub, runs locust headless against it
with the users in `users.py`, and writes a report (`analysis.py`, `report.py`).
The locust side (`locustfile.py`, `users.py`, `plan.py`) runs under gevent and
imports no trio code; it learns what to do from a JSON plan the runner writes.
"""
