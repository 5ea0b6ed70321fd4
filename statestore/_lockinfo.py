"""What a lock is, as data: the held locks operators see, and the lock's limits (no I/O).

Shared by both faces' lock managers (``_async/_lock.py`` and the generated
``_sync/_lock.py``), so that ``store.locks()`` returns the same types in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidArgumentError

DEFAULT_WEDGED_AFTER = 30.0  # swarmkit reports its store lock as wedged after 30 s
#: how long a release's wake-up for the next waiter is kept (ms)
WAKE_TTL_MS = 2000


def positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
    if value != value or value == float("inf"):
        raise InvalidArgumentError(f"{name} must be finite, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A held lock, as operators see it (``store.locks()``, ``statestore locks``)."""

    container_id: str
    token: int
    replica: str
    host: str
    pid: int
    acquired_ms: int
    age: float        # seconds since acquisition (server clock)
    ttl_left: float   # seconds until it expires unless renewed
    wedged: bool      # held longer than the store's ``wedged_after``



class LockList(list[LockInfo]):
    """The held locks of a namespace, oldest first, and ``unreadable``: lock keys the
    read found but could not report (released between the scan and the read, or not
    a lock record: ``statestore fsck`` tells which)."""

    def __init__(self, items: list[LockInfo] | None = None, unreadable: int = 0) -> None:
        super().__init__(items or ())
        self.unreadable = unreadable


__all__ = ["DEFAULT_WEDGED_AFTER", "WAKE_TTL_MS", "LockInfo", "LockList", "positive"]
