"""fsck's checks, as pure code: the problems a namespace's keys show, the repair each needs.

``analyze`` takes what ``read_namespace`` read (in ``_async/_fsck.py`` and the generated
``_sync/_fsck.py``, where the theory of operation is) and returns the problems and the
repair tasks; the report types are shared by both faces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from . import _codec, _indexes
from ._edge import Plan, text
from ._errors import CorruptRecordError, SchemaVersionError, StateStoreError
from ._keys import (
    CONTAINER_INDEX_FIELDS,
    EXEC_INDEX_FIELDS,
    KIND_CONTAINER,
    KIND_EXEC,
    LOCK_CATEGORIES,
    LOGS_CATEGORY,
    KeySchema,
)
from ._model import ID_RE, Container, ExecConfig, _Record, normalize_name

ERROR: Final = "error"
WARNING: Final = "warning"

SCAN_COUNT: Final = 1000
ZADD_CHUNK: Final = 1000  # members per ZADD/ZREM op (apply.lua unpacks the arguments onto Lua's stack)
_SHOW_MAX: Final = 5  # members or IDs quoted in one message
_REREAD_TRIES: Final = 3

_KIND_OF_TAG: Final = {"c": KIND_CONTAINER, "x": KIND_EXEC}
_FIELDS: Final = {KIND_CONTAINER: CONTAINER_INDEX_FIELDS, KIND_EXEC: EXEC_INDEX_FIELDS}
_LOCK_CATEGORIES: Final = LOCK_CATEGORIES

# Problem codes, in the order of docs/schema.md's invariants.
CODES: Final = {
    "record-corrupt": "a record's value cannot be decoded (JSON, shape, ID or kind)",
    "record-wrongtype": "a record key that is not a string",
    "record-schema-newer": "a record written by a newer statestore",
    "name-missing": "a container without its name key",
    "name-dangling": "a name key holding no container's ID, or a missing container's",
    "name-mismatch": "a name key holding a container of another name",
    "name-conflict": "a name claimed by more than one container (or by one whose record is unreadable)",
    "name-wrongtype": "a name key that is not a string",
    "index-missing": "index members a record implies that are missing",
    "index-stale": "index members of a record that it does not imply",
    "index-dangling": "index members whose record is missing (or that end in no record ID)",
    "index-score": "index members with a non-zero score",
    "index-wrongtype": "an index key that is not a sorted set",
    "exec-container-missing": "an exec whose container does not exist",
    "exec-not-listed": "an exec missing from its container's ExecIDs",
    "execids-missing-exec": "ExecIDs listing an exec that does not exist",
    "execids-wrong-container": "ExecIDs listing an exec of another container",
    "execids-duplicate": "ExecIDs listing an exec more than once",
    "log-wrongtype": "a change log that is not a stream",
    "logseq-wrongtype": "a change-log sequence counter that is not a string",
    "logseq-invalid": "a change-log sequence counter that is not an integer",
    "logs-orphan": "a container output log whose container does not exist",
    "logs-wrongtype": "a container output log that is not a stream",
    "lock-unreadable": "a lock key whose value is not a lock holder record",
    "orphan-key": "a key the schema does not define",
}


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Problem:
    """One violation of docs/schema.md found by ``Store.fsck``.

    ``key`` is the Redis key the problem is at, ``record`` the record key it
    concerns when that is another key.  ``repairable`` says whether fsck can
    fix it from the records, ``repaired`` whether it did; ``action`` is the
    redis-cli command to look at a problem fsck does not fix, ``error`` why a
    repair did not happen.
    """

    code: str
    key: str
    message: str
    severity: str = ERROR
    record: str | None = None
    repairable: bool = False
    repaired: bool = False
    action: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.repaired:
            return "repaired"
        if not self.repairable:
            return f"not repairable: manual action: {self.action}" if self.action else "not repairable"
        if self.error:
            return f"not repaired: {self.error}"
        return "repairable"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "key": self.key, "record": self.record,
                "message": self.message, "repairable": self.repairable, "repaired": self.repaired,
                "action": self.action, "error": self.error}

    def line(self) -> str:
        return f"{self.severity.upper()} {self.code} {self.key} {self.message} ({self.status})"


@dataclass
class FsckReport:
    """What ``Store.fsck`` found (and repaired) in one namespace."""

    namespace: str
    problems: list[Problem] = field(default_factory=list)
    #: counts of what was read: keys, containers, execs, names, index_members
    checked: dict[str, int] = field(default_factory=dict)
    #: whether repairs were requested
    repair: bool = False

    @property
    def clean(self) -> bool:
        """No problem was found."""
        return not self.problems

    @property
    def repaired_all(self) -> bool:
        """Every problem found was repaired (true when none was found)."""
        return all(p.repaired for p in self.problems)

    def codes(self) -> list[tuple[str, str]]:
        """``(code, key)`` of every problem, in report order."""
        return [(p.code, p.key) for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "clean": self.clean, "repair": self.repair,
                "repaired_all": self.repaired_all, "checked": dict(self.checked),
                "problems": [p.to_dict() for p in self.problems]}

    def text(self) -> str:
        """One line per problem, then a summary line."""
        lines = [p.line() for p in self.problems]
        c = self.checked
        scope = (f"checked {c.get('keys', 0)} keys: {c.get('containers', 0)} containers, "
                 f"{c.get('execs', 0)} execs, {c.get('names', 0)} names, "
                 f"{c.get('index_members', 0)} index members")
        where = f"fsck ss:{{{self.namespace}}}:"
        if self.clean:
            lines.append(f"{where} clean; {scope}")
            return "\n".join(lines)
        errors = sum(p.severity == ERROR for p in self.problems)
        warnings = len(self.problems) - errors
        repaired = sum(p.repaired for p in self.problems)
        manual = sum(not p.repairable for p in self.problems)
        tail = f"{repaired} repaired, " if self.repair else ""
        pending = len(self.problems) - repaired - manual
        if pending:
            tail += f"{pending} {'not repaired' if self.repair else 'repairable'}, "
        lines.append(f"{where} {len(self.problems)} problem(s) ({errors} error(s), {warnings} warning(s)); "
                     f"{tail}{manual} not repairable; {scope}")
        return "\n".join(lines)


# --- reading --------------------------------------------------------------------------------------

Scanned = dict[str, tuple[str, Any]]
"""Key -> (Redis type, value): bytes for strings, ``[(member, score)]`` for sorted sets, else None."""


# --- checking -------------------------------------------------------------------------------------


@dataclass
class _Task:
    problems: list[Problem] = field(default_factory=list)

    def attach(self, problem: Problem) -> Problem:
        problem.repairable = True
        self.problems.append(problem)
        return problem


@dataclass
class _RecordTask(_Task):
    """Fix one readable record's name key, index members and ExecIDs."""

    kind: str = ""
    rid: str = ""
    add_fields: set[str] = field(default_factory=set)  # fields whose implied members are (re)added
    stale: dict[str, set[bytes]] = field(default_factory=dict)  # field -> members to drop unless implied
    name_fix: bool = False
    execids_fix: bool = False
    exec_candidates: set[str] = field(default_factory=set)  # execs that point at this container
    unreadable_execs: set[str] = field(default_factory=set)  # kept in ExecIDs as they are, never read


