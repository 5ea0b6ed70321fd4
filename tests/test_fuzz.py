"""Fuzzing the pure core with hypothesis: decoding, references, filters, keys."""

from __future__ import annotations

import re
import warnings
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from statestore import (
    Container,
    CorruptRecordError,
    ExecConfig,
    InvalidArgumentError,
    _codec,
    _keys,
    _model,
    parse_filter_args,
)
from statestore import _filters as F
from statestore import _indexes as ix
from statestore._keys import KeySchema
from statestore._refs import _REF_RE, parse_reference

ID_A = "a" * 64
CKEY = "ss:{fz}:c:" + ID_A
XKEY = "ss:{fz}:x:" + ID_A
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNSAFE_IN_KEY = re.compile(r"[{}*\s]")

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)


def _decode_or_corrupt(kind: str, key: str, raw: bytes | str, max_bytes: int = _codec.DEFAULT_MAX_RECORD_BYTES) -> Any:
    """decode(), allowing only CorruptRecordError (SchemaVersionError is a subclass) to escape."""
    try:
        return _codec.decode(kind, key, raw, max_bytes)
    except CorruptRecordError as exc:
        assert exc.key == key
        return None


# --- the decoder ---------------------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=300), kind=st.sampled_from(["container", "exec"]))
@example(raw=b"\xff", kind="container")
@example(raw=b"[" * 2000, kind="exec")
@example(raw=b'{"Id": "' + ID_A.encode() + b'"}', kind="container")
def test_decoder_on_arbitrary_bytes(raw: bytes, kind: str) -> None:
    _decode_or_corrupt(kind, CKEY if kind == "container" else XKEY, raw)


@FAST
@given(raw=st.text(max_size=200), max_bytes=st.integers(1, 400))
def test_decoder_on_arbitrary_text(raw: str, max_bytes: int) -> None:
    _decode_or_corrupt("container", CKEY, raw, max_bytes)


@FAST
@given(value=json_values, kind=st.sampled_from(["container", "exec"]))
def test_decoder_on_arbitrary_json(value: Any, kind: str) -> None:
    _decode_or_corrupt(kind, CKEY, orjson.dumps(value))


@FAST
@given(extra=st.dictionaries(st.sampled_from(["Id", "ID", "StateStore", "Name", "State", "Config", "Created",
                                               "NetworkSettings", "ExecIDs", "ContainerID", "ProcessConfig"]),
                             json_values, max_size=8),
       meta=st.none() | st.fixed_dictionaries({}, optional={
           "Schema": st.integers(-2, 3) | json_scalars,
           "Kind": st.sampled_from(["container", "exec", ""]) | json_scalars,
           "Version": st.integers(-1, 5) | json_scalars}),
       kind=st.sampled_from(["container", "exec"]))
def test_decoder_on_arbitrary_objects_with_record_keys(extra: dict[str, Any], meta: Any, kind: str) -> None:
    doc = dict(extra)
    doc.setdefault("Id" if kind == "container" else "ID", ID_A)
    if meta is not None:
        doc["StateStore"] = meta
    _decode_or_corrupt(kind, CKEY, orjson.dumps(doc))


@SLOW
@given(depth=st.integers(1, 3000), shape=st.sampled_from(["list", "dict", "mixed"]),
       where=st.sampled_from(["top", "label-value", "extra-field"]))
