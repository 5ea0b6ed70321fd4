"""``Store.fsck``: check a namespace against the invariants of docs/schema.md, and repair it.

Theory of operation
-------------------
1. **Read** (:func:`read_namespace`).  ``SCAN MATCH ss:{ns}:*`` walks the
   namespace (to the end, then the keys are read in batches).  Each batch
   of keys costs two pipelined round trips: the
   ``TYPE`` of every key, then the values that matter (``GET`` for strings,
   ``ZRANGE 0 -1 WITHSCORES`` for sorted sets; for other types the type is
   all there is to check).  Writers are not stopped, so on a busy namespace
   the result is not one instant: a commit made during the scan can show up
   as a problem that is not one.  So when a scan finds problems, a second
   scan confirms them, and only problems both found (same code, key and
   record) are reported: a real violation stays until someone fixes it, a
   commit seen half-way does not repeat.  Repairs never rely on the scans
   anyway (step 3).
2. **Check** (:func:`analyze`, pure).  Every record is decoded with the codec
   (the checks of a read), the index members each readable record implies
   are computed with ``_indexes``, and they, the name keys and ``ExecIDs``
   are compared with what was read.  A record that cannot be decoded is
   reported and then left out of every other check: what it implies is
   unknown, so its name key, index members and execs are neither missing nor
   stale.  Each problem the records determine a fix for is attached to a
   repair task: one per record (its name key, its index members, its
   ``ExecIDs``), one per missing record that index members still point at,
   one per dangling name key with no container of that name, one per index
   key of the wrong type, one per output log whose container is missing.
3. **Repair** (:func:`repair`).  Each task is one commit-engine transaction:
   it WATCHes and re-reads the record (and the name key, the name's holder,
   the execs involved), recomputes the fix from what it read, and applies it
   in one MULTI/EXEC with ops built like the repositories' (``_write``), so a
   concurrent commit makes it run again and a fix never rests on a stale
   scan.  A fix that changes a record (its ``ExecIDs``) bumps the version and
   logs a change event like any commit; name and index fixes leave records
   as they are.  An output log is deleted only while its container's record
   (watched) is still missing.  Nothing deletes a record's data: corrupt records, records of
   a newer schema, wrong-type keys other than indexes, and keys the schema
   does not define are reported with the redis-cli command to look at them.

An index key of the wrong type is rebuilt in two transactions, a ``DEL`` and
then the members of every record (watched): ``apply.lua`` checks the type of
every sorted set a plan writes before it runs anything, so the ``DEL`` and the
``ZADD``s cannot share one plan.  Between the two the index is empty, where
before it made every read of it fail.

The checks and the report are pure (``_fsckcheck``); this module reads and repairs.
(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import _codec, _indexes
from .._edge import REDIS_ERROR, Plan, text, translate
from .._errors import CorruptRecordError, NameInUseError, StateStoreError, StorePermissionError
from .._fsckcheck import (
    _REREAD_TRIES,
    SCAN_COUNT,
    Analysis,
    FsckReport,
    Scanned,
    _finish,
    _LogsTask,
    _NameTask,
    _OwnerlessTask,
    _RebuildTask,
    _RecordTask,
    _Task,
    _zadd,
    _zrem,
    analyze,
)
from .._keys import KIND_CONTAINER, KIND_EXEC
from .._model import ID_RE, META, Container, ExecConfig
from ._clients import redis_cli
from ._engine import AsyncTx
from ._parts import StoreParts


class _Writer(Protocol):
    def _write(self, plan: Plan, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None: ...


class FsckSource(StoreParts, Protocol):
    """What fsck uses of the store it checks (a ``Store``): its namespace, keys, record size
    cap, client and engine, and the containers' commit planning (repairs write as commits do)."""

    @property
    def containers(self) -> _Writer: ...


def _scored(reply: Any) -> list[tuple[bytes, float]]:
    """A raw ``ZRANGE ... WITHSCORES`` reply as (member, score) pairs: flat under RESP2,
    pairs under RESP3."""
    items = list(reply or ())
    if items and isinstance(items[0], list | tuple):
        return [(bytes(m), float(sc)) for m, sc in items]
    return [(bytes(items[i]), float(items[i + 1])) for i in range(0, len(items), 2)]