@dataclass
class _OwnerlessTask(_Task):
    """Drop index members whose record is missing (``rid`` None: members that end in no ID)."""

    kind: str = ""
    rid: str | None = None
    stale: dict[str, set[bytes]] = field(default_factory=dict)


@dataclass
class _NameTask(_Task):
    """Delete a name key that no container of that name holds."""

    key: str = ""
    name: str = ""


@dataclass
class _LogsTask(_Task):
    """Delete the output log of a container that does not exist."""

    key: str = ""
    rid: str = ""


@dataclass
class _RebuildTask(_Task):
    """Replace an index key of the wrong type with the members of every record."""

    kind: str = ""
    index_field: str = ""
    key: str = ""
    record_ids: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    problems: list[Problem]
    checked: dict[str, int]
    tasks: list[_Task]
    #: the change log and its counter can take an event (else commits that log one are not attempted)
    events_ok: bool

    def confirmed_by(self, earlier: Analysis) -> Analysis:
        """Only the problems ``earlier`` found too (same code, key and record), and their tasks."""
        seen = {(p.code, p.key, p.record) for p in earlier.problems}
        keep = [p for p in self.problems if (p.code, p.key, p.record) in seen]
        kept = {id(p) for p in keep}
        tasks: list[_Task] = []
        for t in self.tasks:
            t.problems = [p for p in t.problems if id(p) in kept]
            if t.problems:
                tasks.append(t)
        return Analysis(keep, self.checked, tasks, self.events_ok)