def test_decoder_on_deeply_nested_json(depth: int, shape: str, where: str) -> None:
    def nest(n: int) -> bytes:
        if shape == "list":
            return b"[" * n + b"1" + b"]" * n
        if shape == "dict":
            return b'{"a":' * n + b"1" + b"}" * n
        return b'{"a":[' * (n // 2) + b"1" + b"]}" * (n // 2)

    if where == "top":
        raw = nest(depth)
    else:
        doc = Container.new("nginx", id=ID_A).to_dict()
        if where == "label-value":
            doc["Config"]["Labels"] = {"k": "@@NEST@@"}
        else:
            doc["Deep"] = "@@NEST@@"
        raw = orjson.dumps(doc).replace(b'"@@NEST@@"', nest(depth))
    result = _decode_or_corrupt("container", CKEY, raw)
    if where == "label-value":
        assert result is None  # a label value must be a string
    if where == "extra-field" and depth < _codec.MAX_DEPTH - 5:
        assert result is not None and result.id == ID_A  # unknown fields are kept
    if result is not None:
        # whatever is read can be written back (orjson writes at most 254 levels)
        assert _codec.decode("container", CKEY, _codec.encode(result)) == result


# Paths of a container document a mutation may replace or delete.
_PATHS: list[tuple[str | int, ...]] = [
    ("Name",), ("Created",), ("State",), ("Config",), ("HostConfig",), ("NetworkSettings",), ("Mounts",),
    ("Image",), ("ExecIDs",), ("RestartCount",), ("StateStore",),
    ("State", "Running"), ("State", "Paused"), ("State", "Restarting"), ("State", "Dead"),
    ("State", "RemovalInProgress"), ("State", "StartedAt"), ("State", "Health"), ("State", "Pid"),
    ("State", "ExitCode"), ("State", "Error"),
    ("Config", "Labels"), ("Config", "Image"), ("Config", "ExposedPorts"),
    ("NetworkSettings", "Networks"), ("NetworkSettings", "Ports"),
    ("HostConfig", "PortBindings"), ("HostConfig", "PortBindings", "80/tcp"),
    ("NetworkSettings", "Ports", "80/tcp"), ("NetworkSettings", "Networks", "appnet"),
    ("NetworkSettings", "Networks", "appnet", "NetworkID"), ("Mounts", 0), ("State", "Health", "Status"),
    ("State", "Health", "Log"), ("Config", "Labels", "app"),
    ("StateStore", "Schema"), ("StateStore", "Kind"), ("StateStore", "Version"),
]
_MISSING = object()


def _base_doc() -> dict[str, Any]:
    c = Container.new("nginx:1.27", name="web", id=ID_A, labels={"app": "web"}, exposed_ports=["80/tcp"],
                      networks={"appnet": {"NetworkID": "f" * 64}}, port_bindings={"80/tcp": [{"HostPort": "80"}]},
                      mounts=[{"Name": "v", "Destination": "/v"}])
    c.state.set_running(pid=4, at="2024-01-01T00:00:00.000000000Z")
    c.state.set_health("healthy")
    return c.to_dict()


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = _base_doc()
    for path in draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=3)):
        parent: Any = doc
        for p in path[:-1]:
            if isinstance(parent, dict) and isinstance(p, str):
                parent = parent.get(p)
            elif isinstance(parent, list) and isinstance(p, int) and p < len(parent):
                parent = parent[p]
            else:
                parent = None
        last = path[-1]
        value = draw(st.just(_MISSING) | json_values)
        if isinstance(parent, dict) and isinstance(last, str):
            if value is _MISSING:
                parent.pop(last, None)
            else:
                parent[last] = value
        elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            if value is _MISSING:
                del parent[last]
            else:
                parent[last] = value
    return doc


# Queries touching every field a filter reads (ports, mounts, images, exit codes, health, networks).
_QUERIES: list[dict[str, list[str]]] = [
    {}, {"status": ["running", "exited"]}, {"label": ["app", "app=web"]}, {"name": ["web", "^w"]},
    {"id": ["^a"]}, {"health": ["none", "healthy"]}, {"network": ["appnet", "f"]}, {"is-task": ["false"]},
    {"publish": ["80", "1-100/udp"]}, {"expose": ["80", "53/udp"]}, {"volume": ["v", "/v"]},
    {"ancestor": ["nginx", "ab12", "sha256:ab"]}, {"exited": ["0", "1"]},
]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated_documents())
def test_decodable_documents_can_be_indexed_and_filtered(doc: dict[str, Any]) -> None:
    rec = _decode_or_corrupt("container", CKEY, orjson.dumps(doc))
    if rec is None:
        return
    d = rec.to_dict()
    entries = ix.container_entries(d)
    for members in entries.values():
        assert all(ix.member_id(m) == ID_A for m in members)
    assert ix.diff("container", d, d).empty
    for filters in _QUERIES:
        for all_ in (False, True):
            F.matches(F.make_query(filters, all=all_), d, before="9", since="0")
    # and what decodes re-encodes to something that decodes to the same record
    again = _codec.decode("container", CKEY, _codec.encode(rec))
    assert again == rec


