"""What a list read returns (pure): ``RecordList`` and the finishing step every back end shares.

The store (records read from Redis), snapshots and the View (records held in
memory) answer ``docker ps`` with the same last step: match the candidates
against the whole query, sort newest first, cut at the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import _filters
from ._errors import CorruptRecordError
from ._keys import KIND_EXEC
from ._model import Container, ExecConfig, _Record
from ._refs import resolve_in

R = TypeVar("R", bound=_Record)


class RecordList(list[R]):
    """A list of records plus the change-log revision it was read at, the
    corrupt records that were skipped (so one bad record never breaks ``ps``)
    and ``warnings``: index problems the read worked around, each naming the
    key (also logged on the ``statestore.index`` logger)."""

    def __init__(self, items: Iterable[R] = (), revision: str | None = None,
                 corrupt: Iterable[CorruptRecordError] = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(items)
        self.revision = revision
        self.corrupt: tuple[CorruptRecordError, ...] = tuple(corrupt)
        self.warnings: tuple[str, ...] = tuple(warnings)


def finish_list(q: _filters.Query, docs: list[dict[str, Any]], revision: str | None,
                corrupt: Iterable[CorruptRecordError], before: str | None,
                since: str | None, warnings: Iterable[str] = ()) -> RecordList[Container]:
    """The candidates' documents matching ``q``, newest first, cut at its limit, as records."""
    hits = [d for d in docs if _filters.matches(q, d, before, since)]
    hits.sort(key=_filters.sort_key, reverse=True)
    if q.limit is not None:
        hits = hits[: q.limit]
    return RecordList((Container(d) for d in hits), revision, corrupt, warnings)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of every record of a namespace, at ``revision``.

    ``containers``/``execs`` map IDs to fresh record objects.  ``get`` and
    ``list`` answer with the store's lookup and filter rules, from memory.
    """

    revision: str
    containers: dict[str, Container]
    execs: dict[str, ExecConfig]
    corrupt: tuple[CorruptRecordError, ...] = ()
    _names: dict[str, str] = field(default_factory=dict, repr=False)

    def get(self, ref: str) -> Container:
        return resolve_in(ref, self.containers, self._names).copy()  # type: ignore[no-any-return]

    def get_exec(self, ref: str) -> ExecConfig:
        return resolve_in(ref, self.execs, None, KIND_EXEC).copy()  # type: ignore[no-any-return]

    def list(self, filters: Mapping[str, Iterable[str] | str] | None = None, all: bool = False,
             limit: int | None = None) -> RecordList[Container]:
        q = _filters.make_query(filters, all, limit)
        before = self.get(q.values("before")[0]).created if q.values("before") else None
        since = self.get(q.values("since")[0]).created if q.values("since") else None
        docs = [c.to_dict() for c in self.containers.values()]  # callers get copies, not ours
        return finish_list(q, docs, self.revision, (), before, since)


__all__ = ["RecordList", "Snapshot", "finish_list"]