def _quote(key: str) -> str:
    return "'" + key.replace("'", "'\\''") + "'"


def _show_member(m: bytes) -> str:
    return m.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _show(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_SHOW_MAX])
    return shown + (f", … ({len(items) - _SHOW_MAX} more)" if len(items) > _SHOW_MAX else "")


def _single_keys(keys: KeySchema) -> dict[str, str]:
    """Key -> ``KeySchema`` property, for every single key the schema names by a property
    (``log``, ``log_seq``, ``lock_seq``, and whatever ``_keys`` adds): the keys that are no orphans
    though no record, name, index or lock implies them.  Prefixes and patterns are left out."""
    out: dict[str, str] = {}
    for attr, prop in vars(KeySchema).items():
        if isinstance(prop, property):
            value = getattr(keys, attr)
            if isinstance(value, str) and value.startswith(keys.base) and not value.endswith((":", "*")):
                out[value] = attr
    return out


def _is_name(text: str) -> bool:
    try:
        return normalize_name(text) == text
    except StateStoreError:
        return False


def analyze(keys: KeySchema, scanned: Mapping[str, tuple[str, Any]],
            max_bytes: int = _codec.DEFAULT_MAX_RECORD_BYTES, cli: str = "redis-cli") -> Analysis:
    """The problems of a namespace read by :func:`read_namespace`, and the tasks that repair them.

    ``cli`` starts every ``action`` (:func:`redis_cli` of the server that was read).
    """
    return _Checker(keys, scanned, max_bytes, cli).run()