# --- references ------------------------------------------------------------------------------------


@FAST
@given(ref=st.text(max_size=80) | st.from_regex(_REF_RE, fullmatch=True), kind=st.sampled_from(["container", "exec"]))
@example(ref="web\n", kind="container")
@example(ref="{ns}", kind="container")
def test_parse_reference_only_raises_invalid_argument(ref: str, kind: str) -> None:
    try:
        r = parse_reference(ref, kind)
    except InvalidArgumentError:
        return
    assert r.raw == ref
    assert not r.bare.startswith("/")
    assert r.bare
    if r.full_id:
        assert r.hex_prefix and len(r.bare) == 64
    if kind == "exec":
        assert not r.name


_NAMESPACES = st.from_regex(_keys.NAMESPACE_RE, fullmatch=True)


@FAST
@given(ns=_NAMESPACES, ref=st.text(max_size=70) | st.from_regex(_REF_RE, fullmatch=True))
def test_keys_from_accepted_references_are_safe(ns: str, ref: str) -> None:
    try:
        r = parse_reference(ref)
    except InvalidArgumentError:
        return
    ks = KeySchema(ns)
    keys = [ks.name(r.bare)]
    if r.full_id:
        keys += [ks.container(r.bare), ks.exec(r.bare)]
    for key in keys:
        assert key.startswith(ks.base)
        assert not UNSAFE_IN_KEY.search(key[len(ks.base):]), key
        assert ks.parse(key) is not None


@FAST
@given(ns=_NAMESPACES, name=st.text(max_size=40) | st.from_regex(_model.NAME_RE, fullmatch=True))
def test_keys_from_accepted_names_are_safe(ns: str, name: str) -> None:
    try:
        bare = _model.normalize_name(name)
    except InvalidArgumentError:
        return
    ks = KeySchema(ns)
    key = ks.name(bare)
    assert not UNSAFE_IN_KEY.search(key[len(ks.base):])
    # the name is also a valid reference that resolves to the same key
    assert parse_reference(name).bare == bare


@FAST
@given(ns=st.text(max_size=70) | _NAMESPACES)
def test_namespaces_either_fail_or_make_a_clean_hash_tag(ns: str) -> None:
    try:
        ks = KeySchema(ns)
    except InvalidArgumentError:
        return
    assert not UNSAFE_IN_KEY.search(ns)
    assert ks.container(ID_A) == f"ss:{{{ns}}}:c:{ID_A}"


# --- filters ----------------------------------------------------------------------------------------

_filter_keys = st.sampled_from(F.ACCEPTED) | st.text(max_size=10)


@FAST
@given(args=st.lists(st.text(max_size=30), max_size=6))
@example(args=["label"])
@example(args=["=x", "status=running"])
def test_parse_filter_args_only_raises_invalid_argument(args: list[str]) -> None:
    try:
        parsed = parse_filter_args(args)
    except InvalidArgumentError:
        return
    assert sum(len(v) for v in parsed.values()) == len(args)
    try:
        F.make_query(parsed)
    except InvalidArgumentError:
        pass


@FAST
@given(filters=st.dictionaries(_filter_keys, st.text(max_size=20) | st.lists(st.text(max_size=20), max_size=3),
                               max_size=5),
       all_=st.booleans(), limit=st.none() | st.integers(-3, 50))
@example(filters={"publish": ["65535-1"]}, all_=False, limit=None)
@example(filters={"exited": ["9" * 5000]}, all_=False, limit=None)
def test_make_query_only_raises_invalid_argument(filters: dict[str, Any], all_: bool, limit: int | None) -> None:
    try:
        query = F.make_query(filters, all=all_, limit=limit)
    except InvalidArgumentError:
        return
    assert set(query.filters) <= set(F.ACCEPTED)
    if limit:
        assert query.all and query.limit == limit
    # a valid query can always be planned, and every range is well formed
    for clause in F.plan(query):
        assert clause
        for r in clause:
            assert r.field in _keys.CONTAINER_INDEX_FIELDS
            assert r.min[:1] in (b"[", b"(", b"-") and r.max[:1] in (b"[", b"(", b"+")
            assert r.min <= r.max


@SLOW
@given(patterns=st.lists(st.text(max_size=8), min_size=1, max_size=3),
       name=st.from_regex(r"[a-z0-9][a-z0-9_.-]{1,10}", fullmatch=True))
