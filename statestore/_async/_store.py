"""The store: repositories that compose the pure core with the commit engine.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)

Nothing here formats a key (``_keys`` does), plans an index (``_indexes``),
matches a filter (``_filters``) or sends MULTI (``_engine``).  Reads never
take a lock and never wait on a writer: a ``get`` is one ``GET`` (full ID) or
one script call (name or prefix), and ``list``/``snapshot`` are one script
call that reads a consistent view.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import orjson

from .. import _codec, _filters, _indexes, _protocol
from .._edge import Durability, Fence, Plan, read_lua, text
from .._errors import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    ConflictError,
    CorruptRecordError,
    InvalidArgumentError,
    InvalidStateError,
    NameInUseError,
    NotFoundError,
    StateStoreError,
)
from .._fsckcheck import FsckReport
from .._keys import KIND_CONTAINER, KIND_EXEC, NAMESPACE_RE, PREFIX, KeySchema
from .._lockinfo import DEFAULT_WEDGED_AFTER, LockList
from .._model import META, Container, ExecConfig, _Record, normalize_name, validate_id
from .._names import generate_name
from .._refs import parse_reference
from .._results import RecordList, Snapshot, finish_list
from .._synchronization import AsyncEntering  # unasync: async-only
from ._clients import UserClient, client_for_url, close_client, is_cluster, namespace_client
from ._engine import AsyncEngine, AsyncScript, AsyncTx, own_client
from ._fsck import run_fsck
from ._lock import AsyncLease, AsyncLockManager
from ._logs import AsyncLogs
from ._view import AsyncView
from ._watch import AsyncWatch

log = logging.getLogger("statestore")
index_log = logging.getLogger("statestore.index")

#: what ``lock`` returns: the lease (awaited), or its context (``async with``)
Locking = AsyncEntering[AsyncLease]  # unasync: sync: Locking = Lease

R = TypeVar("R", bound=_Record)

DEFAULT_CHANGELOG_MAXLEN = 10_000
_WRONGTYPE = "\x00WRONGTYPE"
_ID_LEN = 64
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_AUTO_NAME_TRIES = 6  # moby tries 6 generated names, then falls back to the short ID


class _Repository(Generic[R]):
    """What containers and execs share: lookups, commits, updates."""

    kind: str = ""

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._keys = store.keys
        self._engine = store._engine
        self._max = store.max_record_bytes
        self._index_keys = self._keys.index_keys(self.kind)
        self._record_prefix = self._keys.record_prefix(self.kind)
        self._name_prefix = self._keys.name_prefix if self.kind == KIND_CONTAINER else ""
        self._id_index_keys = (self._keys.index(self.kind, "id"),)
        # after a lost EXEC reply: was that attempt applied? (one decision for every write)
        self._replay = functools.partial(_protocol.replay_outcome, self.kind, self._max)

    # --- decoding --------------------------------------------------------------
    def _decode(self, key: str, raw: Any) -> R:
        rec: R = _codec.decode(self.kind, key, raw, self._max)
        return rec

    # --- reads -----------------------------------------------------------------------
    async def get(self, ref: str) -> R:
        """The record ``ref`` names: exact ID, exact name (containers), or unique ID prefix.

        Raises InvalidArgumentError (empty or malformed reference), NotFoundError,
        AmbiguousReferenceError, CorruptRecordError.
        """
        if type(ref) is str and len(ref) == _ID_LEN and _FULL_ID.fullmatch(ref):
            # the common case, in one GET: a full ID needs no parsing or script
            key = self._record_prefix + ref
            raw = await self._engine.command("GET", key, key=key)
            if raw is not None:
                return self._decode(key, raw)
        rid, raw, rec = await self._resolve(ref, decode=True)
        return rec if rec is not None else self._decode(self._record_prefix + rid, raw)

    async def _resolve(self, ref: str, decode: bool = False) -> tuple[str, Any, R | None]:
        """Resolve ``ref`` with resolve.lua: (ID, raw record, the decoded record if ``decode``).

        One rule for every lookup: a name key is trusted only if the record it
        points at has that name; a name key or ID index that is broken is
        reported (``statestore.index``) and the lookup goes on without it, as
        if that entry did not exist.
        """
        r = parse_reference(ref, self.kind)
        args = [self._record_prefix, self._name_prefix, r.bare, int(r.full_id), int(r.name),
                int(r.hex_prefix)]
        while True:
            reply = await self._engine.read(functools.partial(
                self._store._resolve_script, self._engine.execute, self._id_index_keys, args))
            status, rid, raw = text(reply[0]), text(reply[1]), reply[2]
            for k in range(3, len(reply) - 1, 2):
                self._store._index_problem(text(reply[k]), text(reply[k + 1]))
            rec: R | None = None
            if status == "name":
                key = self._record_prefix + rid
                if decode:
                    rec = self._decode(key, raw)  # a corrupt record is reported as itself
                    stored = rec._d.get("Name")
                else:
                    stored = _stored_name(raw)  # cheap; a mismatch is confirmed by a full decode
                    if stored is not None and _bare_name(stored) != r.bare:
                        try:
                            self._decode(key, raw)
                        except CorruptRecordError:
                            stored = None  # the record is corrupt: whoever reads it reports it
                if stored is None or _bare_name(stored) == r.bare:
                    return rid, raw, rec
                self._store._index_problem(
                    self._name_prefix + r.bare,
                    f"names {self.kind} {rid[:12]}, whose name is {stored!r}")
                args[3] = args[4] = 0  # the ID was tried; go on as if the name key did not exist
                continue
            if status == "ok":
                return rid, raw, self._decode(self._record_prefix + rid, raw) if decode else None
            if status == "scan":
                return await self._scan_prefix(ref, r.bare, decode)
            if status == "ambiguous":
                raise AmbiguousReferenceError(self.kind, ref)
            if status == "wrongtype":
                raise CorruptRecordError(self._record_prefix + rid, "holds a value of the wrong Redis type")
            raise NotFoundError(self.kind, ref)

    async def _scan_prefix(self, ref: str, prefix: str, decode: bool) -> tuple[str, Any, R | None]:
        """Resolve an ID prefix from the record keys (when the ID index is unusable)."""
        match = self._record_prefix + prefix + "*"

        hits = [text(k)[len(self._record_prefix):] for k in sorted(await self._engine.scan_keys(match))]
        hits = [h for h in hits if _FULL_ID.fullmatch(h)]
        if len(hits) > 1:
            raise AmbiguousReferenceError(self.kind, ref)
        if hits:
            key = self._record_prefix + hits[0]
            raw = await self._engine.command("GET", key, key=key)
            if raw is not None:
                return hits[0], raw, self._decode(key, raw) if decode else None
        raise NotFoundError(self.kind, ref)

    async def resolve(self, ref: str) -> str:
        """The ID ``ref`` names (same rules and errors as ``get``)."""
        r = parse_reference(ref, self.kind)
        if r.full_id:
            key = self._keys.record(self.kind, r.bare)
            if await self._engine.command("EXISTS", key):
                return r.bare
        return (await self._resolve(ref))[0]

    async def _on_record(self, ref: str, make_body: Callable[[str], Callable[[AsyncTx], Awaitable[Plan]]],
                   lease: AsyncLease | None = None) -> Any:
        """Run a transaction on the record ``ref`` names.

        A full ID goes straight to the transaction (no resolving round trip);
        only if no record has that ID is it resolved as a name (a name may be
        64 hex digits) or prefix.  The body raises NotFoundError when the
        record it reads under WATCH is missing.
        """
        r = parse_reference(ref, self.kind)
        if lease is not None:
            _lease_type(lease)
            if lease.namespace != self._store.namespace:
                _check_lease(lease, lease.container_id, self._store.namespace)
        if r.full_id and (lease is None or self.kind != KIND_CONTAINER or lease.container_id == r.bare):
            try:
                return await self._transact(make_body(r.bare), _fence(lease))
            except NotFoundError:
                pass
        rid = (await self._resolve(ref))[0]
        if lease is not None and self.kind == KIND_CONTAINER:
            _check_lease(lease, rid)
        return await self._transact(make_body(rid), _fence(lease))

    async def _fetch_ids(self, ids: list[str]) -> tuple[str | None, list[R], list[CorruptRecordError]]:
        rev, groups = await self._store._fetch([(self.kind, "ids", ids)])
        recs, corrupt = self._store._decode_group(self.kind, groups[0])
        return rev, recs, corrupt

    # --- writes ----------------------------------------------------------------------
    async def commit(self, record: R, *, lease: AsyncLease | None = None, action: str | None = None) -> R:
        """Compare-and-set: write ``record`` if the stored version is still ``record.version``.

        Returns the committed copy (version + 1).  Raises ConflictError when
        someone committed since ``record`` was read (never retried blindly),
        NotFoundError when the record is gone, LockLostError when ``lease``
        no longer holds the container's lock (nothing is written then).
        ``action`` names what the commit did, as Docker event actions
        (``start``, ``kill=15,die,stop``); the change log carries it (docs/events.md).
        """
        if not isinstance(record, _Record) or record.KIND != self.kind:
            raise InvalidArgumentError(f"commit() takes a {self.kind} record")
        if action is not None:
            _protocol.check_action(action)
        _validate(record)
        key = self._keys.record(self.kind, record.id)
        expected = record.version
        snapshot_of_caller = record.copy()  # later edits by the caller must not leak in
        if lease is not None:
            target = record.id if isinstance(record, Container) else getattr(record, "container_id", "")
            _check_lease(lease, target, self._store.namespace)

        async def body(tx: AsyncTx) -> Plan:
            (raw,) = await tx.read([key])
            if raw is None:
                raise NotFoundError(self.kind, record.id)
            current: R = self._decode(key, raw)
            self._check_lease_target(lease, current)
            if current.version != expected:
                raise ConflictError(key, expected, current.version)
            return self._tagged(await self._plan_update(tx, current, snapshot_of_caller), record.id, action)

        result: R = await self._transact(body, _fence(lease))
        return result

    async def update(self, ref: str, fn: Callable[[R], R | None], *, lease: AsyncLease | None = None,
                     action: str | None = None) -> R:
        """Read the record, apply ``fn`` to a fresh copy, commit it atomically.

        ``fn`` mutates its argument (or returns a replacement).  On a commit
        conflict the whole read-modify-write is retried with backoff, so ``fn``
        may run more than once and must not have side effects.  Raises
        ConflictError when the retries run out, and whatever ``fn`` raises
        (nothing is written then).  ``action``: as for ``commit``.
        """
        if action is not None:
            _protocol.check_action(action)

        def make_body(rid: str) -> Callable[[AsyncTx], Awaitable[Plan]]:
            key = self._keys.record(self.kind, rid)

            async def body(tx: AsyncTx) -> Plan:
                (raw,) = await tx.read([key])
                if raw is None:
                    raise NotFoundError(self.kind, ref)
                current: R = self._decode(key, raw)
                self._check_lease_target(lease, current)
                # the caller's private copy (validated again below, after fn changed it)
                working: R = type(current)(orjson.loads(raw))
                out = fn(working)
                if out is not None and not isinstance(out, type(current)):
                    raise InvalidArgumentError(f"update function must return a {self.kind} or None")
                # a returned object may be shared by the caller: commit a copy of it
                new = working if out is None or out is working else out.copy()
                _validate(new)
                if new.version != current.version:
                    raise InvalidArgumentError("the update function must not change the version")
                return self._tagged(await self._plan_update(tx, current, new), rid, action)

            return body

        result: R = await self._on_record(ref, make_body, lease)
        return result

    async def _transact(self, body: Callable[[AsyncTx], Awaitable[Plan]], fence: Fence | None = None) -> Any:
        """``engine.transact``, and when optimistic retries run out, the version now stored."""
        try:
            return await self._engine.transact(body, fence, replay=self._replay)
        except ConflictError as exc:
            if exc.actual is not None:
                raise
            try:
                raw = await self._engine.command("GET", exc.key, key=exc.key)
                kind = KIND_CONTAINER if exc.key.startswith(self._keys.record_prefix(KIND_CONTAINER)) \
                    else KIND_EXEC
                actual = None if raw is None else _codec.decode_document(kind, exc.key, raw, self._max)[
                    META]["Version"]
            except StateStoreError:
                raise exc from None
            raise ConflictError(exc.key, exc.expected, actual, exc.attempts,
                                "the record kept changing" if actual is not None else "the record is gone") from None

    def _tagged(self, plan: Plan, rid: str, action: str | None) -> Plan:
        """``plan`` with ``action`` on the change event of record ``rid``."""
        _protocol.tag(plan.commands, self._keys.channel(self.kind, rid), action)
        return plan

    def _check_lease_target(self, lease: AsyncLease | None, current: R) -> None:
        if lease is not None:
            cid = current.id if isinstance(current, Container) else getattr(current, "container_id", "")
            _check_lease(lease, cid, self._store.namespace)

    async def _plan_update(self, tx: AsyncTx, current: R, new: R) -> Plan:
        raise NotImplementedError  # pragma: no cover - subclasses plan their own writes

    # --- plan helpers --------------------------------------------------------------
    def _write(self, plan: Plan, kind: str, old: dict[str, Any] | None,
               new: dict[str, Any] | None) -> None:
        """Add a record write (or delete), its index diff and its change event to a plan."""
        keys = self._keys
        rid = (new or old or {})["Id" if kind == KIND_CONTAINER else "ID"]
        rkey = keys.record(kind, rid)
        data = None
        if new is None:
            plan.add("DEL", rkey)
        else:
            if plan.commit_id:
                new[META]["Commit"] = plan.commit_id
            else:
                new[META].pop("Commit", None)
            if rkey == plan.key:
                plan.version = new[META]["Version"]
            data = _codec.encode(_record_of(kind, new), self._max)
            plan.add("SET", rkey, data)
            _codec.remember_valid(kind, data)  # validated before planning; read back soon
        d = _indexes.diff(kind, old, new)
        for fld, members in d.remove.items():
            plan.add("ZREM", keys.index(kind, fld), *members)
        for fld, members in d.add.items():
            args: list[Any] = []
            for m in members:
                args += [0, m]
            plan.add("ZADD", keys.index(kind, fld), *args)
        doc = new if new is not None else old
        assert doc is not None
        etype = "create" if old is None else "delete" if new is None else "update"
        plan.log(_protocol.event(self._keys, self._store.changelog_maxlen, etype, kind, doc, data,
                                 old if etype == "update" else None))


def _stored_name(raw: Any) -> str | None:
    """A stored container's ``Name``, or None when it cannot be read (nothing to check then)."""
    try:
        name = orjson.loads(raw).get("Name")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _bare_name(name: str) -> str:
    """A stored ``Name`` without its leading ``/`` (how name keys spell it)."""
    return name[1:] if name.startswith("/") else name


