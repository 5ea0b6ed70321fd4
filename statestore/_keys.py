"""The key schema: the only place that formats a Redis key.

Every key of a namespace starts with ``ss:{<namespace>}:``.  The braces make
the namespace a Redis Cluster hash tag, so all keys of one namespace live in
one hash slot and every commit (WATCH/MULTI) or script stays single-slot.

Parts that come from users (IDs, names) are validated before they reach this
module's callers, and this module re-checks that they are text that contains
none of the characters that could escape a key or a pattern (``{ } * ? [ ] :``,
backslash, white space and control characters) and can be sent as UTF-8;
anything else, and an unknown record kind, is an InvalidArgumentError.  Index
members that carry user data (label keys and values) never go
into key names: they live inside sorted-set members (see ``_indexes``).

Layout (documented for operators in docs/schema.md)::

    ss:{ns}:c:<id>        string   container record (JSON)
    ss:{ns}:x:<id>        string   exec record (JSON)
    ss:{ns}:name:<name>   string   name reservation -> container id
    ss:{ns}:idx:c:<field> zset     container indexes (all scores 0, lex order)
    ss:{ns}:idx:x:<field> zset     exec indexes
    ss:{ns}:log           stream   change log (one entry per changed record)
    ss:{ns}:logseq        string   change-log sequence counter (INCR per entry; gap detection)
    ss:{ns}:lock:<id>     string   a container's action lock (JSON holder, with TTL)
    ss:{ns}:lockwake:<id> list     wake-up signal pushed on release (short TTL)
    ss:{ns}:lockwait:<id> string   set while someone waits for the lock (short TTL)
    ss:{ns}:lockseq       string   fencing-token counter (INCR; never reset)
    ss:{ns}:lockfence:<id> string  token of the lock's current owner (changes only on acquire)
    ss:{ns}:logs:<id>     stream   a container's output (stdout/stderr lines; capped, deleted with it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ._errors import InvalidArgumentError

PREFIX: Final = "ss"

NAMESPACE_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
# braces (hash tags), glob metacharacters (SCAN MATCH and ACL patterns are built from key
# prefixes), our separator, white space and control characters
_UNSAFE_RE: Final = re.compile(r"[{}*?\[\]:\s\\\x00-\x1f\x7f]")

# Container index fields (sorted sets).  See _indexes for the member formats.
CONTAINER_INDEX_FIELDS: Final = ("id", "name", "status", "label", "image", "network")
EXEC_INDEX_FIELDS: Final = ("id", "container")

#: the category (``parse``) of the per-container key families: action locks and output logs
LOCK_CATEGORIES: Final = ("lock", "lockwake", "lockwait", "lockfence")
LOGS_CATEGORY: Final = "logs"

KIND_CONTAINER: Final = "container"
KIND_EXEC: Final = "exec"
_KIND_TAG: Final = {KIND_CONTAINER: "c", KIND_EXEC: "x"}


def validate_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise InvalidArgumentError(
            f"invalid namespace {namespace!r}: must match {NAMESPACE_RE.pattern}"
        )
    return namespace


def _safe(part: object) -> str:
    if (not isinstance(part, str) or not part or _UNSAFE_RE.search(part)
            or not (part.isascii() or _utf8(part))):
        raise InvalidArgumentError(f"unsafe key part {part!r}")
    return part


def _utf8(text: str) -> bool:
    """Whether ``text`` can be sent to Redis (no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _tag(kind: object) -> str:
    """The key tag of a record kind (``c``, ``x``); InvalidArgumentError for anything else."""
    if not isinstance(kind, str) or kind not in _KIND_TAG:
        raise InvalidArgumentError(f"no record kind {kind!r}")
    return _KIND_TAG[kind]


@dataclass(frozen=True, slots=True)
class KeySchema:
    """All key names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.namespace}}}:"

    # records -----------------------------------------------------------------
    def record_prefix(self, kind: str) -> str:
        return f"{self.base}{_tag(kind)}:"

    def record(self, kind: str, record_id: str) -> str:
        return self.record_prefix(kind) + _safe(record_id)

    def container(self, container_id: str) -> str:
        return self.record(KIND_CONTAINER, container_id)

    def exec(self, exec_id: str) -> str:
        return self.record(KIND_EXEC, exec_id)

    # names ---------------------------------------------------------------------
    @property
    def name_prefix(self) -> str:
        return f"{self.base}name:"

    def name(self, bare_name: str) -> str:
        return self.name_prefix + _safe(bare_name)

    # indexes -------------------------------------------------------------------
    def index(self, kind: str, field: str) -> str:
        tag = _tag(kind)
        fields = CONTAINER_INDEX_FIELDS if kind == KIND_CONTAINER else EXEC_INDEX_FIELDS
        if not isinstance(field, str) or field not in fields:
            raise InvalidArgumentError(f"no {kind} index {field!r}")
        return f"{self.base}idx:{tag}:{field}"

    def index_keys(self, kind: str) -> tuple[str, ...]:
        _tag(kind)
        fields = CONTAINER_INDEX_FIELDS if kind == KIND_CONTAINER else EXEC_INDEX_FIELDS
        return tuple(self.index(kind, f) for f in fields)

    # change log ----------------------------------------------------------------
    @property
    def log(self) -> str:
        return f"{self.base}log"

    @property
    def log_seq(self) -> str:
        return f"{self.base}logseq"

    @property
    def work_queue(self) -> str:
        """The daemon replicas' work queue (a stream read through one consumer group; statestore.daemon)."""
        return f"{self.base}work"

    @property
    def work_results(self) -> str:
        """One entry per work item a replica finished (a stream; statestore.daemon)."""
        return f"{self.base}results"

    # pub/sub channels (not keys, but named the same way) ------------------------
    def channel(self, kind: str, record_id: str) -> str:
        """The channel a record's change events are published on."""
        _tag(kind)
        return f"{self.base}ev:{kind}:" + _safe(record_id)

    def channel_pattern(self, kind: str | None = None) -> str:
        """A PSUBSCRIBE pattern for every record of ``kind`` (or every event of the namespace)."""
        if kind is None:
            return f"{self.base}ev:*"
        _tag(kind)
        return f"{self.base}ev:{kind}:*"

    # locks ---------------------------------------------------------------------
    @property
    def lock_prefix(self) -> str:
        return f"{self.base}lock:"

    def lock(self, container_id: str) -> str:
        return self.lock_prefix + _safe(container_id)

    def lock_fence(self, container_id: str) -> str:
        return f"{self.base}lockfence:" + _safe(container_id)

    def lock_waiters(self, container_id: str) -> str:
        return f"{self.base}lockwait:" + _safe(container_id)

    def lock_wake(self, container_id: str) -> str:
        return f"{self.base}lockwake:" + _safe(container_id)

    @property
    def lock_seq(self) -> str:
        return f"{self.base}lockseq"

    # container output logs ------------------------------------------------------
    @property
    def logs_prefix(self) -> str:
        return f"{self.base}{LOGS_CATEGORY}:"

    def logs(self, container_id: str) -> str:
        """A container's output log: a stream of stdout/stderr lines (``_async/_logs``)."""
        return self.logs_prefix + _safe(container_id)

    # scanning --------------------------------------------------------------------
    @property
    def match_all(self) -> str:
        """A SCAN MATCH pattern for every key of the namespace (for fsck and tests)."""
        return f"{PREFIX}:{{{self.namespace}}}:*"

    def parse(self, key: str) -> tuple[str, str] | None:
        """Split a key of this namespace into (category, rest), or None if foreign.

        ``c:<id>`` -> ``("c", id)``, ``idx:c:status`` -> ``("idx", "c:status")``, ``log`` ->
        ``("log", "")``, ``logs:<id>`` -> (``LOGS_CATEGORY``, id), ``lockfence:<id>`` ->
        ``("lockfence", id)`` (the lock families are ``LOCK_CATEGORIES``).
        """
        if not key.startswith(self.base):
            return None
        rest = key[len(self.base) :]
        cat, sep, tail = rest.partition(":")
        if not sep:
            return (cat, "")
        return (cat, tail)
