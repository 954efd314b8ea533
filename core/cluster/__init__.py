"""Several hubs on one PostgreSQL database: one leads (schedules), the others follow.

* `_election.py`: `Election`, the advisory-lock election with its term row, fencing
  and the leader's announcements channel.
* `_relay.py`: what a follower does with what only the leader can serve — worker
  WebSocket connections relayed byte for byte, other HTTP routes relayed request by
  request.
"""

from ._election import Election, Term

__all__ = ["Election", "Term"]
