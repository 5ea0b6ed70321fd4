"""The change log's events as data, and the pure rules of reading entries (no I/O).

Shared by both faces' watches (``_async/_watch.py`` and the generated
``_sync/_watch.py``), so that both yield the same :class:`Event`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from ._errors import InvalidArgumentError
from ._keys import KIND_CONTAINER, KIND_EXEC
from ._model import Container, ExecConfig

log = logging.getLogger("statestore.watch")

EVENT_TYPES = ("create", "update", "delete")
#: what a watch with a label or name selector yields when an update moves a record
#: into or out of it (a record that left is not deleted)
SELECTOR_TYPES = ("enter", "leave")
#: the type of a progress mark: only a position (``revision``, ``seq``), no record
PROGRESS = "progress"


def parse_revision(rev: str) -> tuple[int, int]:
    """``"1732712345678-3"`` -> ``(1732712345678, 3)``; InvalidArgumentError if malformed."""
    if not isinstance(rev, str):
        raise InvalidArgumentError(f"revision must be a string like '1732712345678-0', not {rev!r}")
    ms, sep, seq = rev.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        raise InvalidArgumentError(f"invalid revision {rev!r}: expected '<ms>-<seq>'")
    pair = int(ms), int(seq)
    if pair[0] >= 2**64 or pair[1] >= 2**64:
        raise InvalidArgumentError(f"invalid revision {rev!r}: parts must fit in 64 bits")
    return pair


def revision_key(rev: str) -> tuple[int, int]:
    """Sort key for revisions (they compare as pairs of integers, not as strings)."""
    return parse_revision(rev)


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change of one record, as the change log holds it."""

    type: str            # create | update | delete; enter | leave (selectors); progress (marks)
    kind: str            # container | exec
    id: str
    name: str            # container name ("" for execs)
    container_id: str    # the container (itself, for container events)
    version: int         # the record's version after the change (the last one, for a delete)
    status: str
    revision: str        # stream ID: resume with since=event.revision
    seq: int             # position in the log: consecutive across the namespace
    record: Container | ExecConfig | None  # the record after the change (before it, for a delete)
    raw: bytes = b""     # the record's stored JSON, as logged
    #: the name and labels before an update that changed them (the entry's ``prev``), else None
    previous: tuple[str, dict[str, str]] | None = None
    #: what the commit did, as Docker event actions (the entry's ``action``: ``start``,
    #: ``kill=15,die,stop``...), "" when the writer named none
    action: str = ""

    @property
    def labels(self) -> dict[str, str]:
        if isinstance(self.record, Container):
            return dict(self.record.labels)
        return {}


def label_matcher(labels: Iterable[str] | None) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    if isinstance(labels, str):
        labels = (labels,)  # one selector, not its characters
    if labels is not None and not isinstance(labels, Iterable):
        raise InvalidArgumentError("labels must be a selector or a list of selectors")
    for lbl in labels or ():
        if not isinstance(lbl, str) or not lbl:
            raise InvalidArgumentError(f"label selector must be 'key' or 'key=value', not {lbl!r}")
        k, sep, v = lbl.partition("=")
        out.append((k, v if sep else None))
    return out


def labels_match(selectors: Iterable[tuple[str, str | None]], labels: Mapping[str, str]) -> bool:
    """Every ``label_matcher`` selector holds for ``labels`` (``key``: present; ``key=value``: equal)."""
    return all(k in labels and (v is None or labels[k] == v) for k, v in selectors)


def ref_matches(refs: Iterable[str], container_id: str, name: str) -> bool:
    """docker events' ``container=`` (moby's FuzzyMatch): one of ``refs`` (bare, no ``/``) is the
    container's ID or name, exactly or as a prefix."""
    return any(r and (container_id.startswith(r) or (name != "" and name.startswith(r))) for r in refs)


def entry_fields(flat: Any) -> dict[bytes, Any]:
    """An entry's fields as a dict with bytes keys: ``XREAD`` answers ``[field, value, ...]``
    (a dict when something parsed it already; str keys from a client that decodes replies)."""
    if isinstance(flat, dict):
        fields = flat
    else:
        it = iter(flat or ())
        fields = dict(zip(it, it, strict=False))
    if fields and type(next(iter(fields))) is not bytes:
        fields = {k.encode() if isinstance(k, str) else k: v for k, v in fields.items()}
    return fields


class Pending(NamedTuple):
    """An entry that passed the checks and the filters, its record not decoded yet."""

    revision: str
    seq: int | None
    fields: dict[bytes, Any]
    kind: str


KINDS = (KIND_CONTAINER, KIND_EXEC)


def entry_key(entry_id: str) -> tuple[int, int]:
    """``revision_key`` of a stream ID Redis returned (checked only as far as int() does)."""
    ms, _, n = entry_id.partition("-")
    try:
        return int(ms), int(n)
    except ValueError:
        return parse_revision(entry_id)  # raises the usual error


def seq_of(fields: dict[Any, Any]) -> int | None:
    v = fields.get(b"seq", fields.get("seq"))
    if v is None:
        return None  # an entry written before sequence numbers existed
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def choice(name: str, values: Iterable[str] | None, allowed: tuple[str, ...]) -> frozenset[str]:
    if values is None:
        return frozenset(allowed)
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Iterable):
        raise InvalidArgumentError(f"{name} must be a string or a list of strings")
    out = frozenset(values)
    bad = out - set(allowed)
    if bad:
        raise InvalidArgumentError(f"{name} must be among {', '.join(allowed)}; not {', '.join(sorted(bad))}")
    return out


def previous_of(raw: Any, entry_id: str) -> tuple[str, dict[str, str]] | None:
    """The ``prev`` field of an update entry: (name, labels) before the change."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        name, labels = doc["name"], doc["labels"]
        if isinstance(name, str) and isinstance(labels, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            return name, labels
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    log.warning("change-log entry %s has an unreadable prev field; ignored", entry_id)
    return None


def name_refs(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Iterable):
        raise InvalidArgumentError("names must be a container name, ID or prefix, or a list of them")
    out = []
    for v in values:
        if not isinstance(v, str) or not v:
            raise InvalidArgumentError(f"a name selector must be a non-empty name, ID or prefix, not {v!r}")
        out.append(v[1:] if v.startswith("/") and len(v) > 1 else v)
    return out


def id_list(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Iterable):
        raise InvalidArgumentError("ids must be an ID or a list of IDs")
    out = []
    for v in values:
        from ._model import validate_id

        out.append(validate_id(v))
    return out


__all__ = ["EVENT_TYPES", "KINDS", "PROGRESS", "SELECTOR_TYPES", "Event", "Pending", "choice", "entry_fields",
           "entry_key", "id_list", "label_matcher", "labels_match", "name_refs", "parse_revision", "previous_of",
           "ref_matches", "revision_key", "seq_of"]
