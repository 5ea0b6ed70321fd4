"""``--since``/``--until`` as ``docker events`` takes them: pure parsing into change-log positions."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from .. import (
    InvalidArgumentError,
    parse_revision,
)

# --- --since / --until: what docker events accepts ------------------------------------------------

_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}
_REVISION_RE = re.compile(r"\d+-\d+")
_UNIX_RE = re.compile(r"\+?(\d+)(?:\.(\d+))?")
_DATE = r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
_CLOCK = r"T(?P<h>\d{1,2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?)?"
_ZONE = r"(?P<z>Z|[+-]\d{2}:\d{2})"


def parse_go_duration(text: str) -> int | None:
    """Go's ``time.ParseDuration`` in nanoseconds (``10m``, ``1h30m``, ``-1.5s``); None if it is not one."""
    if not _DURATION_RE.fullmatch(text):
        return None
    sign = -1 if text.startswith("-") else 1
    total = 0.0
    for number, unit in _DURATION_PART_RE.findall(text):
        total += float(number) * _UNIT_NS[unit]
    return sign * int(total)


def _time_layout_ns(text: str, local: timezone) -> int | None:
    """The time forms docker's ``GetTimestamp`` parses (RFC 3339 and its shorter forms), as
    nanoseconds since the epoch; None if ``text`` has none of them.  Without a zone
    (no ``Z``, ``+`` or third ``-``) the time is local, as in docker."""
    in_location = not any(ch in text for ch in "zZ+") and text.count("-") != 3
    if "." in text or "T" in text:
        layout = _DATE + _CLOCK + ("" if in_location else _ZONE)
        if "." in text:  # docker then requires seconds
            layout = _DATE + r"T(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?" + (
                "" if in_location else _ZONE)
    else:
        layout = _DATE + ("" if in_location else _ZONE)
    m = re.fullmatch(layout, text)
    if m is None:
        return None
    g = m.groupdict()
    zone = local
    if g.get("z") and g["z"] != "Z":
        sign = -1 if g["z"][0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(g["z"][1:3]), minutes=int(g["z"][4:6])))
    elif g.get("z") == "Z":
        zone = UTC
    try:
        dt = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g.get("h") or 0), int(g.get("mi") or 0),
                      int(g.get("s") or 0), tzinfo=zone)
    except ValueError:
        return None
    frac = g.get("f") or ""
    nanos = int(frac[:9].ljust(9, "0")) if frac else 0
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    delta = dt - epoch
    return (delta.days * 86400 + delta.seconds) * 10**9 + nanos


def parse_time_arg(text: str, now: datetime) -> int:
    """A ``docker events --since/--until`` value as nanoseconds since the epoch.

    Accepts a Go duration relative to ``now`` (``10m``, ``1h30m``; whole seconds, as docker),
    unix seconds with an optional fraction (``1733300000``, ``1733300000.5``), and RFC 3339
    or its shorter forms (``2024-12-04``, ``2024-12-04T10``, ``2024-12-04T10:30``,
    ``2024-12-04T10:30:00.5Z``, ``...+01:00``); a time without a zone is local.  Pure.
    """
    if text != "0":
        d = parse_go_duration(text)
        if d is not None:
            return math.floor(now.timestamp() - d / 1e9) * 10**9
    local = timezone(now.astimezone().utcoffset() or timedelta(0))
    ns = _time_layout_ns(text, local)
    if ns is not None:
        return ns
    if "-" in text:
        raise InvalidArgumentError(f'parsing time "{text}": not a time, duration or revision')
    m = _UNIX_RE.fullmatch(text)
    if m is None:
        raise InvalidArgumentError(f'failed to parse value as time or duration: "{text}"')
    frac = m.group(2) or ""
    return int(m.group(1)) * 10**9 + (int(frac[:9].ljust(9, "0")) if frac else 0)


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
