"""Container output logs, as pure code: the lines, the argument rules, stream IDs and replies.

A container's output is the stream ``ss:{ns}:logs:<id>`` (``KeySchema.logs``), one
entry per chunk of output with two fields, ``s`` (``stdout`` or ``stderr``) and ``d``
(the bytes).  The entry ID's milliseconds are the time the line was appended
(the Redis server's clock), which is what ``since``/``until`` select on, as
``docker logs --since/--until`` do.  The I/O is ``_async/_logs.py`` (and the generated
``_sync/_logs.py``); this module is shared by both faces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ._errors import InvalidArgumentError

#: the output streams a line can belong to (Docker's)
STREAMS: Final = ("stdout", "stderr")
#: the entry's fields
FIELD_STREAM: Final = b"s"
FIELD_DATA: Final = b"d"
#: the default cap of a container's log (entries; ``MAXLEN ~``, so approximately)
DEFAULT_MAXLEN: Final = 10_000
#: the largest chunk of output one entry holds (Docker's log drivers split lines at 16 KiB)
MAX_DATA_BYTES: Final = 1024 * 1024
#: the most entries one ``append_many`` call takes (one script call: its arguments sit on Lua's stack)
MAX_BATCH: Final = 1000
#: the most entries one ``read``/``follow`` call returns (``count``) or ``tail`` asks for
MAX_COUNT: Final = 100_000

_MAX_SEQ: Final = 2**64 - 1
_ID_RE: Final = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One chunk of a container's output, as its log stream holds it."""

    id: str          # the stream entry ID, "<ms>-<seq>": a position to read or follow after
    stream: str      # "stdout" or "stderr"
    data: bytes      # the output, as written (no newline is added or removed)
    time_ns: int     # when it was appended: the entry ID's milliseconds, in nanoseconds

    @property
    def time(self) -> float:
        """``time_ns`` in Unix seconds."""
        return self.time_ns / 1e9


def stream_id(value: object, what: str = "after") -> tuple[int, int]:
    """``"1732712345678-3"`` -> ``(1732712345678, 3)``; InvalidArgumentError if it is no
    stream entry ID (``"0-0"`` is one: before every entry)."""
    m = _ID_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidArgumentError(f"invalid {what} {value!r}: expected a log entry ID like '1732712345678-0'")
    ms, seq = int(m.group(1)), int(m.group(2))
    if ms > _MAX_SEQ or seq > _MAX_SEQ:
        raise InvalidArgumentError(f"invalid {what} {value!r}: its parts must fit in 64 bits")
    return ms, seq


def format_id(pos: tuple[int, int]) -> str:
    return f"{pos[0]}-{pos[1]}"