def _fence(lease: AsyncLease | None) -> Fence | None:
    if lease is None:
        return None
    _lease_type(lease)
    return lease.fence


def _lease_type(lease: object) -> None:
    if not isinstance(lease, AsyncLease):
        raise InvalidArgumentError(f"lease must be a AsyncLease from store.lock(), not {type(lease).__name__}")


def _check_lease(lease: AsyncLease, container_id: str, namespace: str | None = None) -> None:
    _lease_type(lease)
    if namespace is not None and lease.namespace != namespace:
        raise InvalidArgumentError(
            f"the lease is for namespace {lease.namespace!r}, not {namespace!r}")
    if lease.container_id != container_id:
        raise InvalidArgumentError(
            f"the lease is for container {lease.container_id[:12]}, not {container_id[:12]}")


def _record_of(kind: str, doc: dict[str, Any]) -> _Record:
    return Container(doc) if kind == KIND_CONTAINER else ExecConfig(doc)


def _validate(record: _Record) -> None:
    record.validate_for_write()


def _next_version(doc: dict[str, Any], current: _Record) -> dict[str, Any]:
    """Set the version a commit on top of ``current`` writes (idempotent across retries)."""
    doc[META]["Version"] = current.version + 1
    return doc


class AsyncContainers(_Repository[Container]):
    """``store.containers``: container records, names and indexes."""

    kind = KIND_CONTAINER

    async def create(self, container: Container) -> Container:
        """AsyncStore a new container (version 1) and reserve its name.

        Raises AlreadyExistsError (same ID), NameInUseError (name taken; a
        generated name is retried with another), InvalidArgumentError.
        """
        if not isinstance(container, Container):
            raise InvalidArgumentError("create() takes a Container")
        if container.version != 0:
            raise InvalidArgumentError(
                f"container {container.id[:12]} is already committed (version "
                f"{container.version}); use commit()"
            )
        _validate(container)
        auto = getattr(container, "_auto_name", False)
        try:
            doc = container.to_dict()
        except orjson.JSONEncodeError as exc:
            raise InvalidArgumentError(f"container is not plain JSON data: {exc}") from None
        if doc != container._d:  # orjson converted something (UUID, NaN, tuple...)
            raise InvalidArgumentError("container is not plain JSON data (dicts, lists, str, int, float, bool, None)")
        attempt = 0
        while True:
            try:
                return await self._create(doc)
            except NameInUseError:
                attempt += 1
                if not auto or attempt > _AUTO_NAME_TRIES:
                    raise
                doc["Name"] = "/" + (generate_name(retry=attempt)
                                     if attempt < _AUTO_NAME_TRIES else doc["Id"][:12])

    async def _create(self, doc: dict[str, Any]) -> Container:
        keys = self._keys
        cid = doc["Id"]
        name = normalize_name(doc["Name"])
        key, nkey = keys.container(cid), keys.name(name)
        new = orjson.loads(orjson.dumps(doc))
        new[META]["Version"] = 1

        async def body(tx: AsyncTx) -> Plan:
            raw, holder = await tx.read([key, nkey])
            if raw is not None:
                raise AlreadyExistsError(self.kind, cid)
            if holder is not None:
                await self._check_name_free(tx, name, text(holder), cid)
            plan = tx.plan(key, expected=0)
            plan.add("SET", nkey, cid)
            self._write(plan, KIND_CONTAINER, None, new)
            plan.finish = lambda revs: _with_revision(Container(new), revs)
            return plan

        result: Container = await self._transact(body)
        return result

    async def _check_name_free(self, tx: AsyncTx, name: str, holder: str, me: str) -> None:
        """Raise NameInUseError unless the reservation is ours or stale (holder gone)."""
        if holder == me:
            return
        try:
            validate_id(holder)
        except InvalidArgumentError:
            raise CorruptRecordError(self._keys.name(name), f"holds {holder!r}, not an ID") from None
        (holder_raw,) = await tx.read([self._keys.container(holder)])
        if holder_raw is not None:
            raise NameInUseError(name, holder)
        log.warning("reclaiming stale name reservation %s (container %s is gone)", name, holder)

    async def _plan_update(self, tx: AsyncTx, current: Container, new: Container) -> Plan:
        keys = self._keys
        key = keys.container(current.id)
        if new.id != current.id:
            raise InvalidArgumentError("a container's Id cannot change")
        if new.exec_ids != current.exec_ids:
            raise InvalidArgumentError("ExecIDs are kept in step by store.execs; they cannot be set directly")
        old_doc, new_doc = current._d, _next_version(new._d, current)
        plan = tx.plan(key, expected=current.version)
        if new.name != current.name:
            nkey = keys.name(new.name)
            (holder,) = await tx.read([nkey])
            if holder is not None:
                await self._check_name_free(tx, new.name, text(holder), current.id)
            plan.add("DEL", keys.name(current.name))
            plan.add("SET", nkey, current.id)
        self._write(plan, KIND_CONTAINER, old_doc, new_doc)
        plan.finish = lambda revs: _with_revision(Container(new_doc), revs)
        return plan

    async def rename(self, ref: str, new_name: str, *, lease: AsyncLease | None = None) -> Container:
        """Give the container a new name; the old name is freed in the same commit.

        Raises NameInUseError, InvalidArgumentError (invalid name, or the same name).
        """
        bare = normalize_name(new_name)

        def change(c: Container) -> None:
            if c.name == bare:
                raise InvalidArgumentError(
                    "Renaming a container with the same name as its current name")
            c.name = bare

        return await self.update(ref, change, lease=lease, action="rename")

    async def delete(self, ref: str, *, lease: AsyncLease | None = None) -> Container:
        """Remove the container, its name, its index entries and its execs in one commit.

        Returns the last state of the deleted record.
        """
        keys = self._keys

        def make_body(cid: str) -> Callable[[AsyncTx], Awaitable[Plan]]:
            key = keys.container(cid)

            async def body(tx: AsyncTx) -> Plan:
                (raw,) = await tx.read([key])
                if raw is None:
                    raise NotFoundError(self.kind, ref)
                current = self._decode(key, raw)
                nkey = keys.name(current.name)
                exec_keys = [keys.exec(x) for x in current.exec_ids]
                reads = await tx.read([nkey, *exec_keys])
                plan = tx.plan(key, expected=current.version)
                if reads[0] is not None and text(reads[0]) == cid:
                    plan.add("DEL", nkey)
                for xkey, xraw in zip(exec_keys, reads[1:], strict=True):
                    if xraw is None:
                        continue
                    try:
                        xdoc = _codec.decode_document(KIND_EXEC, xkey, xraw, self._max)
                    except CorruptRecordError:
                        # never leave a corrupt exec (or its index members) behind a
                        # deleted container; its last good state is unknown
                        xid = xkey[len(keys.record_prefix(KIND_EXEC)):]
                        plan.add("DEL", xkey)
                        plan.add("ZREM", keys.index(KIND_EXEC, "id"), xid)
                        plan.add("ZREM", keys.index(KIND_EXEC, "container"), f"{cid}{_indexes.SEP}{xid}")
                        continue
                    self._write(plan, KIND_EXEC, xdoc, None)
                self._write(plan, KIND_CONTAINER, current._d, None)
                plan.add("DEL", keys.lock_fence(cid))
                plan.add("DEL", keys.logs(cid))  # the container's output goes with it
                plan.finish = lambda revs: _with_revision(current, revs)
                return plan

            return body

        result: Container = await self._on_record(ref, make_body, lease)
        return result

    async def list(
        self,
        filters: Mapping[str, Iterable[str] | str] | None = None,
        all: bool = False,
        limit: int | None = None,
    ) -> RecordList[Container]:
        """``docker ps``: running containers (all with ``all=True``), newest first.

        Selective filters are answered from indexes; see ``statestore._filters``
        for the rules.  Corrupt records are skipped and reported in ``.corrupt``.
        """
        q = _filters.make_query(filters, all, limit)
        before = (await self.get(q.values("before")[0])).created if q.values("before") else None
        since = (await self.get(q.values("since")[0])).created if q.values("since") else None
        clauses = _filters.plan(q)
        warnings: list[str] = []
        fld = None if clauses else _filters.scan_field(q)
        ids: list[str] | None = None
        if fld is not None:
            ikey = self._keys.index(KIND_CONTAINER, fld)
            try:
                members = await self._engine.command("ZRANGE", ikey, 0, -1, key=ikey)
                ids = [_indexes.member_id(text(m)) for m in members
                       if _filters.member_matches(q, fld, text(m))]
            except CorruptRecordError:  # the index, not a record: read every record instead
                self._store._index_problem(ikey, await self._store._wrong_type(ikey), warnings)
        if ids is not None:
            rev, groups = await self._store._fetch([(KIND_CONTAINER, "ids", ids)], warnings)
        else:
            rev, groups = await self._store._fetch(
                [(KIND_CONTAINER, "ranges", clauses or [(_indexes.everything("id"),)])], warnings)
        recs, corrupt = self._store._decode_group(KIND_CONTAINER, groups[0])
        return finish_list(q, [c._d for c in recs], rev, corrupt, before, since, warnings)


