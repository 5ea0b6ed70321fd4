"""The namespace's work queue: actions handed to exactly one of several replicas.

Work items (``create``, ``start``, ``stop``, ... see ``ACTIONS``) go on a
Redis Stream (``store.keys.work_queue``, ``ss:{ns}:work``).  Replicas read it
through one consumer group (``GROUP``, ``replicas``) with ``XREADGROUP``, so
each item is delivered to one consumer and stays in its pending entries until
``finish`` acknowledges it, deletes it from the queue and appends its result
to ``store.keys.work_results`` (``ss:{ns}:results``), in one ``MULTI``/``EXEC``.
Items whose consumer stopped touching them (it died) are taken over by
another one with ``take_over`` (``XAUTOCLAIM``): delivery is at least once.
The layout of both streams is in docs/schema.md; ``statestore daemon`` is the
consumer this package ships (statestore/daemon/).

Every call makes one attempt and raises a :class:`StateStoreError` subclass
on failure (``StoreUnavailableError`` when Redis cannot be reached,
``StorePermissionError`` when its ACL refuses a command,
``InvalidArgumentError`` for bad input); no redis-py exception escapes.
Retrying is the caller's choice: ``submit`` and ``finish`` are not idempotent
(a retried ``submit`` after an unknown outcome may add the item twice).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson

from ._edge import text
from ._errors import InvalidArgumentError, StorePermissionError, StoreUnavailableError
from ._sync._clients import Client

if TYPE_CHECKING:
    from ._sync._store import Store

GROUP = "replicas"
ACTIONS = ("create", "start", "stop", "restart", "pause", "unpause", "kill", "rename", "remove", "exec")
#: results kept (approximately) on the results stream
RESULTS_MAXLEN = 100_000

T = TypeVar("T")


class Entry(NamedTuple):
    """One work item as read from the queue: its stream ID and its fields as text."""

    id: str
    fields: dict[str, str]


class Claimed(NamedTuple):
    """An item taken over from a consumer that stopped touching it."""

    id: str
    fields: dict[str, str]
    owner: str          # the consumer that had it
    deliveries: int     # how many times it has been delivered, this time included
    idle_ms: int        # how long its owner had not touched it


@dataclass(frozen=True)
class Result:
    """One finished work item, as a replica reported it on the results stream."""

    entry: str          # the result's own stream ID
    item: str           # the work item's ID
    replica: str
    action: str
    container: str
    ok: bool
    error: str
    conflicts: int      # commit attempts retried because a watched key changed
    duration_ms: float
    status: str         # the container's status after the action ("" if unknown, "removed")
    actions: int        # the container's statestore.actions counter after the action (-1 unknown)
    deliveries: int     # 1, or more when another replica took the item over

    @classmethod
    def from_entry(cls, entry_id: str, f: Mapping[str, str]) -> Result:
        def num(name: str, default: int = 0) -> int:
            try:
                return int(f.get(name, default))
            except ValueError:
                return default

        return cls(entry=entry_id, item=f.get("item", ""), replica=f.get("replica", ""),
                   action=f.get("action", ""), container=f.get("container", ""), ok=f.get("ok") == "1",
                   error=f.get("error", ""), conflicts=num("conflicts"),
                   duration_ms=float(f.get("duration_ms", "0") or 0), status=f.get("status", ""),
                   actions=num("actions", -1), deliveries=num("deliveries", 1))


class Pending(NamedTuple):
    """The consumer group's pending entries: how many, and how many per consumer."""

    total: int
    consumers: dict[str, int]


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREAD/XREADGROUP reply for one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [[entries]]}
        raw = next(iter(reply.values()))
        if raw and isinstance(raw[0], list) and (not raw[0] or isinstance(raw[0][0], list | tuple)):
            raw = raw[0]
    else:  # RESP2: [[stream, [entries]]]
        raw = reply[0][1]
    return [Entry(text(eid), {text(k): text(v) for k, v in (f or {}).items()}) for eid, f in raw]


def _block_ms(block: float | None) -> int | None:
    if block is None:
        return None
    if isinstance(block, bool) or not isinstance(block, int | float) or block < 0:
        raise InvalidArgumentError(f"block must be a non-negative number of seconds, not {block!r}")
    return max(1, int(block * 1000))


def _count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError(f"count must be a positive integer, not {count!r}")
    return count


