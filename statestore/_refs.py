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
from collections.abc import Mapping
from typing import Final, NamedTuple, TypeVar

from ._errors import AmbiguousReferenceError, InvalidArgumentError, NotFoundError

_REF_RE: Final = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_HEX_RE: Final = re.compile(r"^[0-9a-f]{1,64}$")
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


def resolve_in(
    ref: str,
    by_id: Mapping[str, T],
    names: Mapping[str, str] | None,
    kind: str = "container",
) -> T:
    """Resolve ``ref`` against in-memory records; same rules and errors as the store."""
    r = parse_reference(ref, kind)
    if r.full_id and r.bare in by_id:
        return by_id[r.bare]
    if r.name and names is not None and r.bare in names and names[r.bare] in by_id:
        return by_id[names[r.bare]]
    if r.hex_prefix:
        hits = [i for i in by_id if i.startswith(r.bare)]
        if len(hits) > 1:
            raise AmbiguousReferenceError(kind, ref)
        if hits:
            return by_id[hits[0]]
    raise NotFoundError(kind, ref)