class AsyncExecs(_Repository[ExecConfig]):
    """``store.execs``: exec instances, kept in step with their container's ExecIDs."""

    kind = KIND_EXEC

    async def create(self, exec_config: ExecConfig, *, lease: AsyncLease | None = None) -> ExecConfig:
        """AsyncStore a new exec for a running container and add it to the container's ExecIDs.

        Raises NotFoundError (container), InvalidStateError (container not
        running, paused or restarting), AlreadyExistsError.
        """
        if not isinstance(exec_config, ExecConfig):
            raise InvalidArgumentError("create() takes an ExecConfig")
        if exec_config.version != 0:
            raise InvalidArgumentError("exec is already committed; use commit()")
        if lease is not None:
            _lease_type(lease)
        cid = await self._store.containers.resolve(exec_config.container_id)
        if lease is not None:
            _check_lease(lease, cid, self._store.namespace)
        keys = self._keys
        xid = exec_config.id
        xkey, ckey = keys.exec(xid), keys.container(cid)
        xdoc_base = exec_config.to_dict()
        xdoc_base["ContainerID"] = cid
        _validate(ExecConfig(xdoc_base))

        async def body(tx: AsyncTx) -> Plan:
            craw, xraw = await tx.read([ckey, xkey])
            if craw is None:
                raise NotFoundError(KIND_CONTAINER, exec_config.container_id)
            if xraw is not None:
                raise AlreadyExistsError(self.kind, xid)
            container = self._store.containers._decode(ckey, craw)
            status = container.status
            if status != "running":
                hint = {
                    "paused": "container is paused, unpause the container before exec",
                    "restarting": "container is restarting, wait until the container is running",
                }.get(status, "container is not running")
                raise InvalidStateError(cid, "exec in", status, "running", hint)
            new_c = container.to_dict()
            new_c["ExecIDs"] = [*container.exec_ids, xid]
            _next_version(new_c, container)
            xdoc = orjson.loads(orjson.dumps(xdoc_base))
            xdoc[META]["Version"] = 1
            plan = tx.plan(xkey, expected=0)
            self._write(plan, KIND_EXEC, None, xdoc)
            self._write(plan, KIND_CONTAINER, container._d, new_c)
            # the exec's entry is the commit's first; its container's update follows
            plan.finish = lambda revs: _with_revision(ExecConfig(xdoc), revs, 0)
            return plan

        result: ExecConfig = await self._transact(body, _fence(lease))
        return result

    async def _plan_update(self, tx: AsyncTx, current: ExecConfig, new: ExecConfig) -> Plan:
        if new.id != current.id or new.container_id != current.container_id:
            raise InvalidArgumentError("an exec's ID and ContainerID cannot change")
        new_doc = _next_version(new._d, current)
        plan = tx.plan(self._keys.exec(current.id), expected=current.version)
        self._write(plan, KIND_EXEC, current._d, new_doc)
        plan.finish = lambda revs: _with_revision(ExecConfig(new_doc), revs)
        return plan

    async def delete(self, ref: str, *, lease: AsyncLease | None = None) -> ExecConfig:
        """Remove the exec and drop it from its container's ExecIDs, in one commit."""
        keys = self._keys

        def make_body(xid: str) -> Callable[[AsyncTx], Awaitable[Plan]]:
            xkey = keys.exec(xid)

            async def body(tx: AsyncTx) -> Plan:
                (xraw,) = await tx.read([xkey])
                if xraw is None:
                    raise NotFoundError(self.kind, ref)
                current = self._decode(xkey, xraw)
                self._check_lease_target(lease, current)
                ckey = keys.container(current.container_id)
                (craw,) = await tx.read([ckey])
                plan = tx.plan(xkey, expected=current.version)
                self._write(plan, KIND_EXEC, current._d, None)
                if craw is not None:
                    container = self._store.containers._decode(ckey, craw)
                    if xid in container.exec_ids:
                        new_c = container.to_dict()
                        new_c["ExecIDs"] = [x for x in container.exec_ids if x != xid] or None
                        self._write(plan, KIND_CONTAINER, container._d, _next_version(new_c, container))
                # the exec's entry is the commit's first; its container's update (if any) follows
                plan.finish = lambda revs: _with_revision(current, revs, 0)
                return plan

            return body

        result: ExecConfig = await self._on_record(ref, make_body, lease)
        return result

    async def list(self, container: str | None = None) -> RecordList[ExecConfig]:
        """Every exec, or those of one container (a reference), oldest ID order."""
        if container is None:
            rng: tuple[_indexes.Range, ...] = (_indexes.everything("id"),)
        else:
            cid = await self._store.containers.resolve(container)
            rng = (_indexes.exact("container", cid),)
        warnings: list[str] = []
        rev, groups = await self._store._fetch([(KIND_EXEC, "ranges", [rng])], warnings)
        recs, corrupt = self._store._decode_group(KIND_EXEC, groups[0])
        if container is not None:  # the index over-approximates only when it was worked around
            recs = [x for x in recs if x.container_id == cid]
        return RecordList(recs, rev, corrupt, warnings)


