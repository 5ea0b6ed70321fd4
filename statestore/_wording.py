"""Docker's wording and time forms, pure: the ``docker ps`` STATUS text, durations, commands, and the
times ``docker events --since`` (and moby's ``timetypes``) accept.  Shared by the CLI and the Engine API."""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime, timedelta, timezone

from ._errors import InvalidArgumentError
from ._model import Container

_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}
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



def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


@functools.lru_cache(maxsize=8192)
def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as Docker writes it (nanoseconds allowed); None for the zero time.

    Cached: a record's times rarely change, and the Engine API words every container of a
    ``docker ps`` on each call (strptime was half of that)."""
    if not text or text.startswith("0001-01-01"):
        return None
    base, _, rest = text.partition(".")
    if not rest:
        base = text.rstrip("Z")
    try:
        dt = datetime.strptime(base.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    frac = rest.rstrip("Z")
    if frac.isdigit():
        dt = dt.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return dt


def _ago(text: str, now: datetime) -> str:
    t = parse_time(text)
    return human_duration((now - t).total_seconds()) if t else ""


def status_text(c: Container, now: datetime) -> str:
    """The STATUS column of ``docker ps``."""
    st = c.state
    status = st.status
    health = st.health
    suffix = ""
    if health is not None and health.status:
        suffix = " (health: starting)" if health.status == "starting" else f" ({health.status})"
    if status == "running":
        return f"Up {_ago(st.started_at, now)}{suffix}"
    if status == "paused":
        return f"Up {_ago(st.started_at, now)} (Paused)"
    if status == "restarting":
        return f"Restarting ({st.exit_code}) {_ago(st.finished_at, now)} ago"
    if status == "exited":
        return f"Exited ({st.exit_code}) {_ago(st.finished_at, now)} ago"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    return "Created"


def command_raw(c: Container) -> str:
    parts = [str(c.path or "")] + [str(a) for a in (c.args or [])]
    return " ".join(p for p in parts if p)