async def read_namespace(store: FsckSource) -> Scanned:
    """Every key of the namespace with its type and (for strings and sorted sets) value."""
    engine = store._engine
    pattern = store.keys.match_all

    async def pipelined(cmds: list[tuple[Any, ...]]) -> list[Any]:
        async def run() -> list[Any]:
            replies = await engine.execute_many(cmds)
            for r in replies:
                # a refusal is no property of the key: raise it (StorePermissionError), do not report it
                if isinstance(r, REDIS_ERROR) and isinstance(translate(r), StorePermissionError):
                    raise r
            return replies
        return await engine.read(run)

    async def read_batch(keys: list[Any]) -> dict[bytes, tuple[str, Any]]:
        got: dict[Any, tuple[str, Any]] = {}
        for _ in range(_REREAD_TRIES):  # a key whose type changed between TYPE and its read is read again
            types = [text(t) for t in await pipelined([("TYPE", k) for k in keys])]
            reads = [(k, t) for k, t in zip(keys, types, strict=True) if t in ("string", "zset")]
            values = await pipelined([("GET", k) if t == "string" else ("ZRANGE", k, 0, -1, "WITHSCORES")
                                      for k, t in reads])
            value_of = {k: v for (k, _t), v in zip(reads, values, strict=True)}
            again: list[Any] = []
            for k, t in zip(keys, types, strict=True):
                if t == "none":
                    continue  # deleted since the SCAN
                v = value_of.get(k)
                if isinstance(v, Exception):
                    again.append(k)
                elif t == "string" and v is None:
                    continue  # deleted between TYPE and GET
                elif t == "zset":
                    got[k] = (t, _scored(v))
                else:
                    got[k] = (t, v)
            if not again:
                break
            keys = again
        return got

    out: Scanned = {}
    keys = await engine.scan_keys(pattern, SCAN_COUNT)
    for i in range(0, len(keys), SCAN_COUNT):
        for k, tv in (await read_batch(keys[i:i + SCAN_COUNT])).items():
            out[text(k)] = tv
    return out


class _Repairer:
    def __init__(self, store: FsckSource) -> None:
        self.store = store
        self.keys = store.keys
        self.max = store.max_record_bytes

    def decode(self, kind: str, rid: str, raw: Any) -> Any:
        return _codec.decode(kind, self.keys.record(kind, rid), raw, self.max)

    def body(self, task: _Task) -> Callable[[AsyncTx], Awaitable[Plan]] | list[Callable[[AsyncTx], Awaitable[Plan]]]:
        if isinstance(task, _RecordTask):
            return functools.partial(self.record, task)
        if isinstance(task, _OwnerlessTask):
            return functools.partial(self.ownerless, task)
        if isinstance(task, _NameTask):
            return functools.partial(self.name, task)
        if isinstance(task, _LogsTask):
            return functools.partial(self.orphan_logs, task)
        assert isinstance(task, _RebuildTask)
        return [functools.partial(self.drop_index, task), functools.partial(self.rebuild, task)]

    async def record(self, task: _RecordTask, tx: AsyncTx) -> Plan:
        keys, kind, rid = self.keys, task.kind, task.rid
        rkey = keys.record(kind, rid)
        plan = tx.plan(rkey)
        (raw,) = await tx.read([rkey])
        if raw is None:  # deleted since the scan, with its name and index members
            return _finish(plan)
        rec = self.decode(kind, rid, raw)
        plan.expected = plan.actual = rec.version
        if task.name_fix:
            await self.plan_name(tx, plan, rec)
        implied = _indexes.entries(kind, rec._d)
        for fld in sorted(task.add_fields | task.stale.keys()):
            ikey = keys.index(kind, fld)
            wanted = implied.get(fld, set())
            wanted_b = {m.encode() for m in wanted}
            _zrem(plan, ikey, (m for m in task.stale.get(fld, ()) if m not in wanted_b))
            if fld in task.add_fields and wanted:
                _zadd(plan, ikey, wanted)
        if task.execids_fix and kind == KIND_CONTAINER:
            await self.plan_exec_ids(tx, plan, task, rec)
        return _finish(plan)

    async def plan_name(self, tx: AsyncTx, plan: Plan, rec: Container) -> None:
        name, cid = rec.name, rec.id
        nkey = self.keys.name(name)
        (holder,) = await tx.read([nkey])
        if holder is not None:
            h = text(holder)
            if h == cid:
                return
            if ID_RE.fullmatch(h):
                (hraw,) = await tx.read([self.keys.container(h)])
                if hraw is not None and self.decode(KIND_CONTAINER, h, hraw).name == name:
                    raise NameInUseError(name, h)
        plan.add("SET", nkey, cid)

    async def plan_exec_ids(self, tx: AsyncTx, plan: Plan, task: _RecordTask, rec: Container) -> None:
        cid, listed = rec.id, rec.exec_ids
        candidates = [x for x in dict.fromkeys([*listed, *sorted(task.exec_candidates)])
                      if x not in task.unreadable_execs]
        raws = await tx.read([self.keys.exec(x) for x in candidates])
        state: dict[str, str] = {}
        for xid, xraw in zip(candidates, raws, strict=True):
            if xraw is None:
                state[xid] = "gone"
                continue
            try:
                x: ExecConfig = self.decode(KIND_EXEC, xid, xraw)
            except CorruptRecordError:
                state[xid] = "unknown"
                continue
            state[xid] = "mine" if x.container_id == cid else "other"
        new: list[str] = []
        for xid in listed:
            if xid not in new and state.get(xid, "unknown") in ("mine", "unknown"):
                new.append(xid)
        new += [x for x in sorted(task.exec_candidates) if state.get(x) == "mine" and x not in new]
        if new == listed:
            return
        doc = rec.to_dict()
        doc["ExecIDs"] = new or None
        doc[META]["Version"] = rec.version + 1
        self.store.containers._write(plan, KIND_CONTAINER, rec._d, doc)

    async def ownerless(self, task: _OwnerlessTask, tx: AsyncTx) -> Plan:
        kind, rid = task.kind, task.rid
        plan = Plan(key=self.keys.record(kind, rid) if rid else self.keys.index(kind, "id"))
        implied: set[bytes] = set()
        if rid is not None:
            (raw,) = await tx.read([self.keys.record(kind, rid)])
            if raw is not None:  # created since the scan: keep what it implies
                for ms in _indexes.entries(kind, self.decode(kind, rid, raw)._d).values():
                    implied |= {m.encode() for m in ms}
        for fld, members in sorted(task.stale.items()):
            _zrem(plan, self.keys.index(kind, fld), (m for m in members if m not in implied))
        return _finish(plan)

    async def name(self, task: _NameTask, tx: AsyncTx) -> Plan:
        plan = Plan(key=task.key)
        (holder,) = await tx.read([task.key])
        if holder is None:
            return _finish(plan)
        h = text(holder)
        if ID_RE.fullmatch(h):
            (hraw,) = await tx.read([self.keys.container(h)])
            if hraw is not None and self.decode(KIND_CONTAINER, h, hraw).name == task.name:
                return _finish(plan)  # holds its container now
        plan.add("DEL", task.key)
        return _finish(plan)

    async def orphan_logs(self, task: _LogsTask, tx: AsyncTx) -> Plan:
        """Delete a container's output log unless the container exists (again): its record is
        watched, so a create of that ID before the EXEC makes the repair run again."""
        plan = Plan(key=task.key)
        (raw,) = await tx.read([self.keys.container(task.rid)])
        if raw is None:
            plan.add("DEL", task.key)
        return _finish(plan)

    async def drop_index(self, task: _RebuildTask, tx: AsyncTx) -> Plan:
        plan = Plan(key=task.key)
        plan.add("DEL", task.key)
        return _finish(plan)

    async def rebuild(self, task: _RebuildTask, tx: AsyncTx) -> Plan:
        kind = task.kind
        plan = Plan(key=task.key)
        raws = await tx.read([self.keys.record(kind, rid) for rid in task.record_ids])
        members: set[str] = set()
        for rid, raw in zip(task.record_ids, raws, strict=True):
            if raw is None:
                continue
            try:
                members |= _indexes.entries(kind, self.decode(kind, rid, raw)._d).get(task.index_field, set())
            except CorruptRecordError:
                continue  # became unreadable: what it implies is unknown
        _zadd(plan, task.key, members)
        return _finish(plan)