def test_name_and_id_patterns_never_raise(patterns: list[str], name: str) -> None:
    assume(all(p and "\x00" not in p for p in patterns))
    doc = Container.new("nginx", name=name, id=ID_A).to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Python's re warns about some patterns (e.g. nested sets)
        for key, sources in (("name", (name, "/" + name)), ("id", (ID_A,))):
            query = F.make_query({key: patterns}, all=True)
            hit = F.matches(query, doc)
            if any(p in sources for p in patterns):
                assert hit  # exact values always match, whatever they mean as a regex
            assert F.member_matches(query, key, (f"{name}\x00{ID_A}" if key == "name" else ID_A)) is hit


@SLOW
@given(label_filters=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3),
       labels=st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda s: "\x00" not in s),
                              st.text(max_size=6).filter(lambda s: "\x00" not in s), max_size=3))
def test_label_filters_on_arbitrary_labels(label_filters: list[str], labels: dict[str, str]) -> None:
    assume(all("\x00" not in f for f in label_filters))
    doc = Container.new("nginx", labels=labels, id=ID_A).to_dict()
    query = F.make_query({"label": label_filters}, all=True)
    expected = all(
        (k in labels and (not sep or labels[k] == v))
        for k, sep, v in (f.partition("=") for f in label_filters)
    )
    assert F.matches(query, doc) is expected
    # the index agrees: each label's clause holds one of the document's members exactly when that label holds
    members = ix.container_entries(doc)["label"]
    clauses = F.plan(query)
    assert len(clauses) == len(label_filters)
    for f, clause in zip(label_filters, clauses, strict=True):
        k, sep, v = f.partition("=")
        (r,) = clause
        inside = [m for m in members if r.min[1:] <= m.encode() <= r.max[1:]]
        assert bool(inside) is (k in labels and (not sep or labels[k] == v))


@FAST
@given(value=json_values)
def test_from_dict_of_arbitrary_json_only_raises_invalid_argument(value: Any) -> None:
    for cls in (Container, ExecConfig):
        try:
            cls.from_dict(value)
        except InvalidArgumentError:
            pass


@pytest.mark.parametrize("cls", [Container, ExecConfig])
def test_from_dict_of_a_deep_document_is_refused_cleanly(cls: Any) -> None:
    deep: Any = 1
    for _ in range(2000):
        deep = [deep]
    doc = Container.new("nginx").to_dict() if cls is Container else ExecConfig.new(ID_A, ["ls"]).to_dict()
    doc["Deep"] = deep
    with pytest.raises(InvalidArgumentError):
        cls.from_dict(doc)


# --- keys and channels from any input ------------------------------------------------------------
# A user with the ACL line of docs/operations.md may touch ``ss:{<ns>}:*`` and publish on
# ``ss:{<ns>}:ev:*``; these check that nothing KeySchema builds can leave those patterns, and that
# what it refuses it refuses with InvalidArgumentError.

# characters that mean something to Redis (glob patterns, hash tags, our separators) or to a
# terminal, and lone surrogates (which cannot be sent at all), mixed into arbitrary text
_NASTY = st.sampled_from(list("*?[]\\{}:/ \t\r\n\x00\x01\x1b\x7f\x85\u2028\ud800\udfff\xff-_.aZ09"))
nasty_text = st.text(_NASTY | st.characters(exclude_categories=()), max_size=12) | st.from_regex(
    r"[0-9a-f]{64}", fullmatch=True) | st.from_regex(_model.NAME_RE, fullmatch=True)
any_part = nasty_text | st.integers() | st.none() | st.binary(max_size=8) | st.lists(st.text(max_size=2), max_size=2)
_GLOB_OR_SPACE = re.compile(r"[*?\[\]\\\s\x00-\x1f\x7f]")


