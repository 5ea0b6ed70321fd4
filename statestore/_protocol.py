"""The commit protocol's wire layout (pure): apply.lua's arguments and the change events.

A commit's plan (``_engine.Plan``) is a list of operations: ``(name, key,
*args)`` tuples for SET, DEL, ZADD and ZREM, and :class:`EventOp` for the
change event of each record it writes.  This module is the one place that
knows how they reach ``apply.lua``:

* :func:`encode` numbers the keys (``KEYS``) and writes each operation as
  ``name, key index, argument count, arguments`` (``ARGV``); an EVENT's first
  argument is a key too (the sequence counter);
* :func:`event` builds the EVENT of one record change: the stream entry's
  fields (``ENTRY_FIELDS``, after the ``seq`` the script puts first) and the
  head of the pub/sub payload (the script appends ``seq`` and ``revision``).

The reader of the entries is ``_watch``; the layout is documented in
docs/schema.md and docs/events.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from . import _codec
from ._errors import CommitIndeterminateError, InvalidArgumentError
from ._keys import KIND_CONTAINER, KeySchema
from ._model import META, Container, ExecConfig
from ._state import derive_status

#: a change-log entry's fields, in the order they are written (``seq`` by apply.lua;
#: ``prev`` only on an update that changed a container's name or labels)
ENTRY_FIELDS: Final = ("seq", "type", "kind", "id", "name", "container", "version", "status", "prev", "action",
                       "record")
#: what an ``action`` may hold: Docker event actions (``kill=15,die,stop``), see ``with_action``
_ACTION_RE: Final = re.compile(r"[a-z][a-z_]*(=[0-9A-Za-z_.-]{1,32})?(,[a-z][a-z_]*(=[0-9A-Za-z_.-]{1,32})?){0,7}")


@dataclass(frozen=True, slots=True)
class EventOp:
    """apply.lua's EVENT: append one change to the log (``XADD`` with ``MAXLEN ~``) and
    publish it on ``channel``."""

    log: str                 # the change log (a stream)
    seq_key: str             # the namespace's sequence counter
    maxlen: int              # the log's approximate length cap
    channel: str             # the record's notification channel
    head: bytes              # the JSON payload without its closing brace
    fields: tuple[Any, ...]  # the entry's field/value pairs after "seq"


Op = tuple[Any, ...] | EventOp


def check_action(action: object) -> str:
    """``action`` as given when it is a valid action text, else InvalidArgumentError.

    An action names what a commit did, as Docker event actions (``start``,
    ``pause``, ``kill=15,die,stop``...): up to 8 comma-separated words, each
    optionally with one ``=value`` attribute (a signal number, an exit code).
    """
    if not isinstance(action, str) or len(action) > 256 or not _ACTION_RE.fullmatch(action):
        raise InvalidArgumentError(
            f"invalid action {action!r}: expected words like 'start' or 'kill=15,die,stop' "
            "(lower case, comma-separated, at most 8)")
    return action


def with_action(op: EventOp, action: str) -> EventOp:
    """``op`` with the ``action`` its commit performed: the entry's ``action`` field (before
    ``record``) and the notification's ``"action"`` member."""
    *fields, rec_name, rec_value = op.fields
    return EventOp(op.log, op.seq_key, op.maxlen, op.channel,
                   op.head + b'"action":' + orjson.dumps(action) + b",",
                   (*fields, "action", action, rec_name, rec_value))


def tag(commands: list[Op], channel: str, action: str | None) -> None:
    """Give the event published on ``channel`` (one record's) its ``action``, in place."""
    if not action:
        return
    for i, op in enumerate(commands):
        if isinstance(op, EventOp) and op.channel == channel:
            commands[i] = with_action(op, action)


def encode(commands: Iterable[Op]) -> tuple[list[str], list[Any]]:
    """``KEYS`` and ``ARGV`` of apply.lua for ``commands``, in order."""
    index: dict[str, int] = {}

    def key(k: str) -> int:
        return index.setdefault(k, len(index) + 1)

    argv: list[Any] = []
    for op in commands:
        if isinstance(op, EventOp):
            log = key(op.log)
            args: list[Any] = [key(op.seq_key), op.maxlen, op.channel, op.head, *op.fields]
            argv += ["EVENT", log, len(args), *args]
        else:
            name, k, *rest = op
            argv += [name, key(k), len(rest), *rest]
    return list(index), argv