async def repair(store: FsckSource, analysis: Analysis) -> None:
    """Run every repair task of ``analysis``, each in its own transaction; mark the problems it fixed."""
    engine = store._engine
    fixer = _Repairer(store)
    if not analysis.events_ok:
        # such a commit fails (and apply.lua checks the counter more loosely than INCR reads it, so some
        # values, e.g. "1.5" or "012", pass its check and the commit applies half-way): don't try
        for task in analysis.tasks:
            if isinstance(task, _RecordTask) and task.execids_fix:
                task.execids_fix = False
                for p in task.problems:
                    if p.code.startswith("exec"):
                        p.error = ("the fix commits the container, and the change log or its sequence "
                                   "counter cannot take the change event; fix them first")
    for task in analysis.tasks:
        bodies = fixer.body(task)
        try:
            for body in bodies if isinstance(bodies, list) else [bodies]:
                await engine.transact(body)
        except StateStoreError as exc:
            for p in task.problems:
                p.error = p.error or f"the repair failed: {exc}"
            continue
        for p in task.problems:
            if p.error is None:
                p.repaired = True


async def run_fsck(store: FsckSource, repair_: bool = False) -> FsckReport:
    """``Store.fsck``: read the namespace, check it, and with ``repair_`` run the repairs.

    When the first scan finds problems, a second scan confirms them: only what both found is
    reported (and repaired), so a commit that a scan saw half-way is not taken for a violation.
    """
    cli = await redis_cli(store.client)
    analysis = analyze(store.keys, await read_namespace(store), store.max_record_bytes, cli)
    if analysis.problems:
        analysis = analyze(store.keys, await read_namespace(store), store.max_record_bytes,
                           cli).confirmed_by(analysis)
    if repair_:
        await repair(store, analysis)
    return FsckReport(store.namespace, analysis.problems, analysis.checked, repair_)


__all__ = ["FsckSource", "read_namespace", "repair", "run_fsck"]