def _assert_inside(ks: KeySchema, key: object, other: KeySchema) -> None:
    assert isinstance(key, str)
    key.encode()  # UTF-8: redis-py can send it
    assert key.startswith(ks.base)
    # the hash tag (first '{' to the next '}') is exactly the namespace: the key's slot is the namespace's
    assert key.count("{") == 1 and key.count("}") == 1
    assert key[key.index("{") + 1 : key.index("}")] == ks.namespace
    # no glob metacharacter, white space or control character anywhere: an ACL pattern or a SCAN
    # MATCH built from a key prefix means exactly that prefix
    assert not _GLOB_OR_SPACE.search(key), key
    assert ks.parse(key) is not None
    # another namespace's ACL key pattern (its base, then '*') never matches it
    if other.namespace != ks.namespace:
        assert not key.startswith(other.base)
        assert other.parse(key) is None


@FAST
@given(ns=_NAMESPACES, other=_NAMESPACES, part=any_part, kind=st.sampled_from(["container", "exec"]) | any_part,
       field=st.sampled_from(_keys.CONTAINER_INDEX_FIELDS) | any_part)
@example(ns="a", other="a.b", part="x*", kind="container", field="id")
@example(ns="a", other="ab", part="\ud800", kind="exec", field="label")
@example(ns="a", other="b", part="web\n", kind="bogus", field="id")
@example(ns="a", other="b", part=5, kind=["container"], field=["id"])
def test_every_key_and_channel_stays_inside_its_namespace(ns: str, other: str, part: Any, kind: Any,
                                                          field: Any) -> None:
    ks, ko = KeySchema(ns), KeySchema(other)
    builders: list[Any] = [ks.container, ks.exec, ks.name, ks.lock, ks.lock_fence, ks.lock_waiters, ks.lock_wake,
                           lambda p: ks.record(kind, p), lambda p: ks.channel(kind, p),
                           lambda p: ks.index(kind, field), lambda p: ks.record_prefix(kind),
                           lambda p: ks.index_keys(kind), lambda p: ks.channel_pattern(kind)]
    for build in builders:
        try:
            built = build(part)
        except InvalidArgumentError:
            continue
        for key in built if isinstance(built, tuple) else (built,):
            if key.endswith("*"):  # a PSUBSCRIBE pattern: the rest is literal
                assert key.startswith(f"{ks.base}ev:") and not _GLOB_OR_SPACE.search(key[:-1])
                continue
            _assert_inside(ks, key, ko)
            if ":ev:" in key:  # a channel: inside the ACL channel pattern &ss:{ns}:ev:*
                assert key.startswith(f"{ks.base}ev:{kind}:") and kind in ("container", "exec")
    # the namespace-wide patterns are literal up to their one trailing '*'
    for pattern in (ks.match_all, ks.channel_pattern(), ks.lock_prefix + "*"):
        assert pattern.endswith("*") and not _GLOB_OR_SPACE.search(pattern[:-1])


@FAST
@given(ns=st.text(_NASTY | st.characters(exclude_categories=()), max_size=70) | any_part)
def test_any_namespace_is_refused_or_makes_literal_patterns(ns: Any) -> None:
    try:
        ks = KeySchema(ns)
    except InvalidArgumentError:
        return
    assert ks.base == f"ss:{{{ns}}}:" and not _GLOB_OR_SPACE.search(ks.base)
    assert "{" not in ns and "}" not in ns


# --- label members ---------------------------------------------------------------------------------

_label_text = st.text(_NASTY | st.characters(exclude_categories=()), max_size=8)
ID_B = "b" * 64


@SLOW
@given(labels_a=st.dictionaries(_label_text, _label_text, max_size=5),
       labels_b=st.dictionaries(_label_text, _label_text, max_size=5))
