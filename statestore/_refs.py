"""Reference resolution, Docker's way (pure part).

A reference is tried as (1) an exact 64-hex ID, (2) an exact name (with or
without the leading ``/``), (3) a unique ID prefix.  An empty reference is an
InvalidArgumentError ("prefix can't be empty"); a reference that cannot be
any of the three (spaces, ``*``, braces, newlines...) is an
InvalidArgumentError too, so nothing unsafe ever reaches a key or a range.
Exec references skip step 2: execs have no names.

The store performs the three steps in one round trip (a server-side script);
:func:`resolve_in` does the same over an in-memory mapping (snapshots, views,
tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple, TypeVar

from ._errors import AmbiguousReferenceError, InvalidArgumentError, NotFoundError

_REF_RE: Final = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_HEX_RE: Final = re.compile(r"^[0-9a-f]{1,64}$")
_HEX_ONLY: Final = re.compile(r"[0-9a-f]{1,64}")  # (for fullmatch: a reference that can only be an ID or a prefix)
MAX_REF_LEN: Final = 256

T = TypeVar("T")


class Reference(NamedTuple):  # a tuple: parsed on every lookup, so cheap to build
    raw: str
    bare: str           # without a leading "/"
    full_id: bool       # 64 lowercase hex: try an exact ID first
    name: bool          # could be a name (Docker names are at least 2 characters)
    hex_prefix: bool    # could be an ID prefix


def parse_reference(ref: object, kind: str = "container") -> Reference:
    if not isinstance(ref, str):
        raise InvalidArgumentError(f"reference must be a string, not {type(ref).__name__}")
    if ref in ("", "/"):
        raise InvalidArgumentError("prefix can't be empty")
    if len(ref) > MAX_REF_LEN or not _REF_RE.fullmatch(ref):
        raise InvalidArgumentError(f"invalid {kind} reference {ref!r}")
    bare = ref[1:] if ref.startswith("/") else ref
    is_hex = bool(_HEX_RE.fullmatch(bare)) and not ref.startswith("/")
    return Reference(
        raw=ref,
        bare=bare,
        full_id=is_hex and len(bare) == 64,
        name=kind == "container" and len(bare) >= 2,
        hex_prefix=is_hex,
    )


def resolve(
    ref: object,
    kind: str,
    by_id: Callable[[str], T | None],
    by_name: Callable[[str], T | None] | None,
    by_prefix: Callable[[str], Sequence[T]],
) -> T:
    """Docker's lookup order over any in-memory back end, with the store's errors.

    ``by_id``: the record with this full ID, ``by_name``: the record with this exact
    name (None for execs), ``by_prefix``: up to two records whose ID starts with the
    prefix.  A stored name is a valid reference, so it is looked up before the
    reference is parsed (an existing full ID still comes first); a lowercase hex
    reference needs no parsing either.
    """
    if by_name is not None and type(ref) is str:
        named = by_name(ref[1:] if ref[:1] == "/" else ref)
        if named is not None:
            hit = by_id(ref) if len(ref) == 64 else None
            return named if hit is None else hit
    if type(ref) is str and _HEX_ONLY.fullmatch(ref):
        bare = ref  # what parse_reference would find: a full ID or an ID prefix
    else:
        r = parse_reference(ref, kind)
        if not r.hex_prefix:
            raise NotFoundError(kind, str(ref))
        bare = r.bare
    if len(bare) == 64:
        hit = by_id(bare)
        if hit is not None:
            return hit
    hits = by_prefix(bare)
    if len(hits) > 1:
        raise AmbiguousReferenceError(kind, str(ref))
    if hits:
        return hits[0]
    raise NotFoundError(kind, str(ref))


def resolve_in(
    ref: str,
    by_id: Mapping[str, T],
    names: Mapping[str, str] | None,
    kind: str = "container",
) -> T:
    """Resolve ``ref`` against in-memory records (a snapshot); same rules and errors as the store."""
    def by_name(name: str) -> T | None:
        rid = names.get(name) if names is not None else None
        return None if rid is None else by_id.get(rid)

    def by_prefix(prefix: str) -> list[T]:
        return [by_id[i] for i in by_id if i.startswith(prefix)][:2]

    # execs have no names (Docker's exec lookups never try one)
    return resolve(ref, kind, by_id.get, by_name if names is not None and kind == "container" else None, by_prefix)