class WorkQueue:
    """The work queue of ``store``'s namespace (see the module doc)."""

    def __init__(self, store: Store, group: str = GROUP) -> None:
        self.store = store
        self.group = group
        self.key = store.keys.work_queue
        self.results_key = store.keys.work_results
        self._client: Client = store.client
        self._engine = store._engine

    def _call(self, fn: Callable[[], T], key: str | None = None) -> T:
        """One attempt (the engine's ``once``): a failure is the statestore error a user should see."""
        try:
            return self._engine.once(fn, key or self.key)
        except StorePermissionError as exc:
            raise StorePermissionError(f"{exc} (the work queue's ACL commands: docs/operations.md, "
                                       "Access control)") from None

    # --- producers --------------------------------------------------------------------------
    def submit(self, action: str, container: str, **args: Any) -> str:
        """Put one work item on the queue; its ID (a stream entry ID).

        ``container`` is the container's full ID (for ``create``, the ID to give
        it).  ``args``: ``name`` and ``image`` (and ``labels``) for create, ``name``
        for rename, ``force`` for remove, ``cmd`` for exec; for any action
        ``hang=<seconds>`` (the runtime call hangs that long, holding the lock) or
        ``fail=True`` (the runtime call fails).
        """
        if action not in ACTIONS:
            raise InvalidArgumentError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        if not isinstance(container, str) or not container:
            raise InvalidArgumentError("container must be a container ID")
        try:
            payload = orjson.dumps(args)
        except TypeError as exc:
            raise InvalidArgumentError(f"work item arguments must be plain JSON data: {exc}") from None
        fields: dict[Any, Any] = {"action": action, "container": container, "args": payload,
                                  "submitted_ms": int(time.time() * 1000)}
        return text(self._call(lambda: self._client.xadd(self.key, fields)))

    def results(self, after: str = "0-0", count: int = 1000, block: float | None = None) -> list[Result]:
        """Results appended after the result entry ``after`` (``block`` seconds to wait for one)."""
        n, ms = _count(count), _block_ms(block)
        reply = self._call(lambda: self._client.xread({self.results_key: after}, count=n, block=ms),
                           self.results_key)
        return [Result.from_entry(e.id, e.fields) for e in _entries(reply)]

    # --- consumers ----------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the queue and its consumer group unless they exist."""
        try:
            self._call(lambda: self._client.xgroup_create(self.key, self.group, id="0", mkstream=True))
        except StoreUnavailableError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def register(self, consumer: str) -> None:
        """Make ``consumer`` visible in the group at once (``XREADGROUP`` creates it only on its first item)."""
        self._call(lambda: self._client.xgroup_createconsumer(self.key, self.group, consumer))

    def read(self, consumer: str, count: int, block: float) -> list[Entry]:
        """Up to ``count`` new items for ``consumer``, waiting up to ``block`` seconds for one.

        If the queue or its group was deleted meanwhile, they are created again
        and nothing is returned this time.
        """
        n, ms = _count(count), _block_ms(block)
        try:
            reply = self._call(lambda: self._client.xreadgroup(self.group, consumer, {self.key: ">"},
                                                               count=n, block=ms))
        except StoreUnavailableError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []
        return _entries(reply)

    def touch(self, consumer: str, ids: Sequence[str]) -> None:
        """Reset the idle time of ``consumer``'s items ``ids``, so no other consumer takes them over."""
        if ids:
            self._call(lambda: self._client.xclaim(self.key, self.group, consumer, 0, list(ids), justid=True))

    def take_over(self, consumer: str, idle: float, count: int) -> list[Claimed]:
        """Up to ``count`` items that other consumers have not touched for ``idle`` seconds, now
        ``consumer``'s.  Items deleted from the queue meanwhile are acknowledged and skipped."""
        n, idle_ms = _count(count), int(idle * 1000)
        pending = self._call(lambda: self._client.xpending_range(self.key, self.group, min="-", max="+",
                                                                 count=n * 4, idle=idle_ms))
        if not pending:
            return []
        owners = {text(p["message_id"]): (text(p["consumer"]), int(p["times_delivered"]),
                                        int(p["time_since_delivered"])) for p in pending}
        reply = self._call(lambda: self._client.xautoclaim(self.key, self.group, consumer, min_idle_time=idle_ms,
                                                           start_id="0-0", count=n))
        out = []
        for eid_raw, fields in (reply[1] if len(reply) > 1 else []):
            eid = text(eid_raw)
            if not fields:  # deleted from the stream: nothing to do
                self.ack(eid)
                continue
            owner, delivered, idle_was = owners.get(eid, ("?", 1, idle_ms))
            out.append(Claimed(eid, {text(k): text(v) for k, v in fields.items()}, owner, delivered + 1, idle_was))
        return out

    def ack(self, item: str) -> None:
        """Acknowledge ``item`` without a result (it is done, or nothing can be done with it)."""
        self._call(lambda: self._client.xack(self.key, self.group, item))

    def finish(self, item: str, result: Mapping[str, Any]) -> None:
        """Acknowledge ``item``, delete it from the queue and append ``result`` to the results
        stream (``Result``'s fields), in one ``MULTI``/``EXEC``."""
        def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.xack(self.key, self.group, item)
            pipe.xdel(self.key, item)
            fields: dict[Any, Any] = dict(result)
            pipe.xadd(self.results_key, fields, maxlen=RESULTS_MAXLEN, approximate=True)
            pipe.execute()
        self._call(run)

    # --- inspection ---------------------------------------------------------------------------
    def pending(self) -> Pending:
        """The group's items delivered and not yet finished, in all and per consumer."""
        p = self._call(lambda: self._client.xpending(self.key, self.group))
        if isinstance(p, dict):
            consumers = {text(c["name"]): int(c["pending"]) for c in (p.get("consumers") or [])}
            return Pending(int(p.get("pending") or 0), consumers)
        # without redis-py's reply callback: [count, first, last, [[consumer, count], ...]]
        return Pending(int(p[0] or 0), {text(name): int(n) for name, n in (p[3] or [])})

    def length(self) -> int:
        """How many items the queue holds (finished items are deleted from it)."""
        return int(self._call(lambda: self._client.xlen(self.key)))

    def delete(self) -> None:
        """Delete the queue, its group and the results stream (what ``fsck`` does not know)."""
        self._call(lambda: self._client.delete(self.key, self.results_key))

    def consumers(self) -> list[str]:
        """The names of the group's consumers (the replicas that have read from it)."""
        infos: Iterable[Any] = self._call(lambda: self._client.xinfo_consumers(self.key, self.group))
        return [text(c["name"]) for c in infos]


__all__ = ["ACTIONS", "GROUP", "RESULTS_MAXLEN", "Claimed", "Entry", "Pending", "Result", "WorkQueue"]
