"""``--since``/``--until`` as ``docker events`` takes them: pure parsing into change-log positions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .. import (
    InvalidArgumentError,
    parse_revision,
)
from .._wording import parse_time_arg

_REVISION_RE = re.compile(r"\d+-\d+")

# --- --since / --until: what docker events accepts ------------------------------------------------

MAX_SEQ = 2**64 - 1


@dataclass(frozen=True)
class Position:
    """Where ``events`` starts or ends: a revision, or a change-log bound for a time."""

    since: str | None = None   # a revision: start after this entry
    start: str | None = None   # a bound: start at the first entry at or after it
    until: str | None = None   # end after the last entry at or before it


def events_range(since: str | None, until: str | None, now: datetime) -> Position:
    """``--since``/``--until`` as watch positions.  A revision (``0-0``, ``1733300000000-5``) is
    taken as is (since: after it; until: up to and including it).  A time T becomes the bound of
    its millisecond: since T starts at the first entry of T's millisecond or later, until T ends
    after the last entry of T's millisecond (revisions are millisecond times).  Pure."""
    pos_since = pos_start = pos_until = None
    if since is not None:
        if _REVISION_RE.fullmatch(since):
            parse_revision(since)
            pos_since = since
        else:
            ns = parse_time_arg(since, now)
            pos_start = f"{max(0, -(-ns // 10**6))}-0"
    if until is not None:
        if _REVISION_RE.fullmatch(until):
            parse_revision(until)
            pos_until = until
        else:
            ns = parse_time_arg(until, now)
            if ns < 0:
                raise InvalidArgumentError(f"--until {until!r} is before the epoch")
            pos_until = f"{ns // 10**6}-{MAX_SEQ}"
    low = pos_since or pos_start
    if low is not None and pos_until is not None and parse_revision(pos_until) < parse_revision(low):
        raise InvalidArgumentError(f"--since ({since}) cannot be after --until ({until})")
    if pos_until is not None and low is None:
        pos_start = "0-0"  # as docker: an --until alone replays what the log holds, up to it
    return Position(pos_since, pos_start, pos_until)
