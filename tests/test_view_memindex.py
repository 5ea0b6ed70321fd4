"""The in-memory index back end (pure, no Redis): ranges select what ZRANGEBYLEX would.

Redis compares members as bytes; the brute force here does exactly that over
the UTF-8 encodings, and the sorted lists must agree for exact, prefix and
whole-index ranges, after any sequence of adds, removals, changes and rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InvalidArgumentError
from statestore import _indexes as ix
from statestore._memindex import FEW, MemIndex, exact_head

IDS = st.text("0123456789abcdef", min_size=64, max_size=64)
# short values over an alphabet with separators, high code points and shared prefixes
VALUES = st.text(st.sampled_from(["a", "b", "\x00", "é", "\u4e2d", "\U0001f600", "\U0010ffff", "=", "z"]),
                 max_size=4)


def brute(members: set[str], rng: ix.Range) -> list[str]:
    """What ZRANGEBYLEX returns: members within the byte-wise bounds, in byte order."""
    def ok(m: bytes) -> bool:
        lo_ok = rng.min == b"-" or m >= rng.min[1:]
        hi_ok = rng.max == b"+" or m <= rng.max[1:]
        return lo_ok and hi_ok
    return sorted((m for m in members if ok(m.encode())), key=str.encode)


def ranges(field: str) -> Any:
    return st.one_of(
        st.lists(VALUES, min_size=1, max_size=2).map(lambda parts: ix.exact(field, *parts)),
        VALUES.map(lambda p: ix.prefix(field, p)),
        st.just(ix.everything(field)),
    )


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), VALUES, VALUES, IDS), max_size=40), st.lists(ranges("f"), max_size=6))
def test_ranges_select_what_zrangebylex_would(ops: list[tuple[bool, str, str, str]],
                                             rngs: list[ix.Range]) -> None:
    idx = MemIndex()
    model: set[str] = set()
    for add, a, b, rid in ops:
        m = f"{a}{ix.SEP}{b}{ix.SEP}{rid}"
        if add:
            idx.add("f", m)
            model.add(m)
        else:
            idx.discard("f", m)
            model.discard(m)
    assert idx.all_members("f") == sorted(model, key=str.encode)
    for rng in rngs:
        assert list(idx.members(rng)) == brute(model, rng), rng
        assert idx.count(rng) == len(brute(model, rng))
    clauses = [tuple(rngs[k:k + 2]) for k in range(0, len(rngs), 2) if rngs[k:k + 2]]
    if clauses:
        sizes = [sum(len(brute(model, r)) for r in cl) for cl in clauses]
        # a clause found with at most FEW members is taken as found; else the smallest, as fetch.lua
        acceptable = [{ix.member_id(m) for r in cl for m in brute(model, r)}
                      for cl, n in zip(clauses, sizes, strict=True) if n <= FEW or n == min(sizes)]
        assert set(idx.candidates(clauses)) in acceptable
    rebuilt = MemIndex()
    rebuilt.rebuild([(flat("f", model), None)])
    assert rebuilt.fields.get("f", []) == idx.all_members("f")


def flat(field: str, members: Iterable[str]) -> ix.Pairs:
    """``members`` of one field as ``_indexes.pairs`` (what ``rebuild`` takes per record)."""
    return tuple(x for m in members for x in (field, m))


def doc(cid: str, name: str, labels: dict[str, str], running: bool) -> dict[str, Any]:
    return {"Id": cid, "Name": "/" + name, "Config": {"Labels": labels, "Image": "busybox"},
            "Image": "sha256:" + "1" * 64,
            "State": {"Status": "running" if running else "exited", "Running": running, "Paused": False,
                      "Restarting": False, "Dead": False, "OOMKilled": False}}


@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["web", "db"])),
                          st.sampled_from(["web", "db", "x"]), st.booleans()), min_size=1, max_size=8))
def test_diffs_keep_the_index_equal_to_a_rebuild(versions: list[tuple[dict[str, str], str, bool]]) -> None:
    cid = "ab" * 32
    idx = MemIndex()
    old: ix.Pairs | None = None
    for labels, name, running in versions:
        new = ix.container_pairs(doc(cid, name, labels, running))
        kept = new if old is None else idx.change(old, new)
        if old is None:
            idx.insert(new)
        assert kept == new
        # the record's members are the index's own strings (one copy of each in memory)
        held = {id(m) for f, members in idx.fields.items() for m in members}
        assert all(id(kept[k]) in held for k in range(1, len(kept), 2))
        old = kept
        fresh = MemIndex()
        fresh.rebuild([(new, None)])
        assert fresh.heads == {f: m for f, m in idx.heads.items() if m}
        assert {f: m for f, m in idx.fields.items() if m} == {f: m for f, m in fresh.fields.items() if m}
        assert ix.group("container", new) == ix.container_entries(doc(cid, name, labels, running))
    assert old is not None
    idx.delete(old)
    assert all(not m for m in idx.fields.values())


def test_lookup_helpers_bisect_without_scanning() -> None:
    idx = MemIndex()
    idx.rebuild([(flat("id", {"ab" + "0" * 62, "ab" + "1" * 62, "b" * 64}), None)])
    assert idx.first_with_prefix("id", "ab", 2) == ["ab" + "0" * 62, "ab" + "1" * 62]
    assert idx.first_with_prefix("id", "b", 2) == ["b" * 64]
    assert idx.first_with_prefix("id", "c", 2) == []
    assert idx.candidates([]) == sorted(idx.all_members("id"))


def test_a_range_that_is_not_a_lex_range_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        MemIndex().count(ix.Range("id", b"(a", b"+"))


def test_a_clause_over_few_members_is_counted_and_the_smallest_taken() -> None:
    idx = MemIndex()
    big = [f"a{ix.SEP}{i:064x}" for i in range(FEW + 5)]
    small = [f"b{ix.SEP}{i:064x}" for i in range(FEW + 2)]
    for m in big + small:
        idx.add("f", m)
    clauses = [(ix.exact("f", "a"),), (ix.exact("f", "b"),)]
    assert set(idx.candidates(clauses)) == {ix.member_id(m) for m in small}
    # a clause within FEW is taken as found, before counting the others
    idx.discard("f", big[0])
    tiny = [(ix.exact("f", "a"),), (ix.exact("f", "c"),)]
    idx.add("f", f"c{ix.SEP}{'f' * 64}")
    assert idx.candidates(tiny) == ["f" * 64]


@pytest.mark.parametrize("sublists", [True, False], ids=["sublists", "irange"])
@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("0123", min_size=1, max_size=6), min_size=0, max_size=3000),
       st.lists(st.text("0123", max_size=7), min_size=1, max_size=20), st.integers(1, 3))
def test_first_with_prefix_walks_across_sublists(sublists: bool, values: list[str], prefixes: list[str],
                                                 limit: int) -> None:
    """Thousands of members put several SortedList sublists in play; a prefix run may cross them."""
    import statestore._memindex as mi

    idx = MemIndex()
    idx.rebuild([(flat("id", set(values)), None)])
    for v in values[::7]:  # adds and removals split and join sublists
        idx.discard("id", v)
        idx.add("id", v + "0")
    model = sorted(set(idx.all_members("id")))
    old = mi._SUBLISTS
    mi._SUBLISTS = sublists and old
    try:
        for p in prefixes:
            assert idx.first_with_prefix("id", p, limit) == [m for m in model if m.startswith(p)][:limit]
    finally:
        mi._SUBLISTS = old


def test_the_installed_sortedcontainers_keeps_sublists() -> None:
    """The lock's sortedcontainers has the layout first_with_prefix walks (else it falls back to irange)."""
    import statestore._memindex as mi

    assert mi._SUBLISTS


