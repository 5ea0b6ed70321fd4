"""The in-memory index back end (pure): the store's index members in sorted lists.

The View keeps, per index field, the same members the store keeps in Redis
sorted sets (``_indexes.container_entries`` / ``exec_entries``), in a
``sortedcontainers.SortedList``: a list of sorted sublists, so adding or
removing a member costs O(log N) even in a field of a million members (a
plain list's insert moves half of it), while bisection and positional slices
stay as cheap as a list's.  Python orders ``str`` by code point, which is the
byte order of their UTF-8 encoding, so a ``_indexes.Range`` (a ``ZRANGEBYLEX``
range) selects the same members here as in Redis: an exact or prefix query
costs O(log N + M), never a scan.  ``candidates`` answers a plan of
``_filters.plan`` the way fetch.lua does: it counts every clause, reads only
the smallest, and returns the record IDs its members name.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
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
_EMPTY: Any = SortedList()  # never modified: the answer for a field nothing has


class MemIndex:
    """Index fields -> sorted member lists, for one record kind."""

    __slots__ = ("fields", "sets", "heads")

    def __init__(self, unique: Iterable[str] = ()) -> None:
        self.fields: dict[str, Any] = {}  # field -> SortedList[str] (the package ships no types)
        # the same members as sets (same str objects), for O(1) probes
        self.sets: dict[str, set[str]] = {}
        # fields whose value names one record (container names): value -> record ID, so an
        # exact lookup is one dict probe (``lookup``) instead of a bisection
        self.heads: dict[str, dict[str, str]] = {f: {} for f in unique}

    # --- maintenance -----------------------------------------------------------------
    def add(self, field: str, member: str) -> None:
        s = self.sets.get(field)
        if s is None:
            s = self.sets[field] = set()
            self.fields[field] = SortedList()
        if member not in s:
            s.add(member)
            self.fields[field].add(member)
            heads = self.heads.get(field)
            if heads is not None:
                heads[member[: -ix.ID_LEN - 1]] = member[-ix.ID_LEN:]

    def discard(self, field: str, member: str) -> None:
        s = self.sets.get(field)
        if s is not None and member in s:
            s.discard(member)
            self.fields[field].remove(member)
            heads = self.heads.get(field)
            if heads is not None and heads.get(member[: -ix.ID_LEN - 1]) == member[-ix.ID_LEN:]:
                del heads[member[: -ix.ID_LEN - 1]]

    def insert(self, flat: ix.Pairs) -> None:
        """Add a record's members (``_indexes.pairs``)."""
        for k in range(0, len(flat), 2):
            self.add(flat[k], flat[k + 1])

    def delete(self, flat: ix.Pairs) -> None:
        """Remove a record's members (``_indexes.pairs``)."""
        for k in range(0, len(flat), 2):
            self.discard(flat[k], flat[k + 1])

    def change(self, old: ix.Pairs, new: ix.Pairs) -> ix.Pairs:
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
            self.discard(field, member)
        for field, member in added:
            self.add(field, member)
        return tuple(out)

    def rebuild(self, records: Iterable[ix.Pairs]) -> None:
        """Replace every field with the members of ``records`` (one sort per field)."""
        fields: dict[str, list[str]] = {}
        for flat in records:
            for k in range(0, len(flat), 2):
                lst = fields.get(flat[k])
                if lst is None:
                    lst = fields[flat[k]] = []
                lst.append(flat[k + 1])
        self.sets = {f: set(lst) for f, lst in fields.items()}
        self.fields = {f: SortedList(self.sets[f]) for f in fields}
        self.heads = {f: {m[: -ix.ID_LEN - 1]: m[-ix.ID_LEN:] for m in self.sets.get(f, ())}
                      for f in self.heads}

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
        s = self.sets.get(field)
        return s is not None and member in s

    def select(self, clauses: Sequence[tuple[ix.Range, ...]]) -> list[str] | None:
        """The IDs in *every* clause: the smallest clause's IDs, each probed in the others.

        A probe is one set lookup per range (the member ``<parts>\x00<id>``), so it
        needs ranges that name every value part of the member (``ix.exact`` with
        all of ``ix.PARTS``); ``None`` when some other clause has a range that
        does not (the caller then matches the records instead).
        """
        if len(clauses) < 2:
            return self.candidates(clauses)
        best, cands = self._smallest(clauses)
        probes: list[list[tuple[set[str], str]]] = []
        for k, cl in enumerate(clauses):
            if k == best:
                continue
            heads = []
            for rng in cl:
                head = exact_head(rng)
                if head is None:
                    return None
                heads.append((self.sets.get(rng.field, set()), head))
            probes.append(heads)
        out: list[str] = []
        for rid in cands:
            for heads in probes:
                for members, head in heads:
                    if head + rid in members:
                        break  # this clause holds
                else:
                    break  # this clause does not: rid is out
            else:
                out.append(rid)
        return out

    def all_members(self, field: str) -> list[str]:
        return list(self.fields.get(field, _EMPTY))

    def first_with_prefix(self, field: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` members starting with ``prefix`` (bisection, no scan)."""
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

    def lookup(self, field: str, value: str) -> str | None:
        """The record ID whose member of a ``unique`` field is ``value`` (one dict probe);
        None if there is none, or ``field`` is not one of the index's ``unique`` fields."""
        heads = self.heads.get(field)
        return None if heads is None else heads.get(value)