def _micros(value: object, what: str) -> int:
    """A time in Unix seconds (int or float, not negative) as whole microseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{what} must be a non-negative number of Unix seconds, not {value!r}")
    micros = round(value * 1_000_000)  # a float of today's time is exact to well under a microsecond
    if micros // 1000 > _MAX_SEQ:
        raise InvalidArgumentError(f"{what} {value!r} is too far in the future")
    return micros


def stream(value: object) -> str:
    if not isinstance(value, str) or value not in STREAMS:
        raise InvalidArgumentError(f"invalid output stream {value!r}: must be one of {', '.join(STREAMS)}")
    return value


def data(value: object) -> bytes:
    """The bytes of one entry: bytes as they are, text as UTF-8."""
    if isinstance(value, str):
        try:
            raw = value.encode()
        except UnicodeEncodeError:
            raise InvalidArgumentError("log data must be bytes or text that can be sent as UTF-8") from None
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raise InvalidArgumentError(f"log data must be bytes or str, not {type(value).__name__}")
    if len(raw) > MAX_DATA_BYTES:
        raise InvalidArgumentError(f"log data of {len(raw)} bytes is longer than the {MAX_DATA_BYTES} a "
                                   "log entry holds: split it")
    return raw


def count(value: object, what: str, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        raise InvalidArgumentError(f"{what} must be an integer from {low} to {MAX_COUNT}, not {value!r}")
    return value


def maxlen(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"maxlen must be a positive integer, not {value!r}")
    return value


def entries(items: object) -> list[tuple[str, bytes]]:
    """Validated ``(stream, data)`` pairs for ``append_many`` (all checked before anything is sent)."""
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise InvalidArgumentError("append_many takes a list of (stream, data) pairs")
    out: list[tuple[str, bytes]] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidArgumentError(f"append_many takes (stream, data) pairs, not {item!r:.80}")
        out.append((stream(item[0]), data(item[1])))
        if len(out) > MAX_BATCH:
            raise InvalidArgumentError(f"append_many takes at most {MAX_BATCH} entries per call")
    return out


def window(since: float | None, until: float | None, after: str | None) -> tuple[str, str] | None:
    """The inclusive ``XRANGE`` bounds of the entries at or after ``since``, at or before ``until``
    (Unix seconds; entry times are whole milliseconds) and after the entry ID ``after``; None when
    no entry can be in it."""
    start = (0, 0)
    if since is not None:
        start = (-(-_micros(since, "since") // 1000), 0)  # the first whole millisecond at or after it
    if after is not None:
        ms, seq = stream_id(after)
        nxt = (ms, seq + 1) if seq < _MAX_SEQ else (ms + 1, 0)
        if nxt[0] > _MAX_SEQ:
            return None
        start = max(start, nxt)
    end = (_MAX_SEQ, _MAX_SEQ)
    if until is not None:
        end = (_micros(until, "until") // 1000, _MAX_SEQ)
    if start > end:
        return None
    return format_id(start), format_id(end)


def after_time(since: float) -> str:
    """The position to ``follow`` after so as to get the entries appended at or after ``since``
    (Unix seconds): the ID just before its first millisecond."""
    start_ms = -(-_micros(since, "since") // 1000)
    return "0-0" if start_ms == 0 else format_id((start_ms - 1, _MAX_SEQ))


# --- replies ---------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _fields(flat: Any) -> dict[bytes, Any]:
    if isinstance(flat, dict):
        pairs = list(flat.items())
    else:
        it = iter(flat or ())
        pairs = list(zip(it, it, strict=False))
    return {k.encode() if isinstance(k, str) else bytes(k): v for k, v in pairs}


def line(entry_id: Any, flat: Any) -> LogLine:
    """One stream entry (ID, fields) as a LogLine; fields this statestore did not write read as
    an empty ``stdout`` line rather than fail a whole read."""
    eid = _text(entry_id)
    fields = _fields(flat)
    s = fields.get(FIELD_STREAM, b"stdout")
    d = fields.get(FIELD_DATA, b"")
    ms = int(eid.partition("-")[0])
    return LogLine(id=eid, stream=_text(s), data=d if isinstance(d, bytes) else str(d).encode(),
                   time_ns=ms * 1_000_000)


def lines(reply: Any) -> list[LogLine]:
    """An ``XRANGE``/``XREVRANGE`` reply, raw (RESP2 or RESP3), as LogLines in reply order."""
    if isinstance(reply, dict):  # (a client that parsed it into {id: fields})
        return [line(i, f) for i, f in reply.items()]
    return [line(i, f) for i, f in reply or ()]


def read_reply(reply: Any) -> list[LogLine]:
    """An ``XREAD`` reply of one stream, raw (RESP2 ``[[key, entries]]``, RESP3 ``{key: entries}``);
    nil (timed out) is no lines."""
    if not reply:
        return []
    if isinstance(reply, dict):
        entries = next(iter(reply.values()))
        if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], list | tuple):
            entries = entries[0]  # (as some redis-py versions nest it; see ``_watch``)
        return lines(entries)
    return lines(reply[0][1])


__all__ = ["DEFAULT_MAXLEN", "MAX_BATCH", "MAX_COUNT", "MAX_DATA_BYTES", "STREAMS", "LogLine", "after_time",
           "read_reply", "window"]