def event(keys: KeySchema, maxlen: int, etype: str, kind: str, doc: dict[str, Any], data: bytes | None,
          old: dict[str, Any] | None = None) -> EventOp:
    """The EVENT of one record change (``etype``: create, update or delete).

    ``data`` is the record's encoding when the commit already has it.  ``old`` is
    the document before an update: when the update changes a container's name or
    labels, the entry carries ``prev`` (the name and labels before), which watch
    selectors need to tell a record leaving or entering them (docs/schema.md).
    """
    if kind == KIND_CONTAINER:
        rid, name = doc["Id"], doc["Name"][1:]
        status = derive_status(doc["State"])
        extra: dict[str, Any] = {"image": (doc.get("Config") or {}).get("Image") or "",
                                 "labels": (doc.get("Config") or {}).get("Labels") or {}}
        container = rid
    else:
        rid, name = doc["ID"], ""
        status = ExecConfig(doc).status
        container = doc.get("ContainerID") or ""
        extra = {}
    version = doc[META]["Version"]
    payload = orjson.dumps({"namespace": keys.namespace, "type": etype, "kind": kind, "id": rid,
                            "name": name, "container": container, "version": version,
                            "status": status, **extra})
    prev: tuple[Any, ...] = ()
    if old is not None and kind == KIND_CONTAINER:
        old_labels = (old.get("Config") or {}).get("Labels") or {}
        if old["Name"][1:] != name or old_labels != extra["labels"]:
            prev = ("prev", orjson.dumps({"name": old["Name"][1:], "labels": old_labels}))
    return EventOp(
        keys.log, keys.log_seq, maxlen, keys.channel(kind, rid), payload[:-1] + b",",
        ("type", etype, "kind", kind, "id", rid, "name", name, "container", container,
         "version", version, "status", status, *prev,
         "record", data if data is not None else orjson.dumps(doc)),
    )


class LostPlan(Protocol):
    """What the replay decision reads of the plan whose EXEC reply was lost (``_engine.Plan``)."""

    key: str                                   # the record the plan writes
    version: int | None                        # the version it gives it (None: a delete)
    expected: int | None                       # the version it expected (0: a create)
    commit_id: str                             # written into the record (StateStore.Commit)
    finish: Callable[[list[str]], Any]         # the call's result from its revisions


class _NotApplied:
    def __repr__(self) -> str:
        return "NOT_APPLIED"


#: ``replay_outcome``'s answer when the lost attempt was not applied: plan again
NOT_APPLIED: Final = _NotApplied()


def replay_outcome(kind: str, max_bytes: int, lost: LostPlan, raw: bytes | None) -> Any:
    """After an attempt whose EXEC reply was lost: was it applied?  ``raw`` is the record's
    value now (read, and watched, by the retry).

    Every record a commit writes carries the commit's id (``StateStore.Commit``), the
    same for all attempts of one call.  Returns what the call returns when the lost
    attempt was applied (the record it committed, with ``revision`` None; for a delete,
    its usual result), ``NOT_APPLIED`` when it was not (plan again, safely: the lost
    EXEC can no longer apply, its WATCH is void once the retry commits).  Raises
    CommitIndeterminateError when another writer changed the record since, so that the
    outcome cannot be told.  One decision for every kind of write (the engine applies
    it before the retry's body runs).
    """
    key = lost.key
    if lost.version is None:  # a delete: applied if the record is gone
        return lost.finish([]) if raw is None else NOT_APPLIED
    if raw is None:
        if lost.expected == 0:  # a create that did not happen
            return NOT_APPLIED
        raise CommitIndeterminateError(key, "the record was deleted by another writer since")
    doc = _codec.decode_document(kind, key, raw, max_bytes)
    meta = doc[META]
    if meta.get("Commit") == lost.commit_id:
        return Container(doc) if kind == KIND_CONTAINER else ExecConfig(doc)
    if meta["Version"] >= (lost.version or 0):
        raise CommitIndeterminateError(
            key, f"another writer committed version {meta['Version']} since, so whether version "
            f"{lost.version} was this commit cannot be told")
    return NOT_APPLIED


__all__ = ["ENTRY_FIELDS", "NOT_APPLIED", "EventOp", "LostPlan", "Op", "check_action", "encode", "event",
           "replay_outcome", "tag", "with_action"]
