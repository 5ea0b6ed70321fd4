"""Model-based test: a hypothesis state machine drives the store and a plain in-memory model.

Every rule performs one operation on both.  The model predicts the outcome
(the new version, or the error class when the operation must fail, in which
case nothing may change); after every step the invariants compare lookups by
ID, name, ``/name`` and ID prefixes, ``list()``, ``snapshot()``, versions, the
keyspace's names and ID index, and the change log's length with the model.

IDs are drawn with shared leading digits and names from a pool that includes
hex-looking names and other containers' IDs, so prefix ambiguity and name
shadowing happen often.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from statestore import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    ConflictError,
    Container,
    ExecConfig,
    InvalidArgumentError,
    InvalidStateError,
    NameInUseError,
    NotFoundError,
    Store,
)
from tests.redisproc import RedisProcess

_namespaces = itertools.count()
BASE_NS = 1_700_000_000_000_000_000

HEX = "0123456789abcdef"
ID_PREFIXES = ["a", "ab", "abc", "b", "ba", "0", "00", "c0"]
NAMES = ["web", "db", "abc", "ab", "ba", "cache", "a0", "00", "c0ffee", "x.y_z-1"]
LABEL_KEYS = ["app", "tier", "com.example/role"]
LABEL_VALUES = ["", "web", "db", "a=b", "ünï"]
_HEX_RE = re.compile(r"[0-9a-f]{1,64}")
# short random middles: IDs collide now and then and often share leading digits
ID_TAILS = st.text("01e", max_size=4) | st.text(HEX, min_size=60, max_size=64)


class Missing(Exception):
    pass


@dataclass
class MContainer:
    id: str
    name: str
    created: int
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "created"
    version: int = 1
    execs: list[str] = field(default_factory=list)


@dataclass
class MExec:
    id: str
    container: str
    version: int = 1


class StoreMachine(RuleBasedStateMachine):
    client: redis.Redis  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(self.client, f"mb{os.getpid()}-{next(_namespaces)}")
        self.containers: dict[str, MContainer] = {}
        self.execs: dict[str, MExec] = {}
        self.log_entries = 0
        self.tick = 0

    # --- the model's own reading of Docker's reference rules -------------------------------

    def names(self) -> dict[str, str]:
        return {c.name: c.id for c in self.containers.values()}

    def m_resolve(self, ref: str) -> str | type[Exception]:
        bare = ref[1:] if ref.startswith("/") else ref
        is_hex = bool(_HEX_RE.fullmatch(bare)) and not ref.startswith("/")
        if is_hex and len(bare) == 64 and bare in self.containers:
            return bare
        if len(bare) >= 2 and bare in self.names():
            return self.names()[bare]
        if is_hex:
            hits = [i for i in self.containers if i.startswith(bare)]
            if len(hits) > 1:
                return AmbiguousReferenceError
            if hits:
                return hits[0]
        return NotFoundError

    def m_resolve_exec(self, ref: str) -> str | type[Exception]:
        if len(ref) == 64 and ref in self.execs:
            return ref
        hits = [i for i in self.execs if i.startswith(ref)]
        if len(hits) > 1:
            return AmbiguousReferenceError
        return hits[0] if hits else NotFoundError

    def draw_ref(self, data: st.DataObject, running_only: bool = False) -> str:
        """A reference to some container: its ID, name, /name, an ID prefix, or a miss."""
        pool = sorted(i for i, c in self.containers.items() if c.status == "running" or not running_only)
        c = self.containers[data.draw(st.sampled_from(pool), label="container")]
        form = data.draw(st.sampled_from(["id", "id", "name", "name", "slash", "prefix", "prefix", "missing"]),
                         label="form")
        if form == "id":
            return c.id
        if form == "name":
            return c.name
        if form == "slash":
            return "/" + c.name
        if form == "prefix":
            return c.id[: data.draw(st.integers(1, 12), label="prefix length")]
        return data.draw(st.sampled_from(["nosuch", "ffffff", "/zz"]), label="missing ref")

    def expect(self, ref: str, op: Any) -> tuple[str | None, Any]:
        """Run ``op`` on the container ``ref`` names; if the model says ``ref`` fails, check it does."""
        target = self.m_resolve(ref)
        if isinstance(target, type):
            event(f"reference fails: {target.__name__}")
            with pytest.raises(target):
                op()
            return None, None
        return target, op

    # --- rules ----------------------------------------------------------------------------------

    @rule(prefix=st.sampled_from(ID_PREFIXES), tail=ID_TAILS,
          name=st.sampled_from(NAMES), as_id=st.booleans(), data=st.data(),
          labels=st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2))
    def create(self, prefix: str, tail: str, name: str, as_id: bool, data: st.DataObject,
               labels: dict[str, str]) -> None:
        cid = (prefix + tail + "0" * 64)[:64]
        if as_id and self.containers:  # a 64-hex name equal to another container's ID
            name = data.draw(st.sampled_from(sorted(self.containers)), label="id as name")
        self.tick += 1
        at = BASE_NS + self.tick * 1000
        rec = Container.new("busybox:1.36", name=name, id=cid, labels=labels, clock=lambda: at)
        if cid in self.containers:
            event("create: id exists")
            with pytest.raises(AlreadyExistsError):
                self.store.containers.create(rec)
            return
        holder = self.names().get(name)
        if holder is not None:
            event("create: name in use")
            with pytest.raises(NameInUseError) as err:
                self.store.containers.create(rec)
            assert err.value.holder_id == holder
            return
        made = self.store.containers.create(rec)
        assert made.version == 1
        self.containers[cid] = MContainer(cid, name, at, dict(labels))
        self.log_entries += 1

    @precondition(lambda self: self.containers)
    @rule(data=st.data(), new_name=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, new_name: str) -> None:
        ref = self.draw_ref(data)
        target, op = self.expect(ref, lambda: self.store.containers.rename(ref, new_name))
        if target is None:
            return
        c = self.containers[target]
        holder = self.names().get(new_name)
        if new_name == c.name:
            with pytest.raises(InvalidArgumentError):
                op()
        elif holder is not None:
            event("rename: name in use")
            with pytest.raises(NameInUseError) as err:
                op()
            assert err.value.holder_id == holder
        else:
            assert op().version == c.version + 1
            c.name = new_name
            c.version += 1
            self.log_entries += 1

    @precondition(lambda self: self.containers)
    @rule(data=st.data(), key=st.sampled_from(LABEL_KEYS), value=st.none() | st.sampled_from(LABEL_VALUES))
    def set_label(self, data: st.DataObject, key: str, value: str | None) -> None:
        ref = self.draw_ref(data)

        def change(c: Container) -> None:
            if value is None:
                c.labels.pop(key, None)
            else:
                c.labels[key] = value

        target, op = self.expect(ref, lambda: self.store.containers.update(ref, change))
        if target is None:
            return
        c = self.containers[target]
        got = op()
        assert got.version == c.version + 1
        if value is None:
            c.labels.pop(key, None)
        else:
            c.labels[key] = value
        c.version += 1
        self.log_entries += 1

    @precondition(lambda self: self.containers)
    @rule(data=st.data(), action=st.sampled_from(["start", "stop", "pause", "unpause"]))
    def lifecycle(self, data: st.DataObject, action: str) -> None:
        self._lifecycle(data, action)

    @precondition(lambda self: any(c.status in ("created", "exited") for c in self.containers.values()))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self._lifecycle(data, "start")

    def _lifecycle(self, data: st.DataObject, action: str) -> None:
        ref = self.draw_ref(data)
        change = {
            "start": lambda c: c.state.set_running(pid=321),
            "stop": lambda c: c.state.set_stopped(0),
            "pause": lambda c: c.state.set_paused(),
            "unpause": lambda c: c.state.set_unpaused(),
        }[action]
        allowed = {"start": ({"created", "exited"}, "running"), "stop": ({"running", "paused"}, "exited"),
                   "pause": ({"running"}, "paused"), "unpause": ({"paused"}, "running")}[action]
        target, op = self.expect(ref, lambda: self.store.containers.update(ref, change))
        if target is None:
            return
        c = self.containers[target]
        if c.status not in allowed[0]:
            event("lifecycle: illegal transition")
            with pytest.raises(InvalidStateError):
                op()
            return
        event(f"lifecycle: {action}")
        got = op()
        assert got.status == allowed[1]
        assert got.version == c.version + 1
        c.status = allowed[1]
        c.version += 1
        self.log_entries += 1

    @precondition(lambda self: self.containers)
    @rule(data=st.data(), stale=st.booleans(), value=st.sampled_from(LABEL_VALUES))
    def commit(self, data: st.DataObject, stale: bool, value: str) -> None:
        """Compare-and-set on a record read earlier: fresh commits land, stale ones conflict."""
        cid = data.draw(st.sampled_from(sorted(self.containers)), label="container")
        c = self.containers[cid]
        held = self.store.containers.get(cid)
        held.labels["tier"] = value
        if stale:  # someone else commits first
            self.store.containers.update(cid, lambda x: x.labels.__setitem__("app", "other"))
            c.labels["app"] = "other"
            c.version += 1
            self.log_entries += 1
            with pytest.raises(ConflictError) as err:
                self.store.containers.commit(held)
            assert (err.value.expected, err.value.actual) == (c.version - 1, c.version)
            return
        assert self.store.containers.commit(held).version == c.version + 1
        c.labels["tier"] = value
        c.version += 1
        self.log_entries += 1

    @precondition(lambda self: len(self.containers) >= 2)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        ref = self.draw_ref(data)
        target, op = self.expect(ref, lambda: self.store.containers.delete(ref))
        if target is None:
            return
        gone = op()
        c = self.containers.pop(target)
        event(f"container deleted with {min(len(c.execs), 2)}+ execs")
        assert gone.id == c.id
        assert gone.exec_ids == c.execs
        for x in c.execs:
            del self.execs[x]
        self.log_entries += 1 + len(c.execs)

    @precondition(lambda self: any(c.status == "running" for c in self.containers.values()))
    @rule(data=st.data(), tails=st.lists(ID_TAILS, min_size=1, max_size=3),
          prefix=st.sampled_from(["e", "e0", "f"]), anywhere=st.booleans())
    def exec_create(self, data: st.DataObject, tails: list[str], prefix: str, anywhere: bool) -> None:
        ref = self.draw_ref(data, running_only=not anywhere)
        for tail in tails:
            self._exec_create(ref, (prefix + tail + "0" * 64)[:64])

    def _exec_create(self, ref: str, xid: str) -> None:
        target, op = self.expect(
            ref, lambda: self.store.execs.create(ExecConfig.new(ref, ["sh", "-c", "true"], id=xid)))
        if target is None:
            return
        c = self.containers[target]
        refusals: list[type[Exception]] = []
        if c.status != "running":
            event("exec create: container not running")
            refusals.append(InvalidStateError)
        if xid in self.execs:
            event("exec create: id exists")
            refusals.append(AlreadyExistsError)
        if refusals:  # with both faults, either error is a correct answer
            with pytest.raises(tuple(refusals)):
                op()
            return
        event("exec created")
        x = op()
        assert (x.version, x.container_id) == (1, c.id)
        self.execs[xid] = MExec(xid, c.id)
        c.execs.append(xid)
        c.version += 1
        self.log_entries += 2

    @precondition(lambda self: self.execs)
    @rule(data=st.data())
    def exec_delete(self, data: st.DataObject) -> None:
        xid = data.draw(st.sampled_from(sorted(self.execs)), label="exec")
        ref = xid[: data.draw(st.sampled_from([1, 3, 8, 64]), label="exec prefix length")]
        target = self.m_resolve_exec(ref)
        if isinstance(target, type):
            with pytest.raises(target):
                self.store.execs.delete(ref)
            return
        event("exec deleted")
        gone = self.store.execs.delete(ref)
        assert gone.id == target
        x = self.execs.pop(target)
        c = self.containers[x.container]
        c.execs.remove(target)
        c.version += 1
        self.log_entries += 2

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def snapshot_matches_the_model(self) -> None:
        snap = self.store.snapshot()
        assert not snap.corrupt
        assert set(snap.containers) == set(self.containers)
        for cid, m in self.containers.items():
            r = snap.containers[cid]
            assert (r.name, r.version, r.status, r.labels, r.exec_ids) == (
                m.name, m.version, m.status, m.labels, m.execs), cid
        assert {x: (e.container_id, e.version) for x, e in snap.execs.items()} == {
            x: (m.container, m.version) for x, m in self.execs.items()}
        last = self.store.client.xrevrange(self.store.keys.log, count=1)
        assert snap.revision == (last[0][0].decode() if last else "0-0")
        assert self.store.client.xlen(self.store.keys.log) == self.log_entries

    @invariant()
    def lists_match_the_model(self) -> None:
        newest_first = [c.id for c in sorted(self.containers.values(), key=lambda c: -c.created)]
        assert [c.id for c in self.store.containers.list(all=True)] == newest_first
        live = [i for i in newest_first if self.containers[i].status in ("running", "paused")]
        assert [c.id for c in self.store.containers.list()] == live
        for key in LABEL_KEYS[:1]:
            want = [i for i in newest_first if key in self.containers[i].labels]
            assert [c.id for c in self.store.containers.list({"label": key}, all=True)] == want

    @invariant()
    def lookups_match_the_model(self) -> None:
        refs: set[str] = {"nosuch", "/ab", "ab", "abc", "0", "00", "a", "b"}
        for c in self.containers.values():
            refs.update({c.id, c.name, "/" + c.name, c.id[:1], c.id[:2], c.id[:3], c.id[:12]})
        for ref in sorted(refs):
            want = self.m_resolve(ref)
            if isinstance(want, type):
                event(f"lookup: {want.__name__}")
                with pytest.raises(want):
                    self.store.containers.get(ref)
            else:
                if ref in self.names() and _HEX_RE.fullmatch(ref) and any(
                        i.startswith(ref) and i != want for i in self.containers):
                    event("lookup: a name shadows an ID prefix")
                got = self.store.containers.get(ref)
                assert got.id == want, ref
                assert got.version == self.containers[want].version
        for xid in self.execs:
            for ref in (xid, xid[:1], xid[:2], xid[:8]):
                want = self.m_resolve_exec(ref)
                if isinstance(want, type):
                    with pytest.raises(want):
                        self.store.execs.get(ref)
                else:
                    assert self.store.execs.get(ref).id == want

    @invariant()
    def keyspace_has_exactly_the_models_names_and_ids(self) -> None:
        client, keys = self.store.client, self.store.keys
        names = {k.decode()[len(keys.name_prefix):] for k in client.scan_iter(match=keys.name_prefix + "*")}
        assert names == set(self.names())
        assert {m.decode() for m in client.zrange(keys.index("container", "id"), 0, -1)} == set(self.containers)
        assert {m.decode() for m in client.zrange(keys.index("exec", "id"), 0, -1)} == set(self.execs)
        name_members = {m.decode() for m in client.zrange(keys.index("container", "name"), 0, -1)}
        assert name_members == {f"{c.name}\x00{c.id}" for c in self.containers.values()}


def test_store_agrees_with_a_model(redis_proc: RedisProcess) -> None:
    client = redis_proc.client()
    try:
        StoreMachine.client = client
        run_state_machine_as_test(StoreMachine, settings=settings(
            max_examples=40, stateful_step_count=25, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        client.close()
