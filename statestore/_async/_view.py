"""A watch-fed local view of a namespace (the informer pattern).

Theory of operation
-------------------
``View`` lists every record at a revision (``snapshot``: one atomic script),
then applies the change log from that revision (``watch``) in a background
thread.  Lookups and lists are served from memory with the store's rules and
errors (exact ID, exact name, unique ID prefix; ``docker ps`` filters), so a
replica answers ``ps``/``inspect`` without a round trip.

* Records are kept as their stored bytes and decoded on every read, so each
  caller gets its own copy, as from the store.  Beside them the view keeps the
  store's index members in sorted lists (``_memindex``), kept up with the
  same ``_indexes.diff`` a commit applies, so ``list`` runs the store's
  planner against memory and ``get`` bisects the name and ID indexes.
* A record is replaced only by a strictly newer version, so the view never
  shows a record older than one it showed before -- not even across a relist
  after the log was trimmed past the view's position (HistoryTrimmedError):
  newer records replace older ones, records missing from the new list are gone.
* The one exception is the store itself going back in time: when the log went
  backwards (LogRegressionError: a failover or a restart lost commits the view
  had applied), the view relists *authoritatively*, adopting what Redis holds
  now even where it is older than what it showed, because serving records and
  versions that no longer exist anywhere would be worse.  ``regressions``
  counts these relists (and a warning is logged), so a caller that must react
  to lost state can check it; the view never does this silently.
* ``view.revision`` is the last applied revision; ``wait_for(revision)``
  blocks until the view has caught up with it (read-your-writes: pass the
  ``revision`` of a record a commit returned).

The follower is a thread in the sync face and a task in the async face; reads (``get``,
``list``, ``execs``) never do I/O and are plain calls in both.  The tables are in
``_viewtable``.  (Written in ``statestore/_async``; ``statestore/_sync`` has the
generated sync face.)
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson

from .. import _codec, _filters, _indexes
from .._edge import RECONNECT_BACKOFF
from .._errors import (
    CorruptRecordError,
    HistoryTrimmedError,
    LogRegressionError,
    StoreUnavailableError,
)
from .._events import Event, revision_key
from .._keys import KIND_CONTAINER, KIND_EXEC
from .._model import Container, ExecConfig
from .._results import RecordList, finish_list
from .._synchronization import AsyncFlag, AsyncSignal, AsyncWorker
from .._viewtable import Planned, Rec, Table
from ._parts import StoreParts
from ._watch import AsyncWatch


class ViewSource(StoreParts, Protocol):
    """What a View uses of the store that makes it (a ``Store``): the keys, the record size
    cap, the atomic read everything is listed with, and watches."""

    async def _fetch(self, groups: builtins.list[tuple[str, str, Any]], warnings: builtins.list[str] | None = None,
               ) -> tuple[str | None, builtins.list[builtins.list[tuple[str, Any]]]]: ...

    def watch(self, since: str | None = None, *, block: float = 1.0) -> AsyncWatch: ...


log = logging.getLogger("statestore.view")


class AsyncView:
    """An in-process, watch-fed copy of every record of a namespace."""

    def __init__(self, store: ViewSource, *, block: float = 0.5) -> None:
        self._store = store
        self._block = block
        self._containers = Table(KIND_CONTAINER)
        self._execs = Table(KIND_EXEC)
        # readers take the lock itself (a C-level enter/exit); the follower also notifies
        # waiters through the condition over it
        self._lock = threading.RLock()
        self._cond = AsyncSignal(self._lock)
        self._revision = "0-0"   # the newest revision applied (what wait_for compares)
        self._position = "0-0"   # where the watch resumes
        self._error: BaseException | None = None
        self._closed = AsyncFlag()
        self._watch: AsyncWatch | None = None
        self.relists = 0
        # validated queries and their plans, by the caller's arguments (pure functions of them)
        self._plans: dict[Any, Planned] = {}
        #: relists after the change log went backwards (state older than shown was adopted)
        self.regressions = 0
        self._worker = AsyncWorker(self._run, name="statestore-view")

    async def _open(self) -> AsyncView:
        """List everything, then start following the change log (``Store.view``)."""
        await self._relist()
        self._worker.start()
        return self

    # --- feeding --------------------------------------------------------------------
    async def _relist(self, authoritative: bool = False) -> None:
        """Re-read everything.  ``authoritative``: the log went backwards (a failover
        lost writes), so what Redis holds now wins even over newer versions we showed:
        serving records the store no longer has would be worse."""
        rev, groups = await self._store._fetch([
            (KIND_CONTAINER, "ranges", [(_indexes.everything("id"),)]),
            (KIND_EXEC, "ranges", [(_indexes.everything("id"),)]),
        ])
        if rev is None:
            raise CorruptRecordError(self._store.keys.log, "holds a value of the wrong Redis type")
        # per record only its row (raw bytes and index members), not its parsed document (a
        # relist of 100,000 containers would otherwise hold every document at once)
        fresh: dict[str, list[Rec]] = {KIND_CONTAINER: [], KIND_EXEC: []}
        for table, pairs in ((self._containers, groups[0]), (self._execs, groups[1])):
            kind = table.kind
            for rid, raw in pairs:
                key = self._store.keys.record(kind, rid)
                try:
                    rec = _codec.decode(kind, key, raw, self._store.max_record_bytes)
                except CorruptRecordError as exc:
                    log.warning("view: skipping %s", exc)
                    continue
                fresh[kind].append(table.record(rid, rec.version, bytes(raw), rec._d))
        with self._cond:
            for kind, table in ((KIND_CONTAINER, self._containers), (KIND_EXEC, self._execs)):
                seen = set()
                for new in fresh[kind]:
                    seen.add(new.id)
                    held = table.rows.get(new.id)
                    if held is None:
                        table.rows[new.id] = new
                    elif held.version < new.version or (authoritative and held.raw != new.raw):
                        # the holder stays (the index is rebuilt below from every holder's members)
                        held.version, held.raw, held.created = new.version, new.raw, new.created
                        held.status, held.pairs = new.status, new.pairs
                for rid in [r for r in table.rows if r not in seen]:
                    del table.rows[rid]  # deleted since the view's position
                table.reindex()  # one sort per index field, not an insertion per record
            self._position = rev  # the next watch starts here, even if the log went backwards
            if authoritative or revision_key(rev) > revision_key(self._revision):
                self._revision = rev
            self._cond.notify_all()

    def _apply(self, ev: Event) -> None:
        table = self._containers if ev.kind == KIND_CONTAINER else self._execs
        with self._cond:
            if ev.type == "delete":
                table.remove(ev.id, ev.version)
            elif ev.type in ("create", "update") and ev.record is not None:
                # the watch parsed and validated the record: its document is only read
                table.put(ev.id, ev.version, ev.raw, ev.record._d)
            # any other event type (selector or progress events) carries no change to apply
            self._position = ev.revision
            if revision_key(ev.revision) > revision_key(self._revision):
                self._revision = ev.revision
            self._cond.notify_all()

    async def _run(self) -> None:
        while not self._closed.is_set():
            watch = None
            try:
                watch = self._store.watch(since=self._position, block=self._block)
                with self._cond:  # close() either sees this watch or we see that it ran
                    self._watch = watch
                    if self._closed.is_set():
                        return
                async for ev in watch:
                    self._apply(ev)
                return  # closed
            except (HistoryTrimmedError, LogRegressionError) as exc:
                if self._closed.is_set():
                    return
                log.warning("view: %s; relisting", exc)
                self.relists += 1
                if isinstance(exc, LogRegressionError):
                    self.regressions += 1
                if not await self._relist_until_done(isinstance(exc, LogRegressionError)):
                    return
            except BaseException as exc:  # the view cannot go on: make waiters and readers see it
                if not self._closed.is_set():
                    self._fail(exc)
                return
            finally:
                if watch is not None:
                    await watch.aclose()

    async def _relist_until_done(self, authoritative: bool) -> bool:
        """Relist, retrying while Redis is unreachable; False if the view must stop."""
        failures = 0
        while not self._closed.is_set():
            try:
                await self._relist(authoritative)
                return True
            except StoreUnavailableError as exc:
                failures += 1
                delay = RECONNECT_BACKOFF.delay(failures)
                log.warning("view: relist failed (%s); retrying in %.2fs", exc, delay)
                await self._closed.wait(delay)
            except BaseException as exc:
                self._fail(exc)
                return False
        return False

    def _fail(self, exc: BaseException) -> None:
        log.error("view stopped: %s", exc)
        with self._cond:
            self._error = exc
            self._cond.notify_all()

    # --- reading --------------------------------------------------------------------------
    @property
    def revision(self) -> str:
        """The last change-log revision applied to the view."""
        return self._revision

    async def wait_for(self, revision: str, timeout: float | None = None) -> bool:
        """Block until the view has applied ``revision``; False on timeout."""
        target = revision_key(revision)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while revision_key(self._revision) < target:
                if self._error is not None:
                    raise self._error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                await self._cond.wait(remaining)
        return True

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def get(self, ref: str) -> Container:
        """Like ``store.containers.get``, from memory."""
        if self._error is not None:
            raise self._error
        table = self._containers
        # full ID: one dict lookup, no lock (only the holder's raw bytes are read: one attribute)
        found = table.rows.get(ref) if type(ref) is str and len(ref) == 64 else None
        if found is None:
            with self._lock:
                found = table.resolve(ref)
        rec: Container = Container._from_valid_bytes(found.raw)
        return rec

    def get_exec(self, ref: str) -> ExecConfig:
        """Like ``store.execs.get``, from memory."""
        self._check()
        with self._lock:
            raw = self._execs.resolve(ref).raw
        rec: ExecConfig = ExecConfig._from_valid_bytes(raw)
        return rec

    def list(self, filters: Mapping[str, Iterable[str] | str] | None = None, all: bool = False,
             limit: int | None = None) -> RecordList[Container]:
        """Like ``store.containers.list``, from memory (``.revision`` is the view's).

        The same planner as the store (``_filters.plan``), answered from the
        in-memory indexes (``_memindex``).  When every filter key is one the
        indexes answer exactly (``_filters.EXACT_KEYS``: label, status, the
        default "running only"; before/since compare ``Created``), the clauses
        are intersected and no record is parsed; otherwise only the smallest
        clause's records are decoded and matched, then sorted and cut as the
        store does (``_results.finish_list``).
        """
        if self._error is not None:
            raise self._error
        try:
            fkey: Any = None
            if filters is not None:
                # the arguments as given when every value is a string (the common case: cheap),
                # else by content (a list's contents, not the list object, decide the plan)
                fkey = tuple(filters.items())
                for _, v in fkey:
                    if type(v) is not str:
                        fkey = frozenset((k, v if isinstance(v, str) else tuple(v)) for k, v in filters.items())
                        break
            key: Any = (fkey, all, limit)
            planned = self._plans.get(key)
        except (TypeError, AttributeError):  # not hashable: validated (and refused) by make_query below
            key, planned = None, None
        if planned is None:
            planned = Planned.of(_filters.make_query(filters, all, limit))
            if key is not None:
                if len(self._plans) >= 256:
                    self._plans.clear()
                self._plans[key] = planned
        q, clauses = planned.query, planned.clauses
        f = q.filters
        before = self.get(f["before"][0]).created if "before" in f else None
        since = self.get(f["since"][0]).created if "since" in f else None
        fld = None if clauses else _filters.scan_field(q)
        table = self._containers
        statuses = planned.statuses
        with self._lock:
            rows = table.rows
            exact: builtins.list[Rec] | None = table.index.select(planned.indexed) if planned.exact else None
            if exact is not None:
                # the indexes answer the whole query: no record is parsed, only sorted by Created
                hits = []
                for rec in exact:
                    if statuses is None or rec.status in statuses:
                        hits.append((rec.created, rec.id, rec.raw))
                rev = self._revision
            elif fld is not None:
                ids = [_indexes.member_id(m) for m in table.index.all_members(fld)
                       if _filters.member_matches(q, fld, m)]
            else:
                ids = table.index.candidates(clauses)
            if exact is None:
                raws = [rows[rid].raw for rid in ids if rid in rows]
                rev = self._revision
        if exact is None:
            return finish_list(q, [orjson.loads(raw) for raw in raws], rev, (), before, since)
        if before is not None:
            hits = [h for h in hits if h[0] < before]
        if since is not None:
            hits = [h for h in hits if h[0] > since]
        hits.sort(reverse=True)  # (Created, Id) newest first, as _filters.sort_key
        if q.limit is not None:
            hits = hits[: q.limit]
        return RecordList(Container._all_from_valid_bytes([raw for _, _, raw in hits]), rev)

    def execs(self, container: str | None = None) -> builtins.list[ExecConfig]:
        """Every exec in the view, or those of one container (a reference)."""
        self._check()
        cid = self.get(container).id if container is not None else None
        table = self._execs
        with self._lock:
            if cid is None:
                raws = [rec.raw for rec in table.rows.values()]
            else:
                found = table.index.select([(_indexes.exact("container", cid),)]) or []
                raws = [rec.raw for rec in sorted(found, key=lambda r: r.id)]  # in ID order, as the index
        return [ExecConfig(orjson.loads(r)) for r in raws]

    def __len__(self) -> int:
        return len(self._containers.rows)

    # --- lifecycle ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        with self._cond:
            self._closed.set()
            watch = self._watch
        if watch is not None:
            await watch.aclose()
        await self._worker.join(timeout=5)

    async def __aenter__(self) -> AsyncView:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncView", "ViewSource"]
