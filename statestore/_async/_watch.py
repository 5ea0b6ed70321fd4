"""Watching the change log: ordered, exactly-once, resumable.

Theory of operation
-------------------
Every commit appends one entry per changed record to the namespace's change
log, a Redis Stream, inside the commit's own MULTI/EXEC (``apply.lua``).  An
entry's stream ID is its **revision**; entries also carry a **sequence
number** from a counter incremented in the same script, so consecutive
entries have consecutive numbers.  Pub/sub notifications are published by
the same script, but pub/sub drops messages while a subscriber is away, so
``watch`` reads the stream itself:

* It starts after ``since`` (a revision from a snapshot, a list, a commit or a
  previous event).  It looks ``since`` up to learn its sequence number; if
  that entry is gone, the log was trimmed past it and :class:`HistoryTrimmedError`
  is raised (like etcd's "required revision has been compacted" or the
  Kubernetes 410 Gone): the caller must relist.  ``since="0-0"`` means "from
  the very beginning", which is only possible while nothing was trimmed.
* It then reads with ``XREAD BLOCK`` from the last revision it processed, so
  entries arrive in commit order, each once.  Each entry's sequence number
  must be exactly one more than the previous one: a larger number means
  entries were trimmed before this watcher read them (HistoryTrimmedError,
  never a silent gap); a smaller or equal one means the log went backwards
  (a failover to a stale replica) and raises :class:`LogRegressionError`.
* A dropped connection is re-established with capped, jittered backoff and
  the read resumes from the last processed revision.  The watcher's client
  has redis-py's retries off, so a blocking read is never silently re-sent
  with the wrong position (see docs/design.md).  ``connected`` and the
  ``on_connection`` callback tell the caller when the connection was lost
  and when it is back (once per change).
* ``start`` is a position that need not be an entry (``"<ms>-0"``: from a
  time on): the watch starts after the last entry before it.  ``until`` ends
  the iteration at the first entry past it, or once the server's clock has
  passed it (``TIME``, asked after a read that found nothing).

Filters (kinds, ids, labels, names, types) are applied after those checks:
filtered events still advance the position, they are only not yielded.

Selectors (labels, names) make a watch report a record's way in and out:
an update that makes a container stop matching is yielded as ``leave``, one
that makes it start matching as ``enter`` (Kubernetes' watch cache sends a
DELETED and an ADDED for the same).  Whether the record matched before the
update is read from the entry itself: an update that changes a container's
name or labels carries ``prev``, the name and labels before it, so a watch
resumed from an old revision, which never saw the earlier state, decides
exactly; an update without ``prev`` changed neither.  Entries written by a
statestore from before ``prev`` never carry it: for those the watch falls back
to what it saw (a record it saw matching and that no longer matches leaves;
an entry into the selector is yielded as a plain ``update``).

Progress marks (``progress=seconds``) keep a filtered watch's resume point
fresh: when entries the filters dropped moved the position and nothing was
yielded for that long, the watch yields a ``progress`` event carrying only
the position (``revision``, ``seq``), like a Kubernetes bookmark.  Resuming
from it skips only entries this watch would not have yielded, so a consumer
that saves every revision it is given resumes after a quiet hour without
``HistoryTrimmedError`` while the log still holds that entry.

The sync face's watch is an iterator, closable from any thread; the async
face's is an async iterator (``async for``), closed with ``aclose()``, and a
task cancelled while it waits for entries drops the connection it waited on.
(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from .. import _codec
from .._edge import AUTH_ERRORS, RECONNECT_BACKOFF, RECONNECT_ERRORS, REDIS_ERROR, text, translate
from .._errors import (
    CorruptRecordError,
    HistoryTrimmedError,
    InvalidArgumentError,
    LogRegressionError,
    StateStoreError,
    StoreUnavailableError,
)
from .._events import (
    EVENT_TYPES,
    KINDS,
    PROGRESS,
    SELECTOR_TYPES,
    Event,
    Pending,
    choice,
    entry_fields,
    entry_key,
    id_list,
    label_matcher,
    labels_match,
    name_refs,
    parse_revision,
    previous_of,
    ref_matches,
    revision_key,
    seq_of,
)
from .._keys import KIND_CONTAINER, KIND_EXEC
from .._model import Container, ExecConfig
from .._synchronization import AsyncFlag
from ._clients import Client, derive_client, no_retries
from ._engine import AsyncEngine
from ._parts import StoreParts


class _ContainerLookup(Protocol):
    async def get(self, ref: str) -> Container: ...


class WatchSource(StoreParts, Protocol):
    """What a watch uses of the store that makes it (a ``Store``): its client (cloned for
    blocking reads), keys and record size cap, and container lookups (the name of an exec
    event's container, for a name selector)."""

    @property
    def containers(self) -> _ContainerLookup: ...


log = logging.getLogger("statestore.watch")

def _watch_client(client: Client, block: float) -> Client:
    """A client for blocking reads: raw bytes, no client-side retries, and a socket
    timeout a little longer than one blocking read, so a server that stops
    answering (paused, partitioned) is noticed and reconnected to."""
    derived = derive_client(client, max_connections=2, socket_timeout=block + 5.0,
                            retry=no_retries(), decode_responses=False)
    return client if derived is None else derived


class AsyncWatch(AsyncIterator[Event]):
    """An iterator over the change log after ``since``; see the module doc.

    Blocks until events arrive.  ``close()`` (from any thread) makes it stop
    within one ``block`` interval.  ``revision`` is the last processed revision.
    """

    def __init__(
        self,
        store: WatchSource,
        since: str | None = None,
        *,
        kinds: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        progress: float | None = None,
        block: float = 1.0,
        batch: int = 500,
        reconnect_timeout: float | None = None,
        start: str | None = None,
        until: str | None = None,
        on_connection: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._store = store
        self._kinds = choice("kinds", kinds, (KIND_CONTAINER, KIND_EXEC))
        self._types = choice("types", types, EVENT_TYPES + SELECTOR_TYPES)
        self._ids = None if ids is None else frozenset(id_list(ids))
        self._labels = label_matcher(labels)
        self._names = None if names is None else tuple(name_refs(names))
        if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)
                                     or not 0 <= progress < math.inf):
            raise InvalidArgumentError("progress must be a non-negative number of seconds (or None: no marks)")
        self._progress = progress
        #: records that matched the selectors when last seen (the fallback for entries without prev)
        self._inside: set[str] = set()
        #: container names, learned from the entries read (for a name selector on exec events)
        self._container_names: dict[str, str] = {}
        self._reported = ""  # the position the consumer was last given (an event or a mark)
        self._reported_at = time.monotonic()
        if isinstance(block, bool) or not isinstance(block, int | float) or not 0 < block <= 60:
            raise InvalidArgumentError("block must be a number of seconds in (0, 60]")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidArgumentError("batch must be a positive integer")
        if reconnect_timeout is not None and (isinstance(reconnect_timeout, bool) or not isinstance(
                reconnect_timeout, int | float) or not reconnect_timeout > 0):
            raise InvalidArgumentError("reconnect_timeout must be positive (or None: retry forever)")
        self._block_ms = max(1, int(block * 1000))
        self._batch = batch
        self._reconnect_timeout = reconnect_timeout
        self._client = _watch_client(store.client, float(block))
        self._owns_client = self._client is not store.client
        self._engine = AsyncEngine(self._client)  # its lean single-command path reads the log
        self._log = store.keys.log
        # events to yield, in order; an entry whose record is not needed yet (no selector
        # reads it) waits as a Pending and is decoded when it is yielded, so a batch of 500
        # entries never holds 500 parsed documents at once
        self._buffer: deque[Event | Pending] = deque()
        self._closed = AsyncFlag()
        if since is not None:
            parse_revision(since)
        if start is not None:
            parse_revision(start)
            if since is not None:
                raise InvalidArgumentError("give since or start, not both")
        if until is not None:
            parse_revision(until)
            low = since if since is not None else start
            if low is not None and revision_key(until) < revision_key(low):
                raise InvalidArgumentError(f"until ({until}) is before {'since' if since else 'start'} ({low})")
        if on_connection is not None and not callable(on_connection):
            raise InvalidArgumentError("on_connection must be callable")
        self._since_arg = since
        self._start_arg = start
        self._until = None if until is None else revision_key(until)
        self._on_connection = on_connection
        #: False from a lost connection until a command succeeds again
        self.connected = True
        self._ended = False
        self.revision: str | None = None
        self._rev_key = (0, 0)  # revision_key(self.revision), kept beside it
        self._seq: int | None = None
        self._started = False

    # --- position --------------------------------------------------------------------
    async def _start(self) -> None:
        since = self._since_arg
        if self._start_arg is not None:
            since = await self._position_before(self._start_arg)
            if since is None:  # just before the oldest entry, set by _position_before
                self._begun()
                return
        if since is None:
            # "from now": the newest entry is the position
            last = await self._call(lambda: self._client.xrevrange(self._log, "+", "-", count=1))
            if last:
                self.revision, self._seq = text(last[0][0]), seq_of(last[0][1])
            else:
                self.revision, self._seq = "0-0", 0
        elif since == "0-0":
            self.revision, self._seq = "0-0", 0
        else:
            entry = await self._call(lambda: self._client.xrange(self._log, since, since, count=1))
            if not entry:
                first = await self._first_available()
                last = await self._call(lambda: self._client.xrevrange(self._log, "+", "-", count=1))
                last_id = text(last[0][0]) if last else None
                if first is not None and revision_key(since) < revision_key(first):
                    raise HistoryTrimmedError(since, first)
                # within (or past) what the log holds, yet not in it: the log lost entries
                # (a failover to a replica that missed them, or an operator deleted it) --
                # relist, as after a regression (a made-up revision lands here too)
                raise LogRegressionError(since, last_id or "0-0", None, None)
            self.revision, self._seq = since, seq_of(entry[0][1])
        self._begun()

    def _begun(self) -> None:
        self._started = True
        self._rev_key = revision_key(self.revision or "0-0")
        self._reported = self.revision or ""  # the consumer knows where it started

    async def _position_before(self, start: str) -> str | None:
        """The newest entry before ``start`` ("0-0" if none); HistoryTrimmedError if
        entries that may have been at or after ``start`` were trimmed.  None when ``start``
        is the oldest entry left: the position is then set just before it."""
        if revision_key(start) == (0, 0):
            return "0-0"
        before = await self._call(lambda: self._client.xrevrange(self._log, f"({start}", "-", count=1))
        if before:
            return text(before[0][0])
        first = await self._call(lambda: self._client.xrange(self._log, "-", "+", count=1))
        first_seq = seq_of(first[0][1]) if first else None
        if first and first_seq is not None and first_seq > 1:
            first_id = text(first[0][0])
            if first_id != start:
                # entries before the first one were trimmed: some may have been after ``start``
                raise HistoryTrimmedError(start, first_id)
            ms, n = revision_key(first_id)  # all trimmed entries were before it: start just before
            self.revision = f"{ms}-{n - 1}" if n else f"{ms - 1}-{2**64 - 1}"
            self._seq = first_seq - 1
            return None
        return "0-0"

    async def _first_available(self) -> str | None:
        first = await self._call(lambda: self._client.xrange(self._log, "-", "+", count=1))
        return text(first[0][0]) if first else None

    # --- iteration ---------------------------------------------------------------------
    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Event:
        if not self._started:
            await self._start()
        while not self._buffer:
            if self._closed.is_set() or self._ended:
                raise StopAsyncIteration
            await self._fill()
        item = self._buffer.popleft()
        return self._given(self._event(*item) if isinstance(item, Pending) else item)

    def _given(self, ev: Event) -> Event:
        self._reported, self._reported_at = ev.revision, time.monotonic()
        return ev

    @property
    def ended(self) -> bool:
        """Whether ``until`` was reached: nothing more will be yielded."""
        return self._ended

    async def poll(self, timeout: float = 0.0) -> list[Event]:
        """Events available within ``timeout`` seconds (non-blocking with 0), possibly none."""
        if not self._started:
            await self._start()
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgumentError("timeout must be a non-negative number of seconds")
        deadline = time.monotonic() + timeout
        if not self._buffer:
            await self._fill(None)  # what is there already, without blocking
        while not self._buffer and not self._closed.is_set() and not self._ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # XREAD BLOCK 0 would wait forever: never ask for less than 1 ms
            await self._fill(max(1, min(self._block_ms, math.ceil(left * 1000))))
        out = [self._event(*x) if isinstance(x, Pending) else x for x in self._buffer]
        self._buffer.clear()
        if out:
            self._given(out[-1])
        return out

    async def _fill(self, block_ms: int | None = -1) -> None:
        if self._ended:
            return
        block = self._block_ms if block_ms == -1 else block_ms
        assert self.revision is not None
        rev = self.revision
        args: tuple[Any, ...] = ("XREAD", "COUNT", self._batch, "STREAMS", self._log, rev) if block is None else (
            "XREAD", "COUNT", self._batch, "BLOCK", block, "STREAMS", self._log, rev)
        # the engine's lean path (one packed command, the reply as hiredis parsed it), not client.xread
        reply = await self._call(lambda: self._engine.execute(*args))
        if not reply:
            if self._until is not None and not self._closed.is_set():
                now = await self._call(self._client.time)
                if now and int(now[0]) * 1000 + int(now[1]) // 1000 > self._until[0]:
                    self._ended = True  # the server's clock passed ``until``: nothing more can come
            self._mark()
            return
        if isinstance(reply, dict):  # RESP3: {stream: [entries]}
            entries = next(iter(reply.values()))
            if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], list | tuple):
                entries = entries[0]
        else:
            entries = reply[0][1]
        for entry_id, flat in entries:
            eid = text(entry_id)
            fields = entry_fields(flat)
            if self._until is not None and revision_key(eid) > self._until:
                self._ended = True
                break
            await self._accept(eid, fields)
        self._mark()

    def _mark(self) -> None:
        """Buffer a progress mark if marks are on, nothing is waiting to be yielded, the
        position moved past what the consumer was given, and the interval has passed."""
        if (self._progress is None or self._buffer or self.revision is None
                or self.revision == self._reported or self._closed.is_set()):
            return
        if time.monotonic() - self._reported_at < self._progress:
            return
        self._buffer.append(Event(type=PROGRESS, kind="", id="", name="", container_id="", version=0,
                                  status="", revision=self.revision,
                                  seq=self._seq if self._seq is not None else -1, record=None))

    async def _accept(self, entry_id: str, fields: dict[bytes, Any]) -> None:
        seq = seq_of(fields)
        if self._seq is not None and seq is not None:
            if seq > self._seq + 1:
                raise HistoryTrimmedError(self.revision or "0-0", entry_id,
                                          missing=seq - self._seq - 1)
            if seq <= self._seq:
                raise LogRegressionError(self.revision or "0-0", entry_id, self._seq, seq)
        key = entry_key(entry_id)
        if key <= self._rev_key:
            raise LogRegressionError(self.revision or "0-0", entry_id, self._seq, seq)
        self.revision, self._rev_key, self._seq = entry_id, key, seq
        kind = text(fields.get(b"kind"))
        if kind not in KINDS:
            log.warning("change-log entry %s has unknown kind %r; skipped", entry_id, kind)
            return
        if self._labels or self._names is not None:  # the selectors read the record now
            ev: Event | None = self._event(entry_id, seq, fields, kind)
            assert ev is not None
            ev = await self._selected(ev)
            if ev is not None and self._wanted(ev):
                self._buffer.append(ev)
            return
        # the filters that need no record: the record is decoded when the event is yielded
        if kind not in self._kinds or text(fields.get(b"type")) not in self._types:
            return
        if self._ids is not None:
            rid, container = text(fields.get(b"id")), text(fields.get(b"container"))
            if rid not in self._ids and container not in self._ids:
                if container or kind != KIND_EXEC:
                    return
                # an exec entry that does not name its container: the record does
                ev = self._event(entry_id, seq, fields, kind)
                if ev.container_id in self._ids:
                    self._buffer.append(ev)
                return
        self._buffer.append(Pending(entry_id, seq, fields, kind))

    def _event(self, entry_id: str, seq: int | None, f: dict[bytes, Any], kind: str) -> Event:
        raw = f.get(b"record", b"")
        raw = raw if type(raw) is bytes else str(raw).encode()
        rid = text(f.get(b"id"))
        record: Container | ExecConfig | None
        try:
            record = _codec.decode(kind, self._store.keys.record(kind, rid), raw, self._store.max_record_bytes)
        except (CorruptRecordError, InvalidArgumentError) as exc:
            log.warning("change-log entry %s holds an unreadable record: %s", entry_id, exc)
            record = None
        try:
            version = int(f.get(b"version") or 0)
        except ValueError:
            version = 0
        prev = f.get(b"prev")
        previous = previous_of(prev, entry_id) if prev is not None and kind == KIND_CONTAINER else None
        return Event(
            text(f.get(b"type")), kind, rid, text(f.get(b"name")),
            text(f.get(b"container")) or (rid if kind == KIND_CONTAINER else
                                           (record.container_id if isinstance(record, ExecConfig) else "")),
            version, text(f.get(b"status")), entry_id, seq if seq is not None else -1,
            record, raw, previous, text(f.get(b"action")) if b"action" in f else "",
        )

    def _wanted(self, ev: Event) -> bool:
        """The filters that do not depend on the record's state (kinds, types, ids)."""
        if ev.kind not in self._kinds or ev.type not in self._types:
            return False
        return self._ids is None or ev.id in self._ids or ev.container_id in self._ids

    async def _selected(self, ev: Event) -> Event | None:
        """``ev`` as the selectors see it: None if the record matches neither before nor
        after; an update that crosses the selector's edge as ``enter`` or ``leave``."""
        if ev.kind == KIND_CONTAINER and self._names is not None:
            if ev.type == "delete":
                self._container_names.pop(ev.id, None)
            else:
                self._container_names[ev.id] = ev.name
        now = await self._matches(ev, ev.name, ev.labels)
        if ev.type != "update" or ev.kind != KIND_CONTAINER:
            before = now
        elif ev.previous is not None:
            before = await self._matches(ev, *ev.previous)
        else:
            before = now or ev.id in self._inside  # unchanged, or an entry without prev (see the module doc)
        if ev.kind == KIND_CONTAINER:
            if now and ev.type != "delete":
                self._inside.add(ev.id)
            else:
                self._inside.discard(ev.id)
        if now and before:
            return ev
        if now:
            return replace(ev, type="enter")
        if before:
            return replace(ev, type="leave")
        return None

    async def _matches(self, ev: Event, name: str, labels: dict[str, str]) -> bool:
        if not labels_match(self._labels, labels):
            return False
        if self._names is None:
            return True
        if ev.kind == KIND_EXEC:  # an exec event is about its container (as docker's exec_* events)
            return self._name_match(ev.container_id, await self._name_of(ev.container_id))
        return self._name_match(ev.id, name)

    def _name_match(self, container_id: str, name: str) -> bool:
        """docker events' ``container=``: the container's ID or name, exactly or as a prefix."""
        assert self._names is not None
        return ref_matches(self._names, container_id, name)

    async def _name_of(self, container_id: str) -> str:
        """The name of an exec event's container: the last one read from the log, else
        looked up once in the store (its current name; "" if it is gone)."""
        if container_id not in self._container_names:
            try:
                self._container_names[container_id] = (await self._store.containers.get(container_id)).name
            except StateStoreError:
                self._container_names[container_id] = ""
        return self._container_names[container_id]

    # --- I/O with reconnects --------------------------------------------------------------
    async def _call(self, fn: Any) -> Any:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                result = await fn()
            except AUTH_ERRORS as exc:
                raise translate(exc, self._log) from None
            except RECONNECT_ERRORS as exc:
                if self._closed.is_set():
                    return []
                attempt += 1
                elapsed = time.monotonic() - started
                if self._reconnect_timeout is not None and elapsed >= self._reconnect_timeout:
                    raise StoreUnavailableError(
                        f"watch lost Redis and could not reconnect within {self._reconnect_timeout:g}s: {exc}"
                    ) from None
                delay = RECONNECT_BACKOFF.delay(attempt)
                log.info("watch: Redis connection lost (%s); retrying in %.3fs", exc, delay)
                if self.connected:
                    self.connected = False
                    self._notify(False, str(exc) or type(exc).__name__)
                await self._closed.wait(delay)
            except REDIS_ERROR as exc:
                raise translate(exc, self._log) from None
            except (TypeError, ValueError, AttributeError):
                # close() from another thread tore the socket down under a blocking read
                if self._closed.is_set():
                    return []
                raise
            else:
                if not self.connected:
                    self.connected = True
                    self._notify(True, "")
                return result

    def _notify(self, connected: bool, reason: str) -> None:
        if self._on_connection is None:
            return
        try:
            self._on_connection(connected, reason)
        except Exception:  # a caller's callback must not break the watch
            log.warning("watch: on_connection callback failed", exc_info=True)

    async def aclose(self) -> None:
        self._closed.set()
        if self._owns_client:
            try:
                await self._client.connection_pool.disconnect()
            except Exception:  # closing must not fail
                log.debug("closing the watch client failed", exc_info=True)

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncWatch", "Event", "parse_revision", "revision_key"]