@example(labels_a={"a": "b:c", "a:b": "c"}, labels_b={"a\nb": "*", "{a}": "}"})
@example(labels_a={"app": "x", "ap": "px"}, labels_b={"app": "x\xff", "app\x01": ""})
def test_label_members_split_back_and_never_collide(labels_a: dict[str, str], labels_b: dict[str, str]) -> None:
    docs = []
    for rid, labels in ((ID_A, labels_a), (ID_B, labels_b)):
        try:
            c = Container.new("nginx", id=rid, labels=labels)
        except InvalidArgumentError:
            # only what cannot be stored is refused: an empty key, NUL, text that is not UTF-8
            assert any(not k or "\x00" in k + v or not _utf8(k + v) for k, v in labels.items())
            return
        docs.append(c.to_dict())
    members = {rid: ix.container_entries(d)["label"] for rid, d in zip((ID_A, ID_B), docs, strict=True)}
    for rid, labels in ((ID_A, labels_a), (ID_B, labels_b)):
        got = members[rid]
        assert len(got) == len(labels)  # one member per label: no two labels share a member
        assert {tuple(m.split(ix.SEP)) for m in got} == {(k, v, rid) for k, v in labels.items()}
        for m in got:
            raw = m.encode()
            assert b"\xff" not in raw and ix.member_id(m) == rid
    assert not members[ID_A] & members[ID_B]
    everything = [m.encode() for ms in members.values() for m in ms]
    for labels in (labels_a, labels_b):
        for k, v in labels.items():
            # the ranges the store queries select exactly the members of that label (any container),
            # or of that label key
            for rng, parts in ((ix.exact("label", k, v), (k, v)), (ix.exact("label", k), (k,))):
                hit = {m for m in everything if rng.min[1:] <= m <= rng.max[1:]}
                assert hit == {m for m in everything if tuple(m.decode().split(ix.SEP)[: len(parts)]) == parts}


def _utf8(s: str) -> bool:
    try:
        s.encode()
        return True
    except UnicodeEncodeError:
        return False


@FAST
@given(key=st.sampled_from(["label", "ancestor", "network", "name", "id", "volume", "before", "since"]),
       value=_label_text)
@example(key="label", value="\ud800")
@example(key="network", value="a\udfff")
def test_filter_values_that_cannot_be_sent_are_invalid_arguments(key: str, value: str) -> None:
    try:
        query = F.make_query({key: [value]}, all=True)
    except InvalidArgumentError:
        return
    assert _utf8(value)
    for clause in F.plan(query):  # every range can be sent: bytes, UTF-8 up to the \xff bound
        for r in clause:
            for bound in (r.min, r.max):
                assert isinstance(bound, bytes)
                bound[1:].split(b"\xff")[0].decode()
    F.matches(query, Container.new("nginx", id=ID_A).to_dict())


# --- the decoder's limits ----------------------------------------------------------------------------


@SLOW
@given(n=st.integers(_codec.MAX_DEPTH - 4, _codec.MAX_DEPTH + 4) | st.integers(1, 1500),
       shape=st.sampled_from(["list", "dict"]), where=st.sampled_from(["top-field", "nested-field"]))
def test_records_deeper_than_the_limit_are_corrupt_and_the_others_decode(n: int, shape: str, where: str) -> None:
    nest = (b"[" * n + b"1" + b"]" * n) if shape == "list" else (b'{"a":' * n + b"1" + b"}" * n)
    doc = Container.new("nginx", id=ID_A).to_dict()
    if where == "top-field":
        doc["Deep"], depth = "@@NEST@@", 1 + n
    else:
        doc["HostConfig"]["Deep"], depth = "@@NEST@@", 2 + n
    raw = orjson.dumps(doc).replace(b'"@@NEST@@"', nest)
    try:
        rec = _codec.decode("container", CKEY, raw)
    except CorruptRecordError as exc:  # never RecursionError, MemoryError or orjson's own error
        assert depth > _codec.MAX_DEPTH, exc
        return
    assert depth <= _codec.MAX_DEPTH and rec.id == ID_A


@pytest.mark.parametrize("raw", [b"[" * (3 << 20), b" " * ((1 << 20) + 1) + b"{}", "\u00e9" * ((1 << 20) // 2 + 1)])
def test_oversize_values_are_corrupt_whatever_they_hold(raw: bytes | str) -> None:
    with pytest.raises(CorruptRecordError, match="over the"):
        _codec.decode("container", CKEY, raw)


@FAST
@given(extra=st.integers(0, 3), kind=st.sampled_from(["container", "exec"]))
def test_the_size_cap_is_in_bytes_and_exact(extra: int, kind: str) -> None:
    rec = Container.new("nginx", id=ID_A) if kind == "container" else ExecConfig.new(ID_B, ["ls"], id=ID_A)
    raw = _codec.encode(rec)
    key = CKEY if kind == "container" else XKEY
    assert _codec.decode(kind, key, raw, len(raw) + extra).id == ID_A
    with pytest.raises(CorruptRecordError, match="over the"):
        _codec.decode(kind, key, raw, len(raw) - 1 - extra)