@given(st.lists(st.tuples(st.sampled_from(["a" * 64, "b" * 64, "c" * 64]), st.sampled_from(["web", "db", "x"]),
                          st.booleans()), max_size=30))
def test_unique_names_map_to_their_record_like_the_name_index(ops: list[tuple[str, str, bool]]) -> None:
    """``lookup`` answers what the name field's members say, after renames, deletes and rebuilds."""
    idx = MemIndex()
    docs: dict[str, dict[str, Any]] = {}
    held: dict[str, ix.Pairs] = {}
    for cid, name, keep in ops:
        if any(d["Name"] == "/" + name for k, d in docs.items() if k != cid):
            continue  # names are unique in the store: a commit taking a held name is refused
        old = held.pop(cid, None)
        new = ix.container_pairs(doc(cid, name, {}, True)) if keep else None
        if new is None:
            if old is not None:
                idx.delete(old)
            docs.pop(cid, None)
        else:
            if old is None:
                idx.insert(new)
            held[cid] = new if old is None else idx.change(old, new)
            docs[cid] = doc(cid, name, {}, True)
        expect = {d["Name"][1:]: k for k, d in docs.items()}
        assert idx.heads.get("name", {}) == {n + ix.SEP: k for n, k in expect.items()}
        assert all(idx.lookup("name", n) == k for n, k in expect.items())
        assert idx.lookup("name", "nope") is None
    fresh = MemIndex()
    fresh.rebuild([(ix.container_pairs(d), None) for d in docs.values()])
    assert fresh.heads.get("name", {}) == idx.heads.get("name", {})