def _with_revision(rec: R, revisions: list[str], entry: int = -1) -> R:
    """Set ``rec.revision`` to the commit's change-log entry ``entry`` (default: its last).

    A plan logs its records in the order it writes them, so a write that also
    changes another record (an exec and its container) names its own entry.
    """
    rec.revision = revisions[entry] if revisions else None
    return rec


class AsyncStore:
    """Container and exec state of one namespace, in one Redis, shared by many replicas.

    ``client`` is any ``redis.Redis`` (a Sentinel ``master_for`` client works
    too) or a ``redis.RedisCluster`` (the namespace lives in one hash slot; the
    store follows that slot's primary).  The store never closes a client it
    was given; ``close()`` closes one it created (``from_url``).

    ``durability="replicated"`` makes every commit (and lock acquisition) wait
    until ``replicas`` replicas acknowledged it, for at most
    ``durability_timeout`` seconds; fewer raise DurabilityError (the commit
    was applied on the primary and may or may not survive a failover).  The
    default, ``"fast"``, returns once the primary applied it.
    """

    def __init__(
        self,
        client: UserClient,
        namespace: str = "default",
        *,
        changelog_maxlen: int = DEFAULT_CHANGELOG_MAXLEN,
        max_record_bytes: int = _codec.DEFAULT_MAX_RECORD_BYTES,
        conflict_attempts: int = 32,
        unavailable_timeout: float = 5.0,
        replica_id: str | None = None,
        wedged_after: float = DEFAULT_WEDGED_AFTER,
        durability: str = "fast",
        replicas: int = 1,
        durability_timeout: float = 1.0,
    ) -> None:
        for name, value in (("changelog_maxlen", changelog_maxlen),
                            ("max_record_bytes", max_record_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer")
        self.keys = KeySchema(namespace)
        self.namespace = namespace
        durable = Durability.parse(durability, replicas, durability_timeout)
        #: the caller's client, as given (never closed by the store unless from_url made it)
        self.user_client = client
        #: the store's own client: same server and settings, raw bytes, no client-side retries
        self.client = own_client(
            namespace_client(client, self.keys.log), durable.timeout_ms / 1000 + 1.0 if durable.replicas else None)
        self.changelog_maxlen = changelog_maxlen
        self.max_record_bytes = max_record_bytes
        self._owns_client = False
        self._engine = AsyncEngine(self.client, conflict_attempts=conflict_attempts,
                              unavailable_timeout=unavailable_timeout, durability=durable)
        self._resolve_script = AsyncScript(read_lua("resolve.lua"))
        self._fetch_script = AsyncScript(read_lua("fetch.lua"))
        self.containers = AsyncContainers(self)
        self.execs = AsyncExecs(self)
        #: each container's output, a capped stream (docker logs; see ``AsyncLogs``)
        self.logs = AsyncLogs(self)
        self._locks = AsyncLockManager(self, replica_id, wedged_after)

    @property
    def durability(self) -> str:
        """"fast" or "replicated" (see ``AsyncStore``)."""
        return "replicated" if self._engine.durability.replicas else "fast"

    @classmethod
    def from_url(cls, url: str, namespace: str = "default", **kwargs: Any) -> AsyncStore:
        """A store on a new client for ``url``; ``aclose()`` closes that client.

        ``redis://``, ``rediss://`` and ``unix://`` URLs are redis-py's; for
        Sentinel and Cluster, ``redis+sentinel://host:26379,host:26380/mymaster/0``
        and ``redis+cluster://host:7000,host:7001`` (``rediss+`` for TLS; see
        docs/operations.md).
        """
        user_client = client_for_url(url)
        try:
            store = cls(user_client, namespace, **kwargs)
        except BaseException:
            # an async client has connected nowhere yet: nothing to close; a sync one may have
            pass  # unasync: sync: user_client.close()
            raise
        store._owns_client = True
        return store

    async def aclose(self) -> None:
        """Stop the lock renewer and close the client if the store created it."""
        await self._locks.aclose()
        if self.client is not self.user_client:
            await self.client.aclose()
        if self._owns_client:
            await close_client(self.user_client)

    # --- locks -----------------------------------------------------------------------
    def lock(self, ref: str, ttl: float = 10.0, timeout: float | None = 5.0,
             on_lost: Callable[[AsyncLease], None] | None = None) -> Locking:
        """Take the action lock of the container ``ref`` names: ``async with store.lock(ref) as
        lease:`` (released at the end of the block), or ``lease = await store.lock(ref)``.

        Blocks up to ``timeout`` seconds (None: forever), then raises
        LockTimeoutError naming the holder.  The lease is renewed in the
        background until released; ``on_lost(lease)`` is called if it is lost.
        Raises InvalidArgumentError for a non-positive ``ttl``/``timeout``,
        NotFoundError when no such container exists.
        """
        acquiring = self._locks.acquire(ref, ttl, timeout, on_lost)
        return AsyncEntering(acquiring)  # unasync: sync: return acquiring

    # --- change notifications ---------------------------------------------------------
    def watch(
        self,
        since: str | None = None,
        *,
        kinds: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        progress: float | None = None,
        block: float = 1.0,
        reconnect_timeout: float | None = None,
        start: str | None = None,
        until: str | None = None,
        on_connection: Callable[[bool, str], None] | None = None,
    ) -> AsyncWatch:
        """Events committed after revision ``since``, in commit order, each once (blocking iterator).

        ``since=None`` starts from now; ``"0-0"`` from the start of the log.
        Raises HistoryTrimmedError when the log no longer reaches back to
        ``since`` (relist with ``snapshot()`` and watch from its revision),
        LogRegressionError when the log went backwards.  Filters: ``kinds``
        (container, exec), ``ids`` (record or container IDs), ``labels``
        (``key`` or ``key=value``, all must hold), ``names`` (docker events'
        ``container=``: a container's ID or name, exactly or as a prefix; an exec's
        event goes by its container), ``types`` (create, update, delete, enter,
        leave).  With ``labels`` or ``names``, an update that makes a container stop
        matching is yielded as ``leave``, one that makes it start as ``enter``.
        ``progress=seconds`` yields ``progress`` marks (a position, no record) when
        filtered-out entries moved the position and nothing was yielded for that
        long, so a quiet filtered watch's resume point stays in the log.  A lost
        connection is re-established with backoff, for at most
        ``reconnect_timeout`` seconds (None: indefinitely); ``on_connection(connected,
        reason)`` is called when it is lost and when it is back.  ``start`` (instead
        of ``since``) starts at a position that need not be an entry (``"<ms>-0"``);
        ``until`` ends the iteration past that revision.  See ``AsyncWatch``.
        """
        return AsyncWatch(self, since, kinds=kinds, ids=ids, labels=labels, types=types, names=names,
                     progress=progress, block=block,
                     reconnect_timeout=reconnect_timeout, start=start, until=until,
                     on_connection=on_connection)

    async def namespaces(self) -> dict[str, dict[str, int]]:
        """Every namespace with keys in this Redis database, sorted by name, with its
        record counts: ``{"prod": {"containers": 3, "execs": 1}}`` (counted by SCAN of
        the record keys, so a broken index does not change them)."""
        client = self.user_client if is_cluster(self.user_client) else self.client

        async def scan() -> dict[str, dict[str, int]]:
            found: dict[str, dict[str, int]] = {}
            async for raw in client.scan_iter(match=f"{PREFIX}:{{*}}:*", count=1000):
                ns, sep, rest = text(raw)[len(PREFIX) + 2:].partition("}:")
                if not sep or not NAMESPACE_RE.fullmatch(ns):
                    continue
                counts = found.setdefault(ns, {"containers": 0, "execs": 0})
                cat = rest.partition(":")[0]
                if cat == "c":
                    counts["containers"] += 1
                elif cat == "x":
                    counts["execs"] += 1
            return dict(sorted(found.items()))

        result: dict[str, dict[str, int]] = await self._engine.read(scan)
        return result

    async def log_sequence(self) -> int:
        """The sequence number of the newest change-log entry (``Event.seq``; 0 before the first
        commit): how many changes the namespace has logged, trimmed entries included."""
        raw = await self._engine.command("GET", self.keys.log_seq, key=self.keys.log_seq)
        try:
            return int(raw or 0)
        except ValueError:
            raise CorruptRecordError(self.keys.log_seq, "is not an integer counter (the change-log sequence)") from None

    async def log_revision(self) -> str:
        """The revision of the newest change-log entry ("0-0" before the first commit), in one
        read: a View that has applied it reflects every commit made before this call
        (``await view.wait_for(await store.log_revision())``: a consistent read from memory)."""
        last = await self._engine.command("XREVRANGE", self.keys.log, "+", "-", "COUNT", 1, key=self.keys.log)
        return text(last[0][0]) if last else "0-0"

    async def delete_namespace(self) -> int:
        """Delete every key of this store's namespace (records, indexes, change log, locks, the
        work queue) and return how many were deleted.  For demos, tests and decommissioning:
        it is not atomic (SCAN, then DEL in batches), so a commit running meanwhile may leave
        keys behind; stop every writer first."""
        keys = await self._engine.scan_keys(self.keys.match_all)
        deleted = 0
        for i in range(0, len(keys), 500):  # DEL is idempotent: each batch is retried on its own
            deleted += int(await self._engine.command("DEL", *keys[i:i + 500]))
        return deleted

    async def view(self) -> AsyncView:
        """A local, watch-fed copy of every record of the namespace (see ``AsyncView``)."""
        return await AsyncView(self)._open()

    async def locks(self) -> LockList:
        """Every held action lock of the namespace, oldest first (for operators); ``.unreadable``
        counts the lock keys found but not reported (released meanwhile, or not a lock record)."""
        return await self._locks.locks()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers."""
        await self._engine.command("PING")

    # --- snapshot ----------------------------------------------------------------------
    async def snapshot(self) -> Snapshot:
        """Every container and exec and the change-log revision, read atomically."""
        rev, groups = await self._fetch([
            (KIND_CONTAINER, "ranges", [(_indexes.everything("id"),)]),
            (KIND_EXEC, "ranges", [(_indexes.everything("id"),)]),
        ])
        if rev is None:
            raise CorruptRecordError(self.keys.log, "holds a value of the wrong Redis type")
        containers, c_bad = self._decode_group(KIND_CONTAINER, groups[0])
        execs, x_bad = self._decode_group(KIND_EXEC, groups[1])
        return Snapshot(
            revision=rev,
            containers={c.id: c for c in containers},
            execs={x.id: x for x in execs},
            corrupt=(*c_bad, *x_bad),
            _names={c.name: c.id for c in containers},
        )

    # --- consistency -------------------------------------------------------------------
    async def fsck(self, repair: bool = False) -> FsckReport:
        """Check the namespace against every invariant of docs/schema.md; a ``FsckReport``.

        With ``repair``, fix what the records determine (name keys, index members,
        ExecIDs), each record in its own transaction; a fix that changes a record
        commits it like any change (version + 1, change event).  Corrupt records and
        keys the schema does not define are reported, never deleted.  See ``statestore._fsck``.
        """
        return await run_fsck(self, repair)

    # --- internals shared by the repositories -----------------------------------------
    async def _fetch(
        self, groups: list[tuple[str, str, Any]], warnings: list[str] | None = None,
    ) -> tuple[str | None, list[list[tuple[str, Any]]]]:
        """Run fetch.lua: groups of (kind, 'ranges', clauses) or (kind, 'ids', ids).

        A broken index key never fails the read: the script uses another clause or
        the id index instead, and a group it cannot enumerate at all is read by a
        scan of the record keys (more round trips, only then).  Every index problem
        worked around is logged (``statestore.index``) and added to ``warnings``.
        """
        keys: list[str] = [self.keys.log]

        def key_index(ikey: str) -> int:
            if ikey not in keys:
                keys.append(ikey)
            return keys.index(ikey) + 1

        args: list[Any] = [len(groups)]
        for kind, mode, spec in groups:
            args += [self.keys.record_prefix(kind), mode]
            if mode == "ids":
                args += [len(spec), *spec]
                continue
            args += [key_index(self.keys.index(kind, "id")), len(spec)]
            for clause in spec:
                args.append(len(clause))
                for rng in clause:
                    args += [key_index(self.keys.index(kind, rng.field)), rng.min, rng.max]
        reply = await self._engine.read(functools.partial(self._fetch_script, self._engine.execute, keys, args))
        rev = text(reply[0])
        out: list[list[tuple[str, Any]]] = []
        rescan: list[int] = []
        i = 1
        for g, _ in enumerate(groups):
            n = int(reply[i])
            i += 1
            if n < 0:
                rescan.append(g)
                n = 0
            out.append([(text(reply[i + 2 * k]), reply[i + 2 * k + 1]) for k in range(n)])
            i += 2 * n
        for k in range(i, len(reply) - 1, 2):
            self._index_problem(text(reply[k]), text(reply[k + 1]), warnings)
        if rescan:
            ids = {g: await self._scan_ids(groups[g][0]) for g in rescan}
            rescanned, again = await self._fetch([(groups[g][0], "ids", ids[g]) for g in rescan])
            rev = _WRONGTYPE if rescanned is None else rescanned
            for g, pairs in zip(rescan, again, strict=True):
                out[g] = pairs
        return (None if rev == _WRONGTYPE else rev), out

    async def _wrong_type(self, key: str) -> str:
        """How an index key of the wrong type is described (fetch.lua's words)."""
        rtype = text(await self._engine.command("TYPE", key))
        return f"holds a {rtype}, not a sorted set"

    async def _scan_ids(self, kind: str) -> list[str]:
        """Every record ID of ``kind``, by SCAN of the record keys (when no index can list them)."""
        prefix = self.keys.record_prefix(kind)

        return sorted({text(k)[len(prefix):] for k in await self._engine.scan_keys(prefix + "*")})

    def _index_problem(self, key: str, problem: str, warnings: list[str] | None = None) -> None:
        """Log an index problem a read worked around (``statestore.index``) and add it to ``warnings``.

        The same message is logged and added once per ``warnings`` list.
        """
        msg = f"index {key} {problem}; the read worked around it (run `statestore fsck --repair`)"
        if warnings is not None:
            if msg in warnings:
                return
            warnings.append(msg)
        index_log.warning("%s", msg)

    def _decode_group(self, kind: str, pairs: list[tuple[str, Any]]) -> tuple[list[Any], list[CorruptRecordError]]:
        recs: list[Any] = []
        bad: list[CorruptRecordError] = []
        for rid, raw in pairs:
            key = self.keys.record(kind, rid)
            try:
                if raw in (_WRONGTYPE, _WRONGTYPE.encode()):
                    raise CorruptRecordError(key, "holds a value of the wrong Redis type")
                recs.append(_codec.decode(kind, key, raw, self.max_record_bytes))
            except CorruptRecordError as exc:
                log.warning("skipping %s", exc)
                bad.append(exc)
        return recs, bad


__all__ = ["AsyncContainers", "AsyncExecs", "AsyncStore"]
