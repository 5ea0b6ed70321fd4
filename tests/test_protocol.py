"""The commit protocol's wire layout (statestore._protocol), without Redis: apply.lua's KEYS/ARGV and the
change events.  The integration tests (commits, watch, events) check the same layout against redis-server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from statestore import Container, ExecConfig, InvalidArgumentError
from statestore._keys import KeySchema
from statestore._protocol import ENTRY_FIELDS, EventOp, encode, event

KEYS = KeySchema("proto")


def test_encode_numbers_each_key_once_and_counts_arguments() -> None:
    c = Container.new("nginx", name="web")
    ev = event(KEYS, 1000, "create", "container", c._d, b"{}")
    keys, argv = encode([("SET", "k1", b"v"), ev, ("ZADD", "k2", 0, "m"), ("DEL", "k1")])
    assert keys == ["k1", KEYS.log, KEYS.log_seq, "k2"]
    assert argv[:4] == ["SET", 1, 1, b"v"]
    n = len(ev.fields) + 4
    assert argv[4:8] == ["EVENT", 2, n, 3]  # the log, then the sequence counter: both keys
    assert argv[8:11] == [1000, KEYS.channel("container", c.id), ev.head]
    assert tuple(argv[11:11 + len(ev.fields)]) == ev.fields
    assert argv[11 + len(ev.fields):] == ["ZADD", 4, 2, 0, "m", "DEL", 1, 0]


def test_an_event_carries_the_entry_fields_and_a_payload_head() -> None:
    c = Container.new("nginx", name="web", labels={"app": "shop"})
    ev = event(KEYS, 50, "create", "container", c._d, None)
    assert isinstance(ev, EventOp)
    fields = dict(zip(ev.fields[::2], ev.fields[1::2], strict=True))
    assert list(fields) == [f for f in ENTRY_FIELDS if f not in ("seq", "prev", "action")]
    assert fields["record"] == orjson.dumps(c._d) and fields["status"] == "created" and fields["name"] == "web"
    head = orjson.loads(ev.head[:-1] + b"}")  # apply.lua appends "seq" and "revision" after the comma
    assert ev.head.endswith(b",") and head["labels"] == {"app": "shop"} and head["namespace"] == "proto"


def test_prev_is_logged_only_when_the_name_or_labels_change() -> None:
    old = Container.new("nginx", name="web", labels={"app": "shop"})
    same = Container(orjson.loads(orjson.dumps(old._d)))
    same.state.set_running(pid=7)
    assert "prev" not in event(KEYS, 50, "update", "container", same._d, None, old._d).fields
    renamed = Container(orjson.loads(orjson.dumps(old._d)))
    renamed.name = "api"
    f = event(KEYS, 50, "update", "container", renamed._d, None, old._d).fields
    assert orjson.loads(f[f.index("prev") + 1]) == {"name": "web", "labels": {"app": "shop"}}


def test_an_exec_event_names_its_container() -> None:
    c = Container.new("nginx", name="web")
    x = ExecConfig.new(c.id, ["sh"])
    f = event(KEYS, 50, "create", "exec", x._d, None).fields
    assert f[f.index("container") + 1] == c.id and f[f.index("name") + 1] == ""


class _Lost:
    """A lost plan as replay_outcome reads it."""

    def __init__(self, key: str, version: int | None, expected: int | None, commit_id: str) -> None:
        self.key, self.version, self.expected, self.commit_id = key, version, expected, commit_id
        self.finish = lambda revisions: ("deleted", revisions)


def _stored(c: Container, version: int, commit: str) -> bytes:
    doc = orjson.loads(orjson.dumps(c._d))
    doc["StateStore"].update(Version=version, Commit=commit)
    return orjson.dumps(doc)


def test_the_replay_decision_tells_applied_not_applied_and_unknowable() -> None:
    import pytest

    from statestore import CommitIndeterminateError
    from statestore._protocol import NOT_APPLIED, replay_outcome

    c = Container.new("nginx", name="web")
    key = KEYS.container(c.id)
    decide = lambda lost, raw: replay_outcome("container", 1 << 20, lost, raw)  # noqa: E731
    update = _Lost(key, 3, 2, "abc-1")
    applied = decide(update, _stored(c, 3, "abc-1"))
    assert isinstance(applied, Container) and applied.version == 3 and applied.revision is None
    assert decide(update, _stored(c, 2, "other-7")) is NOT_APPLIED  # still the version it expected
    with pytest.raises(CommitIndeterminateError):
        decide(update, _stored(c, 3, "other-8"))  # someone else committed version 3 since
    with pytest.raises(CommitIndeterminateError):
        decide(update, None)  # deleted since
    assert decide(_Lost(key, 1, 0, "abc-2"), None) is NOT_APPLIED  # a create that did not happen
    delete = _Lost(key, None, 3, "abc-3")
    assert decide(delete, None) == ("deleted", [])  # gone: the delete was applied
    assert decide(delete, _stored(c, 3, "x")) is NOT_APPLIED


def test_an_action_goes_into_the_entry_before_the_record_and_into_the_payload() -> None:
    from statestore._protocol import check_action, tag

    c = Container.new("nginx", name="web")
    ev = event(KEYS, 50, "update", "container", c._d, b"{}")
    other = event(KEYS, 50, "update", "container", Container.new("nginx", name="db")._d, b"{}")
    commands: list[Any] = [("SET", "k", b"v"), ev, other]
    tag(commands, KEYS.channel("container", c.id), "kill=15,die,stop")
    tagged = commands[1]
    assert commands[2] is other and commands[0] == ("SET", "k", b"v")
    assert tagged.fields[-4:] == ("action", "kill=15,die,stop", "record", b"{}")
    assert list(tagged.fields[::2]) == [f for f in ENTRY_FIELDS if f not in ("seq", "prev")]
    assert orjson.loads(tagged.head[:-1] + b"}")["action"] == "kill=15,die,stop"
    tag(commands, KEYS.channel("container", c.id), None)  # no action: nothing changes
    assert commands[1] is tagged
    for bad in ("", "Start", "start,", "kill=", "a b", "x=" + "1" * 33, ",".join(["a"] * 9), 7, None):
        with pytest.raises(InvalidArgumentError):
            check_action(bad)
    assert check_action("exec_start") == "exec_start"
