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
