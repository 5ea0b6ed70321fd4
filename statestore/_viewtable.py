"""The View's tables, as pure code: records held as bytes with their index members, and
how a query is answered from memory (no I/O).

Shared by both faces' views (``_async/_view.py`` and the generated ``_sync/_view.py``).
"""

from __future__ import annotations

import builtins
import functools
from typing import Any, NamedTuple

import orjson

from . import _filters, _indexes
from ._keys import KIND_CONTAINER
from ._memindex import MemIndex, exact_head
from ._refs import resolve
from ._state import derive_status


class Rec:
    """One record of the view: its version, stored bytes, ``Created`` (what
    _filters.sort_key and before/since compare), derived status (a shared constant;
    "" for execs) and index members (``_indexes.pairs``, sharing their strings with
    the index, so an update is diffed without parsing the old record).

    The holder stays the same object while the record exists (an update rewrites
    its fields under the view's lock; a lock-free reader reads only ``raw``, one
    attribute); the index's head maps point at holders, so a selective list goes
    from a label straight to its records, one object each.
    """

    __slots__ = ("id", "version", "raw", "created", "status", "pairs")

    def __init__(self, rid: str, version: int, raw: bytes, created: str, status: str,
                 pairs: _indexes.Pairs) -> None:
        self.id = rid
        self.version = version
        self.raw = raw
        self.created = created
        self.status = status
        self.pairs = pairs


class Table:
    """Records of one kind: id -> record holder, plus the store's index members in memory.

    Only the stored bytes are kept (no parsed documents: a View of 100,000
    containers stays within 3x the JSON it holds); ``index`` holds the members
    the store keeps in its sorted sets (``_indexes``), kept up with the same
    members a commit writes, so the planner's ranges are answered here as
    fetch.lua answers them from Redis.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows: dict[str, Rec] = {}
        self.index = MemIndex(records=self.rows)
        # (a partial: no Python frame of its own on every lookup)
        self._by_name = functools.partial(self.index.lookup, "name") if kind == KIND_CONTAINER else None
        self._by_prefix = self._prefix

    def record(self, rid: str, version: int, raw: bytes, doc: dict[str, Any]) -> Rec:
        status = derive_status(doc["State"]) if self.kind == KIND_CONTAINER else ""
        return Rec(rid, version, raw, str(doc.get("Created") or ""), status, _indexes.pairs(self.kind, doc))

    def put(self, rid: str, version: int, raw: bytes, doc: dict[str, Any] | None = None,
            force: bool = False) -> bool:
        """Store a record's new version (``doc``: its document, already parsed and validated;
        only read here).  False if the view holds that version or a newer one."""
        rec = self.rows.get(rid)
        if rec is not None and rec.version >= version and not (force and rec.raw != raw):
            return False  # never go back to an older version (unless the store itself did)
        new = self.record(rid, version, raw, doc if doc is not None else orjson.loads(raw))
        if rec is None:
            self.rows[rid] = new
            self.index.insert(new.pairs, new)
        else:
            rec.pairs = self.index.change(rec.pairs, new.pairs, rec)
            rec.version, rec.raw, rec.created, rec.status = new.version, new.raw, new.created, new.status
        return True

    def remove(self, rid: str, version: int | None = None) -> None:
        rec = self.rows.get(rid)
        if rec is None or (version is not None and rec.version > version):
            return
        del self.rows[rid]
        self.index.delete(rec.pairs, rec)

    def reindex(self) -> None:
        """Rebuild every index from the rows' members (one sort per field, nothing parsed)."""
        self.index.rebuild((rec.pairs, rec) for rec in self.rows.values())

    def resolve(self, ref: str) -> Rec:
        """Docker's lookup order (``_refs.resolve``): exact full ID, exact name (containers), unique ID prefix."""
        found: Rec = resolve(ref, self.kind, self.rows.get, self._by_name, self._by_prefix)
        return found

    def _prefix(self, prefix: str) -> list[Rec]:
        return [self.rows[rid] for rid in self.index.first_with_prefix("id", prefix, 2)]


class Planned(NamedTuple):
    """A validated query and how the View answers it (a pure function of the query: cached)."""

    query: _filters.Query
    clauses: builtins.list[_filters.Clause]   # the store's plan
    exact: bool        # the indexes answer every filter key: intersect, match no record
    indexed: builtins.list[_filters.Clause]   # the clauses the index intersects
    statuses: frozenset[str] | None           # a status clause answered from the rows instead

    @classmethod
    def of(cls, q: _filters.Query) -> Planned:
        clauses = _filters.plan(q)
        exact = q.filters.keys() <= _EXACT_OR_ORDER
        # a status clause beside a more selective one is checked on the candidates' rows
        # (one dict lookup each, which building the answer needs anyway), not probed in the index
        if exact and len(clauses) > 1:
            for k, cl in enumerate(clauses):
                statuses = _RUNNING if cl is _filters.RUNNING_CLAUSE else _statuses(cl)
                if statuses is not None:
                    return cls(q, clauses, exact, clauses[:k] + clauses[k + 1:], statuses)
        return cls(q, clauses, exact, clauses, None)


_RUNNING: frozenset[str] = frozenset(_filters.RUNNING_STATUSES)
_EXACT_OR_ORDER: frozenset[str] = _filters.EXACT_KEYS | {"before", "since"}


def _statuses(clause: _filters.Clause) -> frozenset[str] | None:
    """The statuses a clause of exact status ranges names, else None."""
    out = set()
    for rng in clause:
        head = exact_head(rng) if rng.field == "status" else None  # an ix.exact("status", s)
        if head is None:
            return None
        out.add(head[:-1])
    return frozenset(out)



__all__ = ["Planned", "Rec", "Table"]