class _Checker:
    def __init__(self, keys: KeySchema, scanned: Mapping[str, tuple[str, Any]], max_bytes: int,
                 cli: str = "redis-cli") -> None:
        self.keys, self.scanned, self.max, self.cli = keys, scanned, max_bytes, cli
        self.problems: list[Problem] = []
        self.records: dict[str, dict[str, _Record]] = {KIND_CONTAINER: {}, KIND_EXEC: {}}
        self.unreadable: dict[str, dict[str, str]] = {KIND_CONTAINER: {}, KIND_EXEC: {}}  # id -> Redis type
        self.names: dict[str, tuple[str, Any]] = {}
        self.indexes: dict[tuple[str, str], tuple[str, Any]] = {}
        self.logs: dict[str, tuple[str, str]] = {}  # container id -> (key, Redis type)
        self.record_tasks: dict[tuple[str, str], _RecordTask] = {}
        self.ownerless: dict[tuple[str, str | None], _OwnerlessTask] = {}
        self.other_tasks: list[_Task] = []
        self.single = _single_keys(keys)
        self.checked = {"keys": len(scanned), "containers": 0, "execs": 0, "names": 0, "index_members": 0}
        self.events_ok = True

    def problem(self, code: str, key: str, message: str, *, severity: str = ERROR, record: str | None = None,
                action: str | None = None) -> Problem:
        p = Problem(code, key, message, severity, record, action=action)
        self.problems.append(p)
        return p

    def record_task(self, kind: str, rid: str) -> _RecordTask:
        t = self.record_tasks.get((kind, rid))
        if t is None:
            t = self.record_tasks[(kind, rid)] = _RecordTask(kind=kind, rid=rid)
        return t

    def run(self) -> Analysis:
        for key in sorted(self.scanned):
            self.classify(key, *self.scanned[key])
        self.check_names()
        self.check_indexes()
        self.check_execs()
        self.check_logs()
        self.problems.sort(key=lambda p: (p.severity != ERROR, p.key, p.code))  # errors first
        tasks: list[_Task] = [t for t in self.other_tasks if isinstance(t, _RebuildTask)]
        tasks += [t for t in self.record_tasks.values() if t.problems]
        tasks += list(self.ownerless.values())
        tasks += [t for t in self.other_tasks if not isinstance(t, _RebuildTask)]
        return Analysis(self.problems, self.checked, tasks, self.events_ok)

    # --- one key --------------------------------------------------------------------------------
    def orphan(self, key: str, rtype: str) -> None:
        self.problem("orphan-key", key, f"a {rtype} the namespace's schema does not define", severity=WARNING,
                     action=f"{self.cli} TYPE {_quote(key)}")

    def classify(self, key: str, rtype: str, value: Any) -> None:
        parsed = self.keys.parse(key)
        if parsed is None:  # not this namespace's (SCAN MATCH is a glob)
            self.checked["keys"] -= 1
            return
        cat, rest = parsed
        single = self.single.get(key)
        if single == "log":
            if rtype != "stream":
                self.events_ok = False
                self.problem("log-wrongtype", key, f"the change log holds a {rtype}, not a stream; commits that "
                             "log a change fail until it is fixed", action=f"{self.cli} TYPE {_quote(key)}")
        elif single == "log_seq":
            self.log_seq(key, rtype, value)
        elif single is not None:
            pass  # lockseq (transient lock state: only lock values are checked), and keys of other parts
        elif cat in _KIND_OF_TAG and ID_RE.fullmatch(rest):
            self.record(_KIND_OF_TAG[cat], rest, key, rtype, value)
        elif cat == "name" and _is_name(rest):
            self.checked["names"] += 1
            self.names[rest] = (rtype, value)
        elif cat == "idx":
            tag, _, fld = rest.partition(":")
            kind = _KIND_OF_TAG.get(tag)
            if kind is None or fld not in _FIELDS[kind]:
                self.orphan(key, rtype)
            else:
                self.indexes[(kind, fld)] = (rtype, value)
        elif cat in _LOCK_CATEGORIES and ID_RE.fullmatch(rest):
            if cat == "lock":
                self.lock(key, rtype, value)
        elif cat == LOGS_CATEGORY and ID_RE.fullmatch(rest):
            self.logs[rest] = (key, rtype)
        else:
            self.orphan(key, rtype)

    def record(self, kind: str, rid: str, key: str, rtype: str, value: Any) -> None:
        self.checked["containers" if kind == KIND_CONTAINER else "execs"] += 1
        if rtype != "string":
            self.unreadable[kind][rid] = rtype
            self.problem("record-wrongtype", key, f"the {kind} record key holds a {rtype}, not a string",
                         action=f"{self.cli} TYPE {_quote(key)}")
            return
        try:
            rec: _Record = _codec.decode(kind, key, value, self.max)
        except SchemaVersionError as exc:
            self.unreadable[kind][rid] = rtype
            self.problem("record-schema-newer", key, f"the {kind} record has schema {exc.found}, newer than "
                         f"this statestore reads ({exc.supported}): upgrade statestore",
                         action=f"{self.cli} GET {_quote(key)}")
            return
        except CorruptRecordError as exc:
            self.unreadable[kind][rid] = rtype
            self.problem("record-corrupt", key, f"the {kind} record cannot be decoded: {exc.reason}",
                         action=f"{self.cli} GET {_quote(key)}")
            return
        self.records[kind][rid] = rec

    def log_seq(self, key: str, rtype: str, value: Any) -> None:
        if rtype != "string":
            self.events_ok = False
            self.problem("logseq-wrongtype", key, f"the change-log sequence counter holds a {rtype}, not a "
                         "string; commits that log a change fail until it is fixed",
                         action=f"{self.cli} TYPE {_quote(key)}")
            return
        counter = text(value)
        try:  # what INCR accepts: a 64-bit integer in canonical form
            ok = str(int(counter)) == counter and -(1 << 63) <= int(counter) < (1 << 63)
        except ValueError:
            ok = False
        if not ok:
            self.events_ok = False
            self.problem("logseq-invalid", key, f"the change-log sequence counter holds {counter[:40]!r}, not "
                         "an integer; commits that log a change fail until it is fixed",
                         action=f"{self.cli} GET {_quote(key)}")

    def lock(self, key: str, rtype: str, value: Any) -> None:
        if rtype != "string":
            why = f"holds a {rtype}, not a string"
        else:
            try:
                holder = orjson.loads(value)
                ok = isinstance(holder, dict) and all(
                    type(holder.get(f)) is int for f in ("token", "acquired_ms"))
            except orjson.JSONDecodeError:
                ok = False
            if ok:
                return
            why = f"holds {text(value)[:60]!r}, not a lock holder record"
        self.problem("lock-unreadable", key, f"the lock key {why}; the lock cannot be released or renewed and "
                     "lasts until its TTL runs out", severity=WARNING, action=f"{self.cli} GET {_quote(key)}")

    # --- invariants 1 and 3: name keys -----------------------------------------------------------
    def check_names(self) -> None:
        containers: dict[str, Container] = self.records[KIND_CONTAINER]  # type: ignore[assignment]
        claimants: dict[str, list[str]] = {}
        for cid, c in containers.items():
            claimants.setdefault(c.name, []).append(cid)
        for name in sorted(self.names.keys() | claimants.keys()):
            key = self.keys.name(name)
            rtype, value = self.names.get(name, ("none", None))
            claim = sorted(claimants.get(name, []))
            claimant = claim[0] if len(claim) == 1 else None
            crec = self.keys.container(claimant) if claimant else None
            has_it = f"; container {claimant} has this name" if claimant else ""
            if rtype not in ("string", "none"):
                self.problem("name-wrongtype", key, f"the name key holds a {rtype}, not a string{has_it}",
                             record=crec, action=f"{self.cli} TYPE {_quote(key)}")
                continue
            if len(claim) > 1:
                self.problem("name-conflict", key, f"containers {', '.join(claim)} all have the name {name!r}: "
                             "rename all but one", action=f"{self.cli} GET {_quote(key)}")
                continue
            if rtype == "none":
                if claimant:
                    self.record_task(KIND_CONTAINER, claimant).name_fix = True
                    self.record_task(KIND_CONTAINER, claimant).attach(self.problem(
                        "name-missing", key, f"container {claimant} has no name key", record=crec))
                continue
            holder = text(value)
            if holder == claimant:
                continue
            if not ID_RE.fullmatch(holder):
                code, what = "name-dangling", f"holds {holder[:80]!r}, not a container ID"
            elif holder in containers:
                code, what = "name-mismatch", f"holds {holder}, whose container is named {containers[holder].name!r}"
            elif holder in self.unreadable[KIND_CONTAINER]:
                if claimant:  # the holder may have this name too: no one can tell
                    self.problem("name-conflict", key, f"container {claimant} has the name {name!r}, but the key "
                                 f"holds {holder}, whose record cannot be read", record=crec,
                                 action=f"{self.cli} GET {_quote(key)}")
                continue  # else: nothing to say but that the holder is unreadable, reported at its key
            else:
                code, what = "name-dangling", f"holds {holder}, but no such container exists"
            p = self.problem(code, key, f"the name key {what}{has_it}", record=crec)
            if claimant:
                task = self.record_task(KIND_CONTAINER, claimant)
                task.name_fix = True
                task.attach(p)
            else:
                t = _NameTask(key=key, name=name)
                t.attach(p)
                self.other_tasks.append(t)

    # --- invariants 2 and 3: index members ---------------------------------------------------------
    def check_indexes(self) -> None:
        for kind in (KIND_CONTAINER, KIND_EXEC):
            implied = {rid: {f: {m.encode() for m in ms} for f, ms in _indexes.entries(kind, rec._d).items()}
                       for rid, rec in self.records[kind].items()}
            prefix = self.keys.record_prefix(kind)
            for fld in _FIELDS[kind]:
                key = self.keys.index(kind, fld)
                rtype, value = self.indexes.get((kind, fld), ("none", None))
                if rtype not in ("zset", "none"):
                    rebuild = _RebuildTask(kind=kind, index_field=fld, key=key, record_ids=sorted(self.records[kind]))
                    rebuild.attach(self.problem("index-wrongtype", key, f"the index holds a {rtype}, not a sorted "
                                                "set; a repair rebuilds it from the records"))
                    self.other_tasks.append(rebuild)
                    continue
                present: dict[bytes, float] = dict(value or [])
                self.checked["index_members"] += len(present)
                stale: dict[str | None, list[bytes]] = {}
                scores: dict[str, list[bytes]] = {}
                for m, score in present.items():
                    tail = m[-_indexes.ID_LEN:].decode("ascii", "replace")
                    owner = tail if ID_RE.fullmatch(tail) else None
                    if owner is not None and owner in self.unreadable[kind]:
                        continue
                    if owner is not None and owner in implied:
                        if m not in implied[owner][fld]:
                            stale.setdefault(owner, []).append(m)
                        elif score != 0:
                            scores.setdefault(owner, []).append(m)
                    else:
                        stale.setdefault(owner, []).append(m)
                for owner, ms in sorted(stale.items(), key=lambda kv: kv[0] or ""):
                    shown = _show(_show_member(m) for m in sorted(ms))
                    if owner is not None and owner in implied:
                        task: _Task = self.record_task(kind, owner)
                        self.record_task(kind, owner).stale.setdefault(fld, set()).update(ms)
                        msg = f"{len(ms)} member(s) of {kind} {owner} that its record does not imply: {shown}"
                        code = "index-stale"
                    else:
                        t = self.ownerless.get((kind, owner))
                        if t is None:
                            t = self.ownerless[(kind, owner)] = _OwnerlessTask(kind=kind, rid=owner)
                        t.stale.setdefault(fld, set()).update(ms)
                        task = t
                        code = "index-dangling"
                        msg = (f"{len(ms)} member(s) of {kind} {owner}, which does not exist: {shown}" if owner
                               else f"{len(ms)} member(s) that do not end in a record ID: {shown}")
                    task.attach(self.problem(code, key, msg, record=prefix + owner if owner else None))
                for owner, ms in sorted(scores.items()):
                    rt = self.record_task(kind, owner)
                    rt.add_fields.add(fld)
                    rt.attach(self.problem("index-score", key, f"{len(ms)} member(s) of {kind} {owner} have a "
                                           f"non-zero score: {_show(_show_member(m) for m in sorted(ms))}",
                                           record=prefix + owner))
                for rid in sorted(implied):
                    missing = [m for m in implied[rid][fld] if m not in present]
                    if missing:
                        missing.sort()
                        rt = self.record_task(kind, rid)
                        rt.add_fields.add(fld)
                        rt.attach(self.problem("index-missing", key, f"{kind} {rid} lacks {len(missing)} member(s): "
                                               f"{_show(_show_member(m) for m in missing)}", record=prefix + rid))

    # --- invariant 4: ExecIDs and execs ------------------------------------------------------------
    def check_execs(self) -> None:
        containers: dict[str, Container] = self.records[KIND_CONTAINER]  # type: ignore[assignment]
        execs: dict[str, ExecConfig] = self.records[KIND_EXEC]  # type: ignore[assignment]
        unreadable_c, unreadable_x = self.unreadable[KIND_CONTAINER], self.unreadable[KIND_EXEC]
        pointing: dict[str, set[str]] = {}
        for xid, x in sorted(execs.items()):
            cid, xkey = x.container_id, self.keys.exec(xid)
            pointing.setdefault(cid, set()).add(xid)
            if cid in unreadable_c:
                continue
            if cid not in containers:
                self.problem("exec-container-missing", xkey, f"exec {xid} belongs to container {cid}, which does "
                             "not exist (remove the exec with store.execs.delete if it is not wanted)",
                             action=f"{self.cli} GET {_quote(xkey)}")
            elif xid not in containers[cid].exec_ids:
                task = self.record_task(KIND_CONTAINER, cid)
                task.execids_fix = True
                task.attach(self.problem("exec-not-listed", xkey, f"exec {xid} is not in the ExecIDs of its "
                                         f"container {cid}", record=self.keys.container(cid)))
        for cid, c in sorted(containers.items()):
            ckey = self.keys.container(cid)
            listed = c.exec_ids
            dups = sorted({x for x in listed if listed.count(x) > 1})
            gone = [x for x in dict.fromkeys(listed) if x not in execs and x not in unreadable_x]
            foreign = [x for x in dict.fromkeys(listed) if x in execs and execs[x].container_id != cid]
            found = [
                ("execids-missing-exec", gone, f"ExecIDs lists {len(gone)} exec(s) that do not exist: {_show(gone)}"),
                ("execids-wrong-container", foreign, f"ExecIDs lists {len(foreign)} exec(s) of other containers: "
                 + _show(f"{x} (of {execs[x].container_id})" for x in foreign)),
                ("execids-duplicate", dups, f"ExecIDs lists {len(dups)} exec(s) more than once: {_show(dups)}"),
            ]
            for code, ids, msg in found:
                if ids:
                    task = self.record_task(KIND_CONTAINER, cid)
                    task.execids_fix = True
                    task.attach(self.problem(code, ckey, msg))
        for (kind, cid), task in self.record_tasks.items():
            if kind == KIND_CONTAINER and task.execids_fix:
                task.exec_candidates = set(pointing.get(cid, ()))
                task.unreadable_execs = set(unreadable_x)

    # --- invariant 8: output logs ------------------------------------------------------------------
    def check_logs(self) -> None:
        for cid, (key, rtype) in sorted(self.logs.items()):
            if cid not in self.records[KIND_CONTAINER] and cid not in self.unreadable[KIND_CONTAINER]:
                what = "" if rtype == "stream" else f" (it holds a {rtype}, not a stream)"
                task = _LogsTask(key=key, rid=cid)
                task.attach(self.problem("logs-orphan", key, f"the output log of container {cid}, which does "
                                         f"not exist{what}", severity=WARNING, record=self.keys.container(cid)))
                self.other_tasks.append(task)
            elif rtype != "stream":
                self.problem("logs-wrongtype", key, f"the output log of container {cid} holds a {rtype}, not a "
                             "stream; appending to it fails until it is fixed",
                             record=self.keys.container(cid), action=f"{self.cli} TYPE {_quote(key)}")


# --- repairing ------------------------------------------------------------------------------------

_RESOLVED: Final = "resolved"  # nothing left to do when the task re-read the keys
_APPLIED: Final = "applied"


def _zadd(plan: Plan, key: str, members: Iterable[str]) -> None:
    ms = sorted(members)
    for i in range(0, len(ms), ZADD_CHUNK):
        args: list[Any] = []
        for m in ms[i : i + ZADD_CHUNK]:
            args += [0, m]
        plan.add("ZADD", key, *args)


def _zrem(plan: Plan, key: str, members: Iterable[bytes]) -> None:
    ms = sorted(members)
    for i in range(0, len(ms), ZADD_CHUNK):
        plan.add("ZREM", key, *ms[i : i + ZADD_CHUNK])


def _finish(plan: Plan) -> Plan:
    outcome = _APPLIED if plan.commands else _RESOLVED
    plan.finish = lambda revisions: outcome
    return plan




__all__ = ["CODES", "ERROR", "WARNING", "Analysis", "FsckReport", "Problem", "Scanned", "analyze"]
