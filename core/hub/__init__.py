"""The imperative shell: trio actors that apply the scheduler's effects."""

from ._hub import Hub, Link

__all__ = ["Hub", "Link"]