def test_a_prefix_run_across_sublist_boundaries_is_read_whole() -> None:
    import itertools

    members = {"".join(t) for t in itertools.product("0123", repeat=6)}  # 4,096 members
    idx = MemIndex()
    idx.rebuild([(flat("id", members), None)])
    lst = idx.fields["id"]
    assert len(lst._lists) > 1  # several sublists: the walk must cross from one to the next
    for sub in lst._lists[:-1]:
        last = sub[-1]
        for p in (last[:3], last[:5], last[:1], last):
            expect = sorted(m for m in members if m.startswith(p))
            assert idx.first_with_prefix("id", p, len(expect) + 1) == expect


class Holder:
    """A record as the View indexes it: an object compared by identity, not its ID."""

    def __init__(self, rid: str) -> None:
        self.id = rid


CLAUSE_POOL = [
    (ix.exact("label", "app", "web"),), (ix.exact("label", "app", "db"),), (ix.exact("label", "tier", "x"),),
    (ix.exact("status", "running"),), (ix.exact("status", "running"), ix.exact("status", "exited")),
    (ix.exact("image", "busybox"), ix.exact("image", "sha256:" + "1" * 64)),
    (ix.exact("label", "app"),),  # a key-only label: a prefix of heads, answered by the sorted members
    (ix.prefix("image", "sha256:1"),),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.dictionaries(st.sampled_from(["app", "tier"]),
                                                               st.sampled_from(["web", "db", "x"])),
                          st.sampled_from(["web", "db", "x", "y"]), st.booleans(), st.booleans()),
                min_size=1, max_size=25),
       st.lists(st.lists(st.sampled_from(CLAUSE_POOL), min_size=0, max_size=3), min_size=1, max_size=6))
def test_select_finds_the_records_in_every_clause(
        ops: list[tuple[int, dict[str, str], str, bool, bool]], plans: list[list[tuple[ix.Range, ...]]]) -> None:
    """Head maps and sorted members answer ``select`` as a brute-force match of the members would,
    after creates, changes and deletes, for holders (the View's records) and after a rebuild."""
    records: dict[str, Holder] = {}
    idx = MemIndex(records=records)
    held: dict[str, ix.Pairs] = {}
    for n, labels, name, running, keep in ops:
        cid = f"{n:x}" * 64
        new = ix.container_pairs(doc(cid, f"{name}{n}", labels, running)) if keep else None
        old = held.pop(cid, None)
        if new is None:
            if old is not None:
                idx.delete(old, records.pop(cid))
            continue
        if old is None:
            records[cid] = Holder(cid)
            idx.insert(new, records[cid])
            held[cid] = new
        else:
            held[cid] = idx.change(old, new, records[cid])
    rebuilt = MemIndex(records=records)
    rebuilt.rebuild([(held[cid], records[cid]) for cid in held])
    assert rebuilt.heads == {f: hm for f, hm in idx.heads.items() if hm}

    def members_in(cid: str, clause: tuple[ix.Range, ...]) -> bool:
        flat = held[cid]
        return any(rng.field == flat[k] and flat[k + 1] in brute([flat[k + 1]], rng)
                   for rng in clause for k in range(0, len(flat), 2))

    for plan in plans:
        expect = {cid for cid in held if all(members_in(cid, cl) for cl in plan)}
        for index in (idx, rebuilt):
            got = index.select(plan)
            if got is None:  # some clause besides the one read needs the records matched
                assert any(exact_head(r) is None for cl in plan for r in cl)
                continue
            assert all(isinstance(r, Holder) for r in got)
            assert sorted(r.id for r in got) == sorted(expect)
    for cid in held:
        name = held[cid][3][: -ix.ID_LEN - 1]
        assert idx.lookup("name", name) is records[cid]
        assert rebuilt.lookup("name", name) is records[cid]
