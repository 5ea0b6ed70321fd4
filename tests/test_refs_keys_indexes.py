"""References, the key schema and index entries (pure)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from statestore import AmbiguousReferenceError, Container, ExecConfig, InvalidArgumentError, NotFoundError, _keys
from statestore import _indexes as ix
from statestore._keys import KeySchema
from statestore._refs import parse_reference, resolve_in

ID_A = "a" * 64
ID_B = "abc" + "1" * 61
ID_C = "abd" + "2" * 61
ID_D = "d" * 64


# --- parse_reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["", "/"])
def test_empty_reference(ref: str) -> None:
    with pytest.raises(InvalidArgumentError, match="prefix can't be empty"):
        parse_reference(ref)


@pytest.mark.parametrize(
    "ref",
    ["*", "ab*", "{ab}", "a{", "a}", "a:b", "a\nb", "\n", "a b", " ab", "ab ", "a\tb", "a?b", "a[b]", "a\\b",
     "a\x00b", "-ab", "_ab", ".ab", "//ab", "a/b", "wéb", "x" * 257, "ab\r"],
)
def test_unsafe_references_are_invalid(ref: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid container reference"):
        parse_reference(ref)


@pytest.mark.parametrize("ref", [None, 5, b"abc", ["abc"]])
def test_non_string_references_are_invalid(ref: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a string"):
        parse_reference(ref)


@pytest.mark.parametrize("ref", ["web\n", "abc\n", "/web\n", "a" * 64 + "\n"])
def test_reference_with_trailing_newline_is_invalid(ref: str) -> None:
    # regression: _REF_RE/_HEX_RE end in '$', which also matches before a trailing newline
    with pytest.raises(InvalidArgumentError):
        parse_reference(ref)


@pytest.mark.parametrize(
    "ref,bare,full_id,name,hex_prefix",
    [
        (ID_A, ID_A, True, True, True),
        ("a" * 63, "a" * 63, False, True, True),
        ("abc", "abc", False, True, True),
        ("a", "a", False, False, True),  # too short for a name
        ("web", "web", False, True, False),
        ("/web", "web", False, True, False),
        ("/abc", "abc", False, True, False),  # a leading slash means a name
        ("ABC", "ABC", False, True, False),  # IDs are lowercase
        ("x", "x", False, False, False),
        ("web_1.prod-2", "web_1.prod-2", False, True, False),
        ("a" * 65, "a" * 65, False, True, False),
    ],
)
def test_reference_classification(ref: str, bare: str, full_id: bool, name: bool, hex_prefix: bool) -> None:
    r = parse_reference(ref)
    assert (r.raw, r.bare, r.full_id, r.name, r.hex_prefix) == (ref, bare, full_id, name, hex_prefix)


def test_exec_references_are_never_names() -> None:
    assert parse_reference("abc", "exec").name is False
    assert parse_reference(ID_A, "exec").full_id is True
    with pytest.raises(InvalidArgumentError, match="invalid exec reference"):
        parse_reference("a b", "exec")


# --- resolve_in ------------------------------------------------------------------------------------


def _world() -> tuple[dict[str, str], dict[str, str]]:
    by_id = {ID_A: "A", ID_B: "B", ID_C: "C", ID_D: "D"}
    names = {
        "web": ID_A,
        ID_D: ID_B,  # a name that is another container's full ID
        "abc": ID_C,  # a name that is also a prefix of ID_B
        "stale": "f" * 64,  # reservation whose holder is gone
    }
    return by_id, names


def test_exact_id_beats_name_beats_prefix() -> None:
    by_id, names = _world()
    assert resolve_in(ID_D, by_id, names) == "D"  # exact ID wins over the name "dddd..."
    assert resolve_in("abc", by_id, names) == "C"  # the name wins over the prefix of ID_B
    assert resolve_in("/abc", by_id, names) == "C"
    assert resolve_in("web", by_id, names) == "A"
    assert resolve_in("/web", by_id, names) == "A"
    assert resolve_in("abc1", by_id, names) == "B"  # a unique prefix
    assert resolve_in("d", by_id, names) == "D"  # no minimum prefix length
    assert resolve_in(ID_B, by_id, names) == "B"


def test_ambiguous_prefix() -> None:
    by_id, names = _world()
    with pytest.raises(AmbiguousReferenceError) as ei:
        resolve_in("ab", by_id, names)
    assert ei.value.prefix == "ab"
    assert str(ei.value) == "multiple IDs found with provided prefix: ab"
    with pytest.raises(AmbiguousReferenceError):
        resolve_in("a", by_id, names)


@pytest.mark.parametrize("ref", ["nope", "/nope", "e", "abe", "stale", "/" + ID_A[:5], "a" * 64 + "b"])
def test_not_found(ref: str) -> None:
    by_id, names = _world()
    with pytest.raises(NotFoundError) as ei:
        resolve_in(ref, by_id, names)
    assert str(ei.value) == f"No such container: {ref}"
    assert ei.value.reference == ref and ei.value.kind == "container"


def test_a_slash_reference_is_never_a_prefix() -> None:
    by_id, _ = _world()
    with pytest.raises(NotFoundError):
        resolve_in("/abc1", by_id, {})
    assert resolve_in("abc1", by_id, {}) == "B"


def test_exec_resolution_skips_names() -> None:
    by_id = {ID_A: "X1", ID_B: "X2"}
    assert resolve_in("abc", by_id, None, "exec") == "X2"
    assert resolve_in(ID_A, by_id, None, "exec") == "X1"
    with pytest.raises(NotFoundError, match="No such exec instance: web"):
        resolve_in("web", by_id, {"web": ID_A}, "exec")


def test_full_id_missing_falls_back_to_name_then_prefix() -> None:
    by_id = {ID_B: "B"}
    assert resolve_in(ID_D, by_id, {ID_D: ID_B}) == "B"
    with pytest.raises(NotFoundError):
        resolve_in(ID_D, by_id, {})


def test_empty_reference_to_resolve_in() -> None:
    with pytest.raises(InvalidArgumentError, match="prefix can't be empty"):
        resolve_in("", {ID_A: 1}, {})


# --- KeySchema ------------------------------------------------------------------------------------


def _all_keys(ks: KeySchema) -> list[str]:
    """Every key the schema can build (methods are called with a sample ID)."""
    out: list[str] = []
    for name, attr in inspect.getmembers(KeySchema):
        if name.startswith("_") or name in ("namespace", "parse"):
            continue
        if isinstance(attr, property):
            value = getattr(ks, name)
            if isinstance(value, str):
                out.append(value)
            continue
        params = list(inspect.signature(attr).parameters)[1:]
        if name == "index_keys":
            out += ks.index_keys("container") + ks.index_keys("exec")
        elif name == "index":
            out += [ks.index("container", f) for f in _keys.CONTAINER_INDEX_FIELDS]
            out += [ks.index("exec", f) for f in _keys.EXEC_INDEX_FIELDS]
        elif name in ("record", "record_prefix", "channel"):
            for kind in ("container", "exec"):
                out.append(attr(ks, kind, ID_A) if len(params) == 2 else attr(ks, kind))
        elif name == "channel_pattern":
            # channels are not keys, but follow the keyspace (and its hash tag) all the same
            out += [ks.channel_pattern(), ks.channel_pattern("container"), ks.channel_pattern("exec")]
        elif len(params) == 1:
            out.append(attr(ks, "web" if name == "name" else ID_A))
        else:  # pragma: no cover - a new kind of key builder: make this test learn about it
            raise AssertionError(f"unknown KeySchema member {name}{params}")
    return out


def _hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes (the first non-empty {...})."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end in (-1, start + 1):
        return key
    return key[start + 1:end]


@pytest.mark.parametrize("ns", ["default", "t1", "A.b-c_d", "x" * 64, "0"])
def test_all_keys_share_the_namespace_hash_tag(ns: str) -> None:
    ks = KeySchema(ns)
    keys = _all_keys(ks)
    assert len(keys) >= 15
    for key in keys:
        assert key.startswith(f"ss:{{{ns}}}:"), key
        assert _hash_tag(key) == ns
        assert key.count("{") == 1 and key.count("}") == 1
    assert ks.match_all == f"ss:{{{ns}}}:*"


def test_key_layout() -> None:
    ks = KeySchema("prod")
    assert ks.base == "ss:{prod}:"
    assert ks.container(ID_A) == f"ss:{{prod}}:c:{ID_A}"
    assert ks.exec(ID_A) == f"ss:{{prod}}:x:{ID_A}"
    assert ks.record("container", ID_A) == ks.container(ID_A)
    assert ks.record_prefix("exec") == "ss:{prod}:x:"
    assert ks.name("web") == "ss:{prod}:name:web"
    assert ks.name_prefix == "ss:{prod}:name:"
    assert ks.index("container", "label") == "ss:{prod}:idx:c:label"
    assert ks.index("exec", "container") == "ss:{prod}:idx:x:container"
    assert ks.log == "ss:{prod}:log"
    assert ks.index_keys("exec") == ("ss:{prod}:idx:x:id", "ss:{prod}:idx:x:container")


def test_keys_of_different_namespaces_never_collide() -> None:
    a, b = KeySchema("a"), KeySchema("ab")
    assert not set(_all_keys(a)) & set(_all_keys(b))
    assert not any(k.startswith(a.base) for k in _all_keys(b))


@pytest.mark.parametrize(
    "ns", ["", "-a", "_a", ".a", "a b", "a{b", "a}b", "a:b", "a*", "x" * 65, "é", "a\nb", "a/b", 5, None],
)
def test_invalid_namespaces(ns: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid namespace"):
        KeySchema(ns)


def test_namespace_with_trailing_newline_is_invalid() -> None:
    # regression: NAMESPACE_RE ends in '$', which also matches before a trailing newline
    with pytest.raises(InvalidArgumentError):
        KeySchema("ns\n")


@pytest.mark.parametrize("part", ["", "a*b", "a{", "a}", "a:b", "a b", "a\n", "a\t", "a?b", "a[b", "a]b", "a\\b",
                                  "a\x00b", "\u2003x"])
def test_unsafe_key_parts(part: str) -> None:
    ks = KeySchema("ns")
    for build in (ks.container, ks.exec, ks.name):
        with pytest.raises(InvalidArgumentError, match="unsafe key part"):
            build(part)


def test_unknown_index_field() -> None:
    ks = KeySchema("ns")
    with pytest.raises(InvalidArgumentError, match="no container index"):
        ks.index("container", "container")
    with pytest.raises(InvalidArgumentError, match="no exec index"):
        ks.index("exec", "label")


def test_parse_keys() -> None:
    ks = KeySchema("ns")
    assert ks.parse(ks.container(ID_A)) == ("c", ID_A)
    assert ks.parse(ks.name("web")) == ("name", "web")
    assert ks.parse(ks.index("container", "status")) == ("idx", "c:status")
    assert ks.parse(ks.log) == ("log", "")
    assert ks.parse("ss:{other}:c:" + ID_A) is None
    assert ks.parse("ss:{ns}") is None


# --- index entries ---------------------------------------------------------------------------------


def _doc(**kw: Any) -> dict[str, Any]:
    kw.setdefault("name", "web")
    kw.setdefault("id", ID_A)
    return Container.new(kw.pop("image", "nginx:1.27"), **kw).to_dict()


def test_container_entries() -> None:
    d = _doc(labels={"app": "web", "empty": ""}, image_id="sha256:" + "c" * 64,
             networks={"appnet": {"NetworkID": "f" * 64}, "bridge": {}})
    e = ix.container_entries(d)
    assert e == {
        "id": {ID_A},
        "name": {f"web\x00{ID_A}"},
        "status": {f"created\x00{ID_A}"},
        "label": {f"app\x00web\x00{ID_A}", f"empty\x00\x00{ID_A}"},
        "image": {f"nginx:1.27\x00{ID_A}", f"sha256:{'c' * 64}\x00{ID_A}"},
        "network": {f"appnet\x00{ID_A}", f"{'f' * 64}\x00{ID_A}", f"bridge\x00{ID_A}"},
    }
    assert set(e) == set(_keys.CONTAINER_INDEX_FIELDS)
    for members in e.values():
        for member in members:
            assert ix.member_id(member) == ID_A
            assert ix.member_id(member.encode()) == ID_A


def test_entries_without_image_id_and_networks() -> None:
    d = _doc(network_mode="none")
    d["NetworkSettings"]["Networks"] = {}
    e = ix.container_entries(d)
    assert e["image"] == {f"nginx:1.27\x00{ID_A}"}
    assert e["network"] == set()
    assert e["label"] == set()


def test_exec_entries() -> None:
    x = ExecConfig.new(ID_A, ["ls"], id=ID_D).to_dict()
    assert ix.exec_entries(x) == {"id": {ID_D}, "container": {f"{ID_A}\x00{ID_D}"}}
    assert ix.entries("exec", x) == ix.exec_entries(x)
    assert ix.entries("container", None) == {}


def test_diff_of_an_unchanged_record_is_empty() -> None:
    d = _doc(labels={"a": "1"})
    dd = ix.diff("container", d, dict(d))
    assert dd.empty and dd.add == {} and dd.remove == {}


def test_rename_changes_only_the_name_member() -> None:
    old = _doc(labels={"a": "1"})
    new = Container.from_dict(old)
    new.name = "api"
    dd = ix.diff("container", old, new.to_dict())
    assert dd.add == {"name": [f"api\x00{ID_A}"]}
    assert dd.remove == {"name": [f"web\x00{ID_A}"]}
    assert not dd.empty


def test_label_change() -> None:
    old = _doc(labels={"a": "1", "b": "2"})
    c = Container.from_dict(old)
    c.labels["a"] = "9"
    del c.labels["b"]
    c.labels["c"] = "3"
    dd = ix.diff("container", old, c.to_dict())
    assert dd.add == {"label": sorted([f"a\x009\x00{ID_A}", f"c\x003\x00{ID_A}"])}
    assert dd.remove == {"label": sorted([f"a\x001\x00{ID_A}", f"b\x002\x00{ID_A}"])}


def test_status_change() -> None:
    old = _doc()
    c = Container.from_dict(old)
    c.state.set_running(pid=1, at="2024-01-01T00:00:00.000000000Z")
    dd = ix.diff("container", old, c.to_dict())
    assert dd.add == {"status": [f"running\x00{ID_A}"]}
    assert dd.remove == {"status": [f"created\x00{ID_A}"]}
    # pausing changes the status member again; unpausing restores it
    paused = Container.from_dict(c.to_dict())
    paused.state.set_paused()
    assert ix.diff("container", c.to_dict(), paused.to_dict()).add == {"status": [f"paused\x00{ID_A}"]}
    # a change of a field no index reads leaves the indexes alone
    other = Container.from_dict(c.to_dict())
    other.config.env = ["X=1"]
    other.restart_count = 4
    assert ix.diff("container", c.to_dict(), other.to_dict()).empty


def test_create_and_delete_diffs() -> None:
    d = _doc(labels={"a": "1"})
    created = ix.diff("container", None, d)
    assert created.remove == {}
    assert {k: set(v) for k, v in created.add.items()} == {k: v for k, v in ix.container_entries(d).items() if v}
    deleted = ix.diff("container", d, None)
    assert deleted.add == {}
    assert deleted.remove == created.add


def test_ids_from_members_dedupes_in_order() -> None:
    members: list[bytes | str] = [f"web\x00{ID_B}", f"x\x00{ID_A}".encode(), ID_B, f"y\x00{ID_A}"]
    assert ix.ids_from_members(members) == [ID_B, ID_A]


def test_ranges() -> None:
    assert ix.exact("label", "k", "v") == ix.Range("label", b"[k\x00v\x00", b"[k\x00v\x00\xff")
    assert ix.exact("status", "running") == ix.Range("status", b"[running\x00", b"[running\x00\xff")
    assert ix.prefix("network", "ü") == ix.Range("network", "[ü".encode(), "[ü".encode() + b"\xff")
    assert ix.everything("id") == ix.Range("id", b"-", b"+")
