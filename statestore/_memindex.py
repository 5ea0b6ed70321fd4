"""The in-memory index back end (pure): the store's index members in sorted lists.

The View keeps, per index field, the same members the store keeps in Redis
sorted sets (``_indexes.container_entries`` / ``exec_entries``), in a Python
list kept sorted.  Python orders ``str`` by code point, which is the byte
order of their UTF-8 encoding, so a ``_indexes.Range`` (a ``ZRANGEBYLEX``
range) selects the same members here as in Redis, found by bisection: an
exact or prefix query costs O(log N + M), never a scan.  ``candidates``
answers a plan of ``_filters.plan`` the way fetch.lua does: it counts every
clause, reads only the smallest, and returns the record IDs its members name.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Iterator, Sequence

from . import _indexes as ix
from ._errors import InvalidArgumentError


@functools.lru_cache(maxsize=4096)
def _bounds(rng: ix.Range) -> tuple[str | None, str | None, bool]:
    """(low, high, high_is_prefix): inclusive bounds of a lex range as text.

    ``high_is_prefix``: the upper bound is ``[p\\xff``, i.e. every member starting
    with ``p`` (``\\xff`` never occurs in UTF-8).  ``None`` is an open end.
    """
    lo: str | None
    if rng.min == b"-":
        lo = None
    elif rng.min.startswith(b"["):
        lo = rng.min[1:].decode()
    else:
        raise InvalidArgumentError(f"unsupported range start {rng.min!r}")
    if rng.max == b"+":
        return lo, None, False
    if rng.max.startswith(b"[") and rng.max.endswith(b"\xff"):
        return lo, rng.max[1:-1].decode(), True
    if rng.max.startswith(b"["):
        return lo, rng.max[1:].decode(), False
    raise InvalidArgumentError(f"unsupported range end {rng.max!r}")


class MemIndex:
    """Index fields -> sorted member lists, for one record kind."""

    __slots__ = ("fields", "sets")

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}
        # the same members as sets (same str objects), for O(1) probes
        self.sets: dict[str, set[str]] = {}

    # --- maintenance -----------------------------------------------------------------
    def add(self, field: str, member: str) -> None:
        lst = self.fields.setdefault(field, [])
        i = bisect.bisect_left(lst, member)
        if i == len(lst) or lst[i] != member:
            lst.insert(i, member)
            self.sets.setdefault(field, set()).add(member)

    def discard(self, field: str, member: str) -> None:
        lst = self.fields.get(field)
        if not lst:
            return
        i = bisect.bisect_left(lst, member)
        if i < len(lst) and lst[i] == member:
            del lst[i]
            self.sets[field].discard(member)

    def apply(self, d: ix.IndexDiff) -> None:
        """Apply an ``_indexes.diff`` (what the store's commit does to its sorted sets)."""
        for field, members in d.remove.items():
            for m in members:
                self.discard(field, m)
        for field, members in d.add.items():
            for m in members:
                self.add(field, m)

    def rebuild(self, entries: Iterable[ix.Entries]) -> None:
        """Replace every field with the members of ``entries`` (one sort per field)."""
        fields: dict[str, list[str]] = {}
        for ent in entries:
            for field, members in ent.items():
                fields.setdefault(field, []).extend(members)
        for lst in fields.values():
            lst.sort()
        self.fields = fields
        self.sets = {f: set(lst) for f, lst in fields.items()}

    # --- queries ------------------------------------------------------------------------
    def _span(self, rng: ix.Range) -> tuple[list[str], int, int]:
        lst = self.fields.get(rng.field, [])
        lo, hi, is_prefix = _bounds(rng)
        start = 0 if lo is None else bisect.bisect_left(lst, lo)
        if hi is None:
            end = len(lst)
        elif not is_prefix:
            end = bisect.bisect_right(lst, hi)
        elif hi and ord(hi[-1]) < 0x10FFFF:
            # members starting with hi end before hi with its last character incremented
            end = bisect.bisect_left(lst, hi[:-1] + chr(ord(hi[-1]) + 1))
        else:
            end = start
            while end < len(lst) and lst[end].startswith(hi):
                end += 1
        return lst, start, max(start, end)

    def members(self, rng: ix.Range) -> Iterator[str]:
        lst, start, end = self._span(rng)
        return iter(lst[start:end])

    def count(self, rng: ix.Range) -> int:
        _, start, end = self._span(rng)
        return end - start

    def _smallest(self, clauses: Sequence[tuple[ix.Range, ...]]) -> tuple[int, list[str]]:
        """(position, record IDs) of the clause with the fewest members, as fetch.lua picks it."""
        best, best_n, best_spans = 0, -1, []
        for k, cl in enumerate(clauses):
            spans = [self._span(r) for r in cl]
            n = sum(end - start for _, start, end in spans)
            if best_n < 0 or n < best_n:
                best, best_n, best_spans = k, n, spans
        seen: dict[str, None] = {}
        for lst, start, end in best_spans:
            for m in lst[start:end]:
                seen[m[-ix.ID_LEN:]] = None
        return best, list(seen)

    def candidates(self, clauses: Sequence[tuple[ix.Range, ...]]) -> list[str]:
        """Record IDs of the smallest clause (each clause is a superset of the answer)."""
        if not clauses:
            return list(self.fields.get("id", []))
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
                lo, hi, is_prefix = _bounds(rng)
                parts = ix.PARTS.get(rng.field)
                if (not is_prefix or lo != hi or hi is None or parts is None
                        or not hi.endswith(ix.SEP) or hi.count(ix.SEP) != parts):
                    return None
                heads.append((self.sets.get(rng.field, set()), hi))
            probes.append(heads)
        return [rid for rid in cands
                if all(any(head + rid in members for members, head in heads) for heads in probes)]

    def all_members(self, field: str) -> list[str]:
        return self.fields.get(field, [])

    def first_with_prefix(self, field: str, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` members starting with ``prefix`` (bisection, no scan)."""
        lst = self.fields.get(field, [])
        i = bisect.bisect_left(lst, prefix)
        out: list[str] = []
        while i < len(lst) and len(out) < limit and lst[i].startswith(prefix):
            out.append(lst[i])
            i += 1
        return out
