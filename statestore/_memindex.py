"""The in-memory index back end (pure): the store's index members in sorted lists and head maps.

The View keeps, per index field, the same members the store keeps in Redis
sorted sets (``_indexes.container_pairs`` / ``exec_pairs``), in a
``sortedcontainers.SortedList``: a list of sorted sublists, so adding or
removing a member costs O(log N) even in a field of a million members (a
plain list's insert moves half of it), while bisection and positional slices
stay as cheap as a list's.  Python orders ``str`` by code point, which is the
byte order of their UTF-8 encoding, so a ``_indexes.Range`` (a ``ZRANGEBYLEX``
range) selects the same members here as in Redis: an exact or prefix query
costs O(log N + M), never a scan.  ``candidates`` answers a plan of
``_filters.plan`` the way fetch.lua does: it counts every clause, reads only
the smallest, and returns the record IDs its members name.

Beside the sorted members, every field whose members have value parts (all
but ``id``) keeps a **head map**: ``<parts>\x00`` -> the record (or the set
of records) whose member starts with it.  A record is whatever the caller
indexes it with (the View's per-record holder; by default its ID), so a
query whose ranges all name whole heads (``ix.exact`` with every value part:
labels ``key=value``, statuses, names, images) is answered by a few hash
lookups that lead straight to the records, without bisecting sorted lists or
looking IDs up again: on a large View most of a selective list's time is
memory latency, and this touches the least of it.  ``select`` intersects
clauses this way; ``lookup`` resolves a name.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sortedcontainers import SortedList

from . import _indexes as ix
from ._errors import InvalidArgumentError


def _bounds(rng: ix.Range) -> tuple[str | None, str | None, bool]:
    """(low, high, high_is_prefix): inclusive bounds of a lex range as text.

    ``high_is_prefix``: the upper bound is ``[p\\xff``, i.e. every member starting
    with ``p`` (``\\xff`` never occurs in UTF-8).  ``None`` is an open end.
    """
    rmin, rmax = rng.min, rng.max
    if rmax == rmin + b"\xff" and rmin[:1] == b"[":
        # ix.exact / ix.prefix, by far the most common: [p .. [p\xff (queries vary: not cached)
        p = rmin[1:].decode()
        return p, p, True
    return _bounds_of(rmin, rmax)


@functools.lru_cache(maxsize=4096)
def _bounds_of(rmin: bytes, rmax: bytes) -> tuple[str | None, str | None, bool]:
    lo: str | None
    if rmin == b"-":
        lo = None
    elif rmin.startswith(b"["):
        lo = rmin[1:].decode()
    else:
        raise InvalidArgumentError(f"unsupported range start {rmin!r}")
    if rmax == b"+":
        return lo, None, False
    if rmax.startswith(b"[") and rmax.endswith(b"\xff"):
        return lo, rmax[1:-1].decode(), True
    if rmax.startswith(b"["):
        return lo, rmax[1:].decode(), False
    raise InvalidArgumentError(f"unsupported range end {rmax!r}")


def exact_head(rng: ix.Range) -> str | None:
    """``<parts>\\x00`` when ``rng`` is an ``ix.exact`` range naming every value part of its
    field's members (so ``head + id`` is a whole member), else None."""
    lo, hi, is_prefix = _bounds(rng)
    parts = ix.PARTS.get(rng.field)
    if (not is_prefix or lo != hi or hi is None or parts is None
            or not hi.endswith(ix.SEP) or hi.count(ix.SEP) != parts):
        return None
    return hi


def _has_sublists() -> bool:
    """SortedList keeps its members in ``_lists`` (sorted sublists) with ``_maxes`` (each one's
    last member) in every 2.x release; ``first_with_prefix`` walks them when they are there."""
    probe: Any = SortedList(["a", "b"])
    return (isinstance(getattr(probe, "_lists", None), list) and isinstance(getattr(probe, "_maxes", None), list)
            and [m for sub in probe._lists for m in sub] == ["a", "b"] and probe._maxes[-1] == "b")


_SUBLISTS = _has_sublists()

#: a clause with at most this many members is read as it is found, without counting the others
FEW = 64
#: the length of the ID prefixes that bucket the ``id`` field (16**4 buckets: a handful of
#: IDs each up to about a million records)
BUCKET = 4


def _head_add(heads: dict[str, Any], head: str, rec: Any) -> bool:
    """Note that ``rec`` has a member starting with ``head``; False if it already had one."""
    cur = heads.get(head)
    if cur is None:
        heads[head] = rec
    elif type(cur) is set:
        if rec in cur:
            return False
        cur.add(rec)
    elif cur == rec:
        return False
    else:
        heads[head] = {cur, rec}
    return True


def _head_discard(heads: dict[str, Any], head: str, rec: Any) -> bool:
    """Forget ``rec``'s member starting with ``head``; False if it had none."""
    cur = heads.get(head)
    if type(cur) is set:
        if rec not in cur:
            return False
        cur.discard(rec)
        if len(cur) == 1:
            heads[head] = next(iter(cur))
    elif cur is not None and cur == rec:
        del heads[head]
    else:
        return False
    return True


def _bucket_add(buckets: dict[str, str | tuple[str, ...]], rid: str) -> None:
    key = rid[:BUCKET]
    cur = buckets.get(key)
    if cur is None:
        buckets[key] = rid
    elif type(cur) is str:
        buckets[key] = (cur, rid) if cur < rid else (rid, cur)
    else:
        at = bisect.bisect_left(cur, rid)
        buckets[key] = (*cur[:at], rid, *cur[at:])


def _bucket_discard(buckets: dict[str, str | tuple[str, ...]], rid: str) -> None:
    key = rid[:BUCKET]
    cur = buckets.get(key)
    if cur == rid:
        del buckets[key]
    elif type(cur) is tuple and rid in cur:
        rest = tuple(r for r in cur if r != rid)
        buckets[key] = rest[0] if len(rest) == 1 else rest


_EMPTY: Any = SortedList()  # never modified: the answer for a field nothing has


class MemIndex:
    """Index fields -> sorted member lists and head maps, for one record kind.

    ``records``: the caller's ID -> record mapping (the View's rows), through which
    IDs read from the sorted lists are turned into records; without it a record is
    its ID.
    """

    __slots__ = ("fields", "heads", "records", "buckets")

    def __init__(self, records: Mapping[str, Any] | None = None) -> None:
        self.fields: dict[str, Any] = {}  # field -> SortedList[str] (the package ships no types)
        # field -> head ("<parts>\x00") -> record, or a set of records when several share it
        self.heads: dict[str, dict[str, Any]] = {}
        self.records = records
        # ID prefix buckets: the first BUCKET characters -> the IDs starting with them (one
        # ID, or a sorted tuple), so an ID prefix of at least BUCKET characters is one hash
        # lookup and a short scan instead of bisecting a long sorted list
        self.buckets: dict[str, str | tuple[str, ...]] = {}

    # --- maintenance -----------------------------------------------------------------
    def add(self, field: str, member: str, rec: Any = None) -> None:
        """Index ``member`` of record ``rec`` (default: the ID the member ends with)."""
        lst = self.fields.get(field)
        if lst is None:
            lst = self.fields[field] = SortedList()
        if field not in ix.PARTS:  # "id": the member is the ID itself, no head
            if member not in lst:
                lst.add(member)
                if field == "id":
                    _bucket_add(self.buckets, member)
            return
        heads = self.heads.get(field)
        if heads is None:
            heads = self.heads[field] = {}
        if _head_add(heads, member[: -ix.ID_LEN], member[-ix.ID_LEN:] if rec is None else rec):
            lst.add(member)

    def discard(self, field: str, member: str, rec: Any = None) -> None:
        """Remove ``member`` of record ``rec``, if it is indexed."""
        lst = self.fields.get(field)
        if lst is None:
            return
        if field not in ix.PARTS:
            if member in lst:
                lst.remove(member)
                if field == "id":
                    _bucket_discard(self.buckets, member)
            return
        heads = self.heads.get(field)
        rec = member[-ix.ID_LEN:] if rec is None else rec
        if heads is not None and _head_discard(heads, member[: -ix.ID_LEN], rec):
            lst.remove(member)

    def insert(self, flat: ix.Pairs, rec: Any = None) -> None:
        """Add a record's members (``_indexes.pairs``)."""
        for k in range(0, len(flat), 2):
            self.add(flat[k], flat[k + 1], rec)

    def delete(self, flat: ix.Pairs, rec: Any = None) -> None:
        """Remove a record's members (``_indexes.pairs``)."""
        for k in range(0, len(flat), 2):
            self.discard(flat[k], flat[k + 1], rec)

    def change(self, old: ix.Pairs, new: ix.Pairs, rec: Any = None) -> ix.Pairs:
        """Move a record from members ``old`` to ``new`` (what a commit does to the store's
        sorted sets: removals first, so a name handed from one record to another stays
        mapped), and return ``new`` holding ``old``'s string objects where the members are
        equal: the index and the record then share one copy of each member."""
        if old == new:
            return old
        before = {(old[k], old[k + 1]): old[k + 1] for k in range(0, len(old), 2)}
        out = list(new)
        added = []
        after = set()
        for k in range(0, len(new), 2):
            key = (new[k], new[k + 1])
            after.add(key)
            same = before.get(key)
            if same is None:
                added.append(key)
            else:
                out[k + 1] = same
        for field, member in before.keys() - after:
            self.discard(field, member, rec)
        for field, member in added:
            self.add(field, member, rec)
        return tuple(out)

    def rebuild(self, records: Iterable[tuple[ix.Pairs, Any]]) -> None:
        """Replace everything with the members of ``records`` ((pairs, record) each; a record
        of None is its ID), with one sort per field."""
        fields: dict[str, list[str]] = {}
        heads: dict[str, dict[str, Any]] = {}
        for flat, rec in records:
            for k in range(0, len(flat), 2):
                field, member = flat[k], flat[k + 1]
                lst = fields.get(field)
                if lst is None:
                    lst = fields[field] = []
                lst.append(member)
                if field not in ix.PARTS:
                    continue
                hm = heads.get(field)
                if hm is None:
                    hm = heads[field] = {}
                _head_add(hm, member[: -ix.ID_LEN], member[-ix.ID_LEN:] if rec is None else rec)
        self.fields = {f: SortedList(dict.fromkeys(lst)) for f, lst in fields.items()}
        self.heads = heads
        buckets: dict[str, Any] = {}
        for rid in self.fields.get("id", _EMPTY):  # in order: each bucket comes out sorted
            cur = buckets.get(rid[:BUCKET])
            if cur is None:
                buckets[rid[:BUCKET]] = rid
            elif type(cur) is list:
                cur.append(rid)
            else:
                buckets[rid[:BUCKET]] = [cur, rid]
        self.buckets = {k: tuple(v) if type(v) is list else v for k, v in buckets.items()}

    # --- queries ------------------------------------------------------------------------
    def _span(self, rng: ix.Range) -> tuple[Any, int, int]:
        lst = self.fields.get(rng.field, _EMPTY)
        lo, hi, is_prefix = _bounds(rng)
        start = 0 if lo is None else lst.bisect_left(lo)
        if hi is None:
            end = len(lst)
        elif not is_prefix:
            end = lst.bisect_right(hi)
        elif hi and ord(hi[-1]) < 0x10FFFF:
            # members starting with hi end before hi with its last character incremented
            end = lst.bisect_left(hi[:-1] + chr(ord(hi[-1]) + 1))
        else:
            end = start
            while end < len(lst) and lst[end].startswith(hi):
                end += 1
        return lst, start, max(start, end)

    def _irange(self, rng: ix.Range) -> Iterator[str]:
        """The members in ``rng``, in order, without positions (cheaper than ``_span``)."""
        lst = self.fields.get(rng.field, _EMPTY)
        lo, hi, is_prefix = _bounds(rng)
        if hi is None:
            it: Iterator[str] = lst.irange(lo)
            return it
        if not is_prefix:
            it = lst.irange(lo, hi)
            return it
        if hi and ord(hi[-1]) < 0x10FFFF:
            it = lst.irange(lo, hi[:-1] + chr(ord(hi[-1]) + 1), (True, False))
            return it
        return itertools.takewhile(lambda m: m.startswith(hi), lst.irange(lo))

    def members(self, rng: ix.Range) -> Iterator[str]:
        return self._irange(rng)

    def count(self, rng: ix.Range) -> int:
        _, start, end = self._span(rng)
        return end - start

    def _few(self, clause: tuple[ix.Range, ...]) -> list[str] | None:
        """The clause's members if it has at most ``FEW``, else None (reads at most FEW + 1)."""
        out: list[str] = []
        for rng in clause:
            out += self._first(rng, FEW + 1 - len(out))
            if len(out) > FEW:
                return None
        return out

    def _first(self, rng: ix.Range, limit: int) -> list[str]:
        """Up to ``limit`` members of ``rng``, in order."""
        lo, hi, is_prefix = _bounds(rng)
        if is_prefix and lo == hi and hi is not None:  # ix.exact / ix.prefix: a walk, no irange set-up
            return self.first_with_prefix(rng.field, hi, limit)
        return list(itertools.islice(self._irange(rng), limit))

    def _smallest(self, clauses: Sequence[tuple[ix.Range, ...]]) -> tuple[int, list[str]]:
        """(position, record IDs) of a clause with few members: the first one found with at
        most ``FEW`` (status clauses last: a status is rarely selective), else the smallest,
        counted as fetch.lua counts them.  Any clause gives the same answer (each is a
        superset of it); a small one only makes the rest cheaper."""
        order = sorted(range(len(clauses)), key=lambda k: clauses[k][0].field == "status")
        for k in order:
            few = self._few(clauses[k])
            if few is not None:
                return k, list(dict.fromkeys(m[-ix.ID_LEN:] for m in few))
        best, best_n, best_spans = 0, -1, []
        for k, cl in enumerate(clauses):
            spans = [self._span(r) for r in cl]
            n = sum(end - start for _, start, end in spans)
            if best_n < 0 or n < best_n:
                best, best_n, best_spans = k, n, spans
        seen: dict[str, None] = {}
        for lst, start, end in best_spans:
            for m in lst.islice(start, end):
                seen[m[-ix.ID_LEN:]] = None
        return best, list(seen)

    def candidates(self, clauses: Sequence[tuple[ix.Range, ...]]) -> list[str]:
        """Record IDs of the smallest clause (each clause is a superset of the answer)."""
        if not clauses:
            return list(self.fields.get("id", _EMPTY))
        if len(clauses) == 1:  # nothing to choose from: read it
            if len(clauses[0]) == 1:
                return [m[-ix.ID_LEN:] for m in self._first(clauses[0][0], sys.maxsize)]
            return list(dict.fromkeys(m[-ix.ID_LEN:] for rng in clauses[0] for m in self._irange(rng)))
        return self._smallest(clauses)[1]

    def has(self, field: str, member: str) -> bool:
        if field not in ix.PARTS:
            return member in self.fields.get(field, _EMPTY)
        cur = self.heads.get(field, {}).get(member[: -ix.ID_LEN])
        rid = member[-ix.ID_LEN:]
        rec = rid if self.records is None else self.records.get(rid)
        return cur is not None and rec is not None and (rec in cur if type(cur) is set else cur == rec)

    def _headed(self, clause: tuple[ix.Range, ...]) -> list[Any] | None:
        """The head-map entries (a record or a set of records) of a clause whose ranges all
        name whole heads; None if one does not (the sorted members must answer it)."""
        out = []
        for rng in clause:
            head = exact_head(rng)
            if head is None:
                return None
            hm = self.heads.get(rng.field)
            cur = None if hm is None else hm.get(head)
            if cur is not None:
                out.append(cur)
        return out

    def _record(self, rid: str) -> Any:
        return rid if self.records is None else self.records.get(rid)

    def select(self, clauses: Sequence[tuple[ix.Range, ...]]) -> list[Any] | None:
        """The records in *every* clause: the smallest clause's records, each probed in the others.

        A probe is one head-map lookup per range, so it needs ranges that name
        every value part of the member (``ix.exact`` with all of ``ix.PARTS``);
        ``None`` when some clause other than the one read has a range that does
        not (the caller then matches the records instead).  When every clause
        names whole heads, the head maps answer alone.
        """
        if not clauses:
            if self.records is not None:
                return list(self.records.values())
            return list(self.fields.get("id", _EMPTY))
        if len(clauses) == 1:
            only = self._headed(clauses[0])
            if only is not None and len(only) <= 1:  # one head (a label key=value...): its records
                if not only:
                    return []
                return list(only[0]) if type(only[0]) is set else [only[0]]
        headed = [self._headed(cl) for cl in clauses]
        if all(h is not None for h in headed):
            sizes = [sum(len(c) if type(c) is set else 1 for c in h or ()) for h in headed]
            best = min(range(len(clauses)), key=sizes.__getitem__)
            entries = headed[best] or []
            if len(entries) == 1:
                first = entries[0]
                cands: list[Any] = list(first) if type(first) is set else [first]
            else:  # an OR of heads: a record may be under two of them (Config.Image and Image)
                cands = list(dict.fromkeys(r for c in entries for r in (c if type(c) is set else (c,))))
        else:
            best, rids = self._smallest(clauses)
            if any(h is None for k, h in enumerate(headed) if k != best):
                return None
            cands = [r for r in map(self._record, rids) if r is not None]
        probes = [h or [] for k, h in enumerate(headed) if k != best]
        if not probes:
            return cands
        out = []
        for rec in cands:
            for entries in probes:
                for cur in entries:
                    if (rec in cur) if type(cur) is set else cur == rec:
                        break  # this clause holds
                else:
                    break  # this clause does not: the record is out
            else:
                out.append(rec)
        return out

    def all_members(self, field: str) -> list[str]:
        return list(self.fields.get(field, _EMPTY))

    def first_with_prefix(self, field: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` members starting with ``prefix`` (bisection, no scan)."""
        if field == "id" and len(prefix) >= BUCKET:
            cur = self.buckets.get(prefix[:BUCKET])
            if cur is None:
                return []
            if type(cur) is str:
                return [cur] if cur.startswith(prefix) and limit > 0 else []
            return [rid for rid in cur if rid.startswith(prefix)][:limit]
        lst = self.fields.get(field, _EMPTY)
        out: list[str] = []
        if not _SUBLISTS:
            for m in lst.irange(prefix):
                if not m.startswith(prefix) or len(out) >= limit:
                    break
                out.append(m)
            return out
        # the hot path of a prefix lookup: walk SortedList's sublists directly (irange's
        # generic set-up costs twice the bisections it needs for one or two members)
        lists, maxes = lst._lists, lst._maxes
        p = bisect.bisect_left(maxes, prefix)
        if p == len(maxes):
            return out
        sub = lists[p]
        i = bisect.bisect_left(sub, prefix)
        if prefix and ord(prefix[-1]) < 0x10FFFF:
            # the members starting with prefix end before prefix with its last character
            # incremented: when that end is in this sublist too, one slice is the answer
            j = bisect.bisect_left(sub, prefix[:-1] + chr(ord(prefix[-1]) + 1), i)
            if j < len(sub) or p == len(lists) - 1:
                run: list[str] = sub[i:min(j, i + limit)]
                return run
        while len(out) < limit:
            if i == len(sub):
                p += 1
                if p == len(lists):
                    break
                sub, i = lists[p], 0
            m = sub[i]
            if not m.startswith(prefix):
                break
            out.append(m)
            i += 1
        return out

    def lookup(self, field: str, value: str) -> Any:
        """The record whose member of ``field`` has the value parts ``value`` (a name: one
        head-map probe); None if there is none."""
        hm = self.heads.get(field)
        cur = None if hm is None else hm.get(value + ix.SEP)
        if type(cur) is set:  # a name is unique in the store: never held twice at one revision
            return next(iter(cur))
        return cur
