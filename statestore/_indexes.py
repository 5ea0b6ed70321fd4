"""Index planning: which sorted-set members a record implies, and diffs.

Every index is a sorted set whose scores are all 0, so members sort
lexicographically (byte order) and ``ZRANGEBYLEX`` answers exact and prefix
queries in O(log N + M).  A member is ``<value>\\x00...\\x00<id>``: user data
(label keys and values, image references, names) lives inside members, never
inside key names, so it cannot escape the namespace.  The record's 64-hex ID
is always the last 64 characters of a member.

Container indexes (field -> members):

* ``id``       ``<id>``                       (exact and prefix lookups)
* ``name``     ``<name>\\x00<id>``            (name filter; lookups use name keys)
* ``status``   ``<status>\\x00<id>``          (status filter, default ``ps``)
* ``label``    ``<key>\\x00<value>\\x00<id>``  (label filter, ``key`` or ``key=value``)
* ``image``    ``<Config.Image>\\x00<id>`` and ``<Image>\\x00<id>`` (ancestor)
* ``network``  ``<network name>\\x00<id>`` and ``<NetworkID>\\x00<id>`` (network)

Exec indexes: ``id`` (``<id>``) and ``container`` (``<container id>\\x00<exec id>``).

Index ranges are bytes because the ``\\xff`` upper bound must be the raw byte
(it never occurs in UTF-8, so it sorts after every member with the prefix).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ._state import derive_status

SEP: Final = "\x00"
ID_LEN: Final = 64

Entries = dict[str, set[str]]

#: how many value parts precede the ID in a member of each field (``id``: none)
PARTS: Final = {"name": 1, "status": 1, "label": 2, "image": 1, "network": 1, "container": 1}


#: the index fields of each kind, in the order ``pairs`` lists them
FIELDS: Final = {"container": ("id", "name", "status", "label", "image", "network"), "exec": ("id", "container")}

#: ``(field, member, field, member, ...)``: a record's index members, flat (what the View
#: keeps per record: one small tuple whose strings are shared with its index)
Pairs = tuple[str, ...]


def container_pairs(doc: dict[str, Any]) -> Pairs:
    """The index members a container document implies, as flat ``field, member`` pairs."""
    cid: str = doc["Id"]
    name = doc["Name"][1:] if doc["Name"].startswith("/") else doc["Name"]
    cfg = doc.get("Config") or {}
    out = ["id", cid, "name", f"{name}{SEP}{cid}", "status", f"{derive_status(doc['State'])}{SEP}{cid}"]
    for k, v in (cfg.get("Labels") or {}).items():
        out += ("label", f"{k}{SEP}{v}{SEP}{cid}")
    for i in dict.fromkeys(v for v in (cfg.get("Image"), doc.get("Image")) if isinstance(v, str) and v):
        out += ("image", f"{i}{SEP}{cid}")
    networks: dict[str, None] = {}
    for net_name, settings in ((doc.get("NetworkSettings") or {}).get("Networks") or {}).items():
        networks[net_name] = None
        if isinstance(settings, dict) and isinstance(settings.get("NetworkID"), str):
            if settings["NetworkID"]:
                networks[settings["NetworkID"]] = None
    for n in networks:
        out += ("network", f"{n}{SEP}{cid}")
    return tuple(out)


def exec_pairs(doc: dict[str, Any]) -> Pairs:
    xid: str = doc["ID"]
    return "id", xid, "container", f"{doc['ContainerID']}{SEP}{xid}"


def pairs(kind: str, doc: dict[str, Any]) -> Pairs:
    """A record's index members as flat ``field, member`` pairs (see ``container_pairs``)."""
    return container_pairs(doc) if kind == "container" else exec_pairs(doc)


def group(kind: str, flat: Pairs) -> Entries:
    """``pairs`` grouped by field (every field of the kind present, possibly empty)."""
    out: Entries = {f: set() for f in FIELDS[kind]}
    for k in range(0, len(flat), 2):
        out[flat[k]].add(flat[k + 1])
    return out


def container_entries(doc: dict[str, Any]) -> Entries:
    """The index members a container document implies, by index field."""
    return group("container", container_pairs(doc))


def exec_entries(doc: dict[str, Any]) -> Entries:
    return group("exec", exec_pairs(doc))


def entries(kind: str, doc: dict[str, Any] | None) -> Entries:
    if doc is None:
        return {}
    return container_entries(doc) if kind == "container" else exec_entries(doc)


@dataclass(frozen=True, slots=True)
class IndexDiff:
    add: dict[str, list[str]]
    remove: dict[str, list[str]]

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove


def diff(kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> IndexDiff:
    """Members to add and remove, by field (fields and members sorted), to go from
    ``old`` to ``new``."""
    before = pairs(kind, old) if old is not None else ()
    after = pairs(kind, new) if new is not None else ()
    if before == after:  # most updates touch no indexed field
        return IndexDiff({}, {})
    b = set(zip(before[::2], before[1::2], strict=True))
    a = set(zip(after[::2], after[1::2], strict=True))
    return IndexDiff(_by_field(a - b), _by_field(b - a))


def _by_field(members: set[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for field, member in sorted(members):
        out.setdefault(field, []).append(member)
    return out


def member_id(member: bytes | str) -> str:
    """The record ID a member points at (its last 64 characters)."""
    m = member.decode() if isinstance(member, bytes) else member
    return m[-ID_LEN:]


# --- lexicographic ranges ----------------------------------------------------------

class Range(NamedTuple):
    """A ``ZRANGEBYLEX`` range over one index field (a tuple: built on every list, cheaply)."""

    field: str
    min: bytes
    max: bytes


def exact(field: str, *parts: str) -> Range:
    """Members whose leading parts equal ``parts`` (any ID after them)."""
    p = SEP.join(parts).encode() + b"\x00"
    return Range(field, b"[" + p, b"[" + p + b"\xff")


def prefix(field: str, text: str) -> Range:
    p = text.encode()
    return Range(field, b"[" + p, b"[" + p + b"\xff")


def everything(field: str) -> Range:
    return Range(field, b"-", b"+")


def ids_from_members(members: Iterable[bytes | str]) -> list[str]:
    seen: dict[str, None] = {}
    for m in members:
        seen[member_id(m)] = None
    return list(seen)
