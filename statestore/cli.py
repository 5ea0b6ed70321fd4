"""The ``statestore`` command line (also ``python -m statestore``).

A face: it uses only the public API.  Output follows Docker's CLI where there
is a Docker equivalent (``ps``, ``inspect``, ``events``): the same columns, Go
template ``--format`` strings, ``--since``/``--until`` forms and exit codes
(125 for a flag error, 1 for a failed command).  Errors are one line on
stderr and a non-zero exit; a user mistake or an unreachable Redis never
prints a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import FrameType
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson

from . import (
    Container,
    Event,
    InvalidArgumentError,
    NotFoundError,
    StateStoreError,
    Store,
    __version__,
    parse_filter_args,
    parse_revision,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 125  # docker exits 125 for a flag error


# --- formatting helpers (Docker's wording) ---------------------------------------------


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


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as Docker writes it (nanoseconds allowed); None for the zero time."""
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


def ellipsis(text: str, width: int) -> str:
    """Docker's ``formatter.Ellipsis``: at most ``width`` characters, the last one "…" when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` for what commands contain (quotes, backslashes, control characters)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def command_raw(c: Container) -> str:
    parts = [str(c.path or "")] + [str(a) for a in (c.args or [])]
    return " ".join(p for p in parts if p)


def command_text(c: Container, trunc: bool) -> str:
    """The COMMAND column: path and args, cut to 20 characters unless ``--no-trunc``, quoted."""
    cmd = command_raw(c)
    return go_quote(ellipsis(cmd, 20) if trunc else cmd)


def ports_text(c: Container) -> str:
    out = []
    ports = c.network_settings.ports or {}
    exposed = c.config.exposed_ports or {}
    for key in sorted(set(ports) | set(exposed)):
        bindings = ports.get(key) or []
        if bindings:
            for b in bindings:
                host_ip = b.get("HostIp") or "0.0.0.0"
                out.append(f"{host_ip}:{b.get('HostPort', '')}->{key}")
        else:
            out.append(key)
    return ", ".join(out)


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns separated by three spaces, like Docker's tabwriter output."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        line = "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
        out.write(line.rstrip() + "\n")


def summary(c: Container) -> dict[str, Any]:
    """One container as ``docker ps --format json`` would describe it."""
    return {
        "ID": c.id, "Names": c.name, "Image": c.config.image, "Command": command_raw(c),
        "CreatedAt": c.created, "State": c.status, "Status": status_text(c, datetime.now(UTC)),
        "Ports": ports_text(c), "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
        "Networks": ",".join(sorted((c.network_settings.networks or {}).keys())), "Version": c.version,
    }




def tabwrite(text: str) -> str:
    """Go's ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`` as docker uses it for ``table`` formats:
    every tab-terminated cell is padded to its column's widest cell plus 3, at least 10."""
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in cells:
        for j, cell in enumerate(row[:-1]):
            widths[j] = max(widths.get(j, 10), len(cell) + 3)
    return "\n".join("".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:-1])) + row[-1]
                     for row in cells)


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



# --- Go templates: the subset docker's --format strings use -------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<num>-?\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<pipe>\|)
""", re.X)
_MISSING = object()


@dataclass(frozen=True)
class _Arg:
    kind: str    # field | str | num | ident
    value: Any
    pos: int     # offset in the template, for messages
    text: str


_Command = list[_Arg]
_Node = str | tuple[int, str, list[_Command]]   # literal text, or (offset, source, pipeline)


def _go_str(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    try:
        value = orjson.loads(token)  # Go's escapes are JSON's for what templates use
    except orjson.JSONDecodeError:
        value = token[1:-1]
    return str(value)


class Template:
    """A parsed Go ``text/template`` with docker's functions (json, join, split, lower, upper,
    title, pad, truncate, println), fields (``.A.B``), string and number arguments, pipes and
    methods with arguments (``.Label "app"``).  A template that does not parse or cannot run
    raises InvalidArgumentError worded as Go's (docker prints those)."""

    FUNCTIONS = ("json", "join", "split", "lower", "upper", "title", "pad", "truncate", "println")

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes: list[_Node] = []
        self._parse()

    def _where(self, pos: int) -> str:
        before = self.text[:pos]
        line = before.count("\n") + 1
        return f"{line}:{pos - (before.rfind(chr(10)) + 1)}"

    def _fail(self, pos: int, message: str) -> NoReturn:
        line = self.text[:pos].count("\n") + 1
        raise InvalidArgumentError(f"failed to parse template: template: :{line}: {message}")

    def _parse(self) -> None:
        text, i = self.text, 0
        while i < len(text):
            j = text.find("{{", i)
            if j < 0:
                self.nodes.append(text[i:])
                break
            literal = text[i:j]
            k = text.find("}}", j + 2)
            if k < 0:
                rest = text[j + 2:]
                if rest.strip():
                    self._pipeline(rest, j + 2)  # a bad character is reported first, as Go's lexer does
                self._fail(j, "unclosed action")
            inner_start, inner_end = j + 2, k
            if text.startswith("- ", inner_start) or text.startswith("-\t", inner_start):
                literal = literal.rstrip()
                inner_start += 1
            trim_after = text[inner_end - 2:inner_end] in (" -", "\t-") and inner_end - 2 >= inner_start
            if trim_after:
                inner_end -= 1
            if literal:
                self.nodes.append(literal)
            inner = text[inner_start:inner_end]
            if inner.strip().startswith("/*") and inner.strip().endswith("*/"):
                pass  # a comment
            else:
                self.nodes.append((inner_start, inner, self._pipeline(inner, inner_start)))
            i = k + 2
            if trim_after:
                while i < len(text) and text[i].isspace():
                    i += 1

    def _pipeline(self, inner: str, base: int) -> list[_Command]:
        commands: list[_Command] = [[]]
        pos = 0
        while pos < len(inner):
            m = _TOKEN_RE.match(inner, pos)
            if m is None:
                ch = inner[pos]
                self._fail(base + pos, f"bad character U+{ord(ch):04X} '{ch}'")
            kind = m.lastgroup or ""
            tok = m.group()
            if kind == "pipe":
                if not commands[-1]:
                    self._fail(base + pos, "missing value for command")
                commands.append([])
            elif kind in ("str", "raw"):
                commands[-1].append(_Arg("str", _go_str(tok), base + pos, tok))
            elif kind == "num":
                commands[-1].append(_Arg("num", int(tok), base + pos, tok))
            elif kind == "ident":
                if tok not in self.FUNCTIONS and tok not in ("true", "false", "nil"):
                    self._fail(base + pos, f'function "{tok}" not defined')
                commands[-1].append(_Arg("ident", tok, base + pos, tok))
            elif kind == "field":
                commands[-1].append(_Arg("field", tok, base + pos, tok))
            pos = m.end()
        if not commands[-1]:
            self._fail(base + len(inner), "missing value for command")
        return commands

    # --- execution ----------------------------------------------------------------------
    def render(self, data: Any, header: bool = False) -> str:
        """The template applied to ``data``: a ``FormatContext`` (ps) or JSON-like values (inspect)."""
        out = []
        for node in self.nodes:
            if isinstance(node, str):
                out.append(node)
                continue
            _, source, pipeline = node
            value: Any = _MISSING
            for command in pipeline:
                value = self._command(command, data, value, header, source)
            out.append(go_text(value))
        return "".join(out)

    def _exec_error(self, arg: _Arg, source: str, message: str) -> NoReturn:
        raise InvalidArgumentError(f'failed to execute template: template: :{self._where(arg.pos)}: executing "" '
                            f"at <{source.strip()}>: {message}")

    def _command(self, command: _Command, data: Any, piped: Any, header: bool, source: str) -> Any:
        first, rest = command[0], command[1:]
        args = [self._operand(a, data, header, source) for a in rest]
        if piped is not _MISSING:
            args.append(piped)
        if first.kind == "ident" and first.value in self.FUNCTIONS:
            if header:  # docker's header functions leave the header text alone
                return args[0] if args else ""
            try:
                return _FUNCS[first.value](*args)
            except TypeError:
                self._exec_error(first, source, f"wrong number of args for {first.value}")
        if args and not (first.kind == "field" and isinstance(data, FormatContext)):
            self._exec_error(first, source, f"can't give argument to non-function {first.text}")
        if first.kind == "field" and args:
            return self._method(first, data, args, header, source)
        return self._operand(first, data, header, source)

    def _operand(self, arg: _Arg, data: Any, header: bool, source: str) -> Any:
        if arg.kind in ("str", "num"):
            return arg.value
        if arg.kind == "ident":
            if arg.value in self.FUNCTIONS:  # a function as an argument: called without arguments
                self._exec_error(arg, source, f"wrong number of args for {arg.value}")
            return {"true": True, "false": False, "nil": None}[arg.value]
        return self._field(arg, data, header, source)

    def _field(self, arg: _Arg, data: Any, header: bool, source: str) -> Any:
        if arg.value == ".":
            return "" if header else data
        value = data
        names = arg.value[1:].split(".")
        for n, name in enumerate(names):
            if isinstance(value, FormatContext):
                if not value.has(name):
                    self._exec_error(arg, source, f"can't evaluate field {name} in type {value.TYPE}")
                if name in value.METHODS_WITH_ARGS:
                    self._exec_error(arg, source, f"wrong number of args for {name}: want 1 got 0")
                value = value.header(name) if header else value.field(name)
            elif isinstance(value, Mapping):
                value = value.get(name)  # a missing key is Go's zero value: <no value>
            elif value is None and n > 0:
                self._exec_error(arg, source, f"nil pointer evaluating interface {{}}.{name}")
            else:
                self._exec_error(arg, source, f"can't evaluate field {name} in type {go_type(value)}")
        return value

    def _method(self, arg: _Arg, data: Any, args: list[Any], header: bool, source: str) -> Any:
        name = arg.value[1:]
        if not isinstance(data, FormatContext) or "." in name or name not in data.METHODS_WITH_ARGS:
            self._exec_error(arg, source, f"can't give argument to non-function {arg.text}")
        if len(args) != 1:
            self._exec_error(arg, source, f"wrong number of args for {name}: want 1 got {len(args)}")
        return data.header_method(name, str(args[0])) if header else data.method(name, str(args[0]))


def go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return "interface {}"


def go_text(value: Any) -> str:
    """A value as Go's ``fmt`` prints it with ``%v`` (what ``{{.X}}`` writes)."""
    if value is None or value is _MISSING:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


def _tojson(value: Any) -> str:
    if isinstance(value, FormatContext):
        value = value.as_json()
    return orjson.dumps(value).decode()


def _pad(text: Any, before: int, after: int) -> str:
    return " " * before + str(text) + " " * after


def _truncate(text: Any, n: int) -> str:
    return str(text)[:n]


def _join(items: Any, sep: str) -> str:
    return sep.join(go_text(i) for i in items)


def _println(*args: Any) -> str:
    return " ".join(go_text(a) for a in args) + "\n"


_FUNCS: dict[str, Callable[..., Any]] = {
    "json": _tojson, "join": _join, "split": lambda s, sep: str(s).split(sep),
    "lower": lambda s: str(s).lower(), "upper": lambda s: str(s).upper(), "title": lambda s: str(s).title(),
    "pad": _pad, "truncate": _truncate, "println": _println,
}


class FormatContext:
    """What a template's fields read: a fixed set of names (Go struct methods)."""

    TYPE = "context"
    FIELDS: Mapping[str, str] = {}           # name -> table header
    METHODS_WITH_ARGS: frozenset[str] = frozenset()

    def has(self, name: str) -> bool:
        return name in self.FIELDS or name in self.METHODS_WITH_ARGS

    def field(self, name: str) -> Any:
        return getattr(self, "f_" + name)()

    def header(self, name: str) -> str:
        return self.FIELDS[name]

    def method(self, name: str, arg: str) -> Any:
        return getattr(self, "m_" + name)(arg)

    def header_method(self, name: str, arg: str) -> str:
        return arg

    def as_json(self) -> dict[str, Any]:
        return {}


class ContainerContext(FormatContext):
    """``docker ps --format`` placeholders (docker/cli ``formatter.ContainerContext``)."""

    TYPE = "*formatter.ContainerContext"
    FIELDS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES",
              "Networks": "NETWORKS"}
    METHODS_WITH_ARGS = frozenset({"Label"})

    def __init__(self, c: Container, trunc: bool, now: datetime) -> None:
        self.c, self.trunc, self.now = c, trunc, now

    def f_ID(self) -> str:
        return self.c.id[:12] if self.trunc else self.c.id

    def f_Image(self) -> str:
        return str(self.c.config.image or "")

    def f_Command(self) -> str:
        return command_text(self.c, self.trunc)

    def f_CreatedAt(self) -> str:
        t = parse_time(self.c.created)
        if t is None:
            return ""
        return t.replace(microsecond=0).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")

    def f_RunningFor(self) -> str:
        return f"{_ago(self.c.created, self.now)} ago"

    def f_Ports(self) -> str:
        return ports_text(self.c)

    def f_State(self) -> str:
        return self.c.status

    def f_Status(self) -> str:
        return status_text(self.c, self.now)

    def f_Size(self) -> str:
        return "0B"  # the store keeps no sizes

    def f_Names(self) -> str:
        return self.c.name

    def f_Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.c.labels.items()))

    def m_Label(self, key: str) -> str:
        return self.c.labels.get(key, "")

    def header_method(self, name: str, arg: str) -> str:
        return re.sub(r"[-_]", " ", arg.split(".")[-1])  # docker's SubHeaderContext.Label

    def _mounts(self) -> list[Mapping[str, Any]]:
        return [m for m in (self.c.mounts or []) if isinstance(m, Mapping)]

    def f_Mounts(self) -> str:
        names = [str(m.get("Name") or m.get("Source") or "") for m in self._mounts()]
        return ",".join(ellipsis(n, 15) if self.trunc else n for n in names)

    def f_LocalVolumes(self) -> str:
        return str(sum(1 for m in self._mounts() if m.get("Driver") == "local"))

    def f_Networks(self) -> str:
        return ",".join(sorted((self.c.network_settings.networks or {}).keys()))

    def as_json(self) -> dict[str, Any]:
        return summary(self.c)


DEFAULT_PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def prepare_format(fmt: str) -> tuple[bool, str]:
    """docker's ``Context.preFormat``: (is a table, the template text): ``table`` stripped, the
    ends trimmed of spaces, the two-character sequences ``\\t`` and ``\\n`` made a tab and a newline."""
    is_table = fmt.startswith("table")
    body = fmt[len("table"):] if is_table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, body


def render_rows(fmt: str, contexts: Sequence[FormatContext], header_ctx: FormatContext) -> str:
    """Each context through the format (one line each, as docker); a table gets its header
    (printed even with no rows) and docker's column alignment."""
    is_table, body = prepare_format(fmt)
    tmpl = Template(body)
    rows = [tmpl.render(ctx) + "\n" for ctx in contexts]
    if not is_table:
        return "".join(rows)
    return tabwrite(tmpl.render(header_ctx, header=True) + "\n" + "".join(rows))


class _HeaderOnly(ContainerContext):
    """A ContainerContext for rendering a table header: it has no container."""

    def __init__(self) -> None:
        self.trunc, self.now = True, datetime.now(UTC)



# --- commands ---------------------------------------------------------------------------


def _empty_namespace_hint(store: Store) -> None:
    """When the namespace holds no container at all, say so and name the ones that do exist,
    so a mistyped namespace does not look like an empty one.  Never fails the listing."""
    try:
        found = store.namespaces()
    except StateStoreError:
        return
    if found.get(store.namespace, {}).get("containers", 0):
        return
    others = [ns for ns, counts in found.items() if ns != store.namespace and counts["containers"]]
    where = f"namespaces with containers here: {', '.join(others[:10])}{', …' if len(others) > 10 else ''}" \
        if others else "no namespace here has containers"
    sys.stderr.write(f"Hint: namespace '{store.namespace}' holds no containers; {where} "
                     "(statestore namespaces lists them)\n")


def cmd_ps(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    filters = parse_filter_args(args.filter or [])
    limit = args.last if args.last and args.last > 0 else (1 if args.latest else None)
    fmt = args.format or "table"
    if args.quiet and args.format:
        sys.stderr.write("WARNING: Ignoring custom format, because both --format and --quiet are set.\n")
    if not args.quiet and fmt not in ("json", "table"):
        Template(prepare_format(fmt)[1])  # a template that does not parse fails before any read
    containers = store.containers.list(filters=filters, all=args.all, limit=limit)
    for bad in containers.corrupt:
        sys.stderr.write(f"Warning: {bad}\n")
    if not containers:
        _empty_namespace_hint(store)
    if args.quiet:
        for c in containers:
            out.write((c.id if args.no_trunc else c.id[:12]) + "\n")
        return EXIT_OK
    if fmt == "json":
        for c in containers:
            out.write(orjson.dumps(summary(c)).decode() + "\n")
        return EXIT_OK
    now = datetime.now(UTC)
    contexts = [ContainerContext(c, not args.no_trunc, now) for c in containers]
    out.write(render_rows(DEFAULT_PS_TABLE if fmt == "table" else fmt, contexts, _HeaderOnly()))
    return EXIT_OK


def cmd_inspect(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    tmpl = None
    if args.format:
        tmpl = Template(prepare_format(args.format)[1] if args.format != "json" else "{{json .}}")
    found: list[dict[str, Any]] = []
    code = EXIT_OK
    for ref in args.refs:
        try:
            if args.type in ("container", None):
                found.append(store.containers.get(ref).to_dict())
                continue
            found.append(store.execs.get(ref).to_dict())
        except NotFoundError:
            if args.type is None:
                try:
                    found.append(store.execs.get(ref).to_dict())
                    continue
                except (NotFoundError, InvalidArgumentError):
                    pass
            sys.stderr.write(f"Error: No such {'exec instance' if args.type == 'exec' else 'container'}: {ref}\n")
            code = EXIT_ERROR
        except StateStoreError as exc:
            sys.stderr.write(f"Error: {exc}\n")
            code = EXIT_ERROR
    if tmpl is not None:
        for doc in found:
            out.write(tmpl.render(doc) + "\n")
        return code
    out.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    return code


def event_dict(ev: Event, namespace: str) -> dict[str, Any]:
    return {"namespace": namespace, "type": ev.type, "kind": ev.kind, "id": ev.id, "name": ev.name,
            "container": ev.container_id, "version": ev.version, "status": ev.status, "seq": ev.seq,
            "revision": ev.revision, "labels": ev.labels}


def event_line(ev: Event) -> str:
    when = ev.revision.split("-", 1)[0]
    ts = datetime.fromtimestamp(int(when) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    attrs = [f"name={ev.name}"] if ev.name else []
    if ev.kind == "exec":
        attrs.append(f"container={ev.container_id[:12]}")
    attrs += [f"version={ev.version}", f"status={ev.status}", f"revision={ev.revision}"]
    attrs += [f"{k}={v}" for k, v in sorted(ev.labels.items())]
    return f"{ts} {ev.kind} {ev.type} {ev.id} ({', '.join(attrs)})"


EVENT_KINDS = ("container", "exec")
EVENT_TYPES = ("create", "update", "delete")


@dataclass
class EventFilter:
    """``docker events --filter``, applied to each event as it arrives (moby ``events.Filter``):
    values of one key are alternatives, keys must all hold.  ``container=`` matches the
    container's ID or name, each exactly or as a prefix (moby's ``FuzzyMatch``), so a name
    that does not exist yet, or a re-created container, is matched when its events come."""

    kinds: frozenset[str] | None = None
    types: frozenset[str] | None = None
    containers: tuple[str, ...] = ()
    labels: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, values: Sequence[str]) -> EventFilter:
        f = parse_filter_args(values)
        allowed = {"type", "event", "container", "id", "label"}
        bad = set(f) - allowed
        if bad:
            raise InvalidArgumentError(f"invalid filter '{sorted(bad)[0]}' (use type, event, container, label)")
        for key, choices in (("type", EVENT_KINDS), ("event", EVENT_TYPES)):
            for v in f.get(key, []):
                if v not in choices:
                    raise InvalidArgumentError(f"invalid filter '{key}={v}' (use {key}={'|'.join(choices)})")
        labels = []
        for lbl in f.get("label", []):
            k, sep, v = lbl.partition("=")
            labels.append((k, v if sep else None))
        return cls(
            kinds=frozenset(f["type"]) if "type" in f else None,
            types=frozenset(f["event"]) if "event" in f else None,
            containers=tuple(dict.fromkeys([*f.get("container", []), *f.get("id", [])])),
            labels=tuple(labels),
        )

    def match(self, ev: Event, container_name: str) -> bool:
        """Whether ``ev`` passes; ``container_name`` is the name of the event's container."""
        if self.kinds is not None and ev.kind not in self.kinds:
            return False
        if self.types is not None and ev.type not in self.types:
            return False
        if self.containers and not any(
                ev.container_id.startswith(ref) or (container_name and container_name.startswith(ref))
                for ref in self.containers):
            return False
        labels = ev.labels
        return all(k in labels and (v is None or labels[k] == v) for k, v in self.labels)


class _ContainerNames:
    """The names of the containers events are about: taken from container events as they pass,
    looked up (once) for an exec event of a container not seen yet."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.names: dict[str, str] = {}

    def __call__(self, ev: Event) -> str:
        if ev.kind == "container":
            self.names[ev.id] = ev.name
            return ev.name
        if ev.container_id not in self.names:
            try:
                self.names[ev.container_id] = self.store.containers.get(ev.container_id).name
            except StateStoreError:
                self.names[ev.container_id] = ""
        return self.names[ev.container_id]


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else f"***@{netloc}"))
    except ValueError:
        return "the Redis server"


def cmd_events(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    filt = EventFilter.parse(args.filter or [])
    pos = events_range(args.since, args.until, datetime.now(UTC))
    store.ping()  # an unreachable Redis is an error now, not an endless reconnect loop
    where = redacted_url(args.redis_url)

    def on_connection(connected: bool, reason: str) -> None:
        if connected:
            sys.stderr.write(f"Redis at {where} is back; following the change log again from where it was\n")
        else:
            sys.stderr.write(f"Warning: lost Redis at {where} ({reason}); reconnecting, no event will be missed\n")
        sys.stderr.flush()

    watch = store.watch(since=pos.since, start=pos.start, until=pos.until, block=0.2,
                        on_connection=on_connection)
    names = _ContainerNames(store)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        watch.close()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for ev in watch:
            if not filt.match(ev, names(ev) if filt.containers else ""):
                continue
            if args.format == "json":
                out.write(orjson.dumps(event_dict(ev, store.namespace)).decode() + "\n")
            else:
                out.write(event_line(ev) + "\n")
            out.flush()
            if stop.is_set():
                break
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        watch.close()
    return EXIT_OK


def cmd_namespaces(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    found = store.namespaces()
    if args.quiet:
        for ns in found:
            out.write(ns + "\n")
    elif args.format == "json":
        for ns, counts in found.items():
            out.write(orjson.dumps({"namespace": ns, **counts}).decode() + "\n")
    else:
        rows = [["NAMESPACE", "CONTAINERS", "EXECS"]]
        rows += [[ns, str(counts["containers"]), str(counts["execs"])] for ns, counts in found.items()]
        table(rows, out)
    return EXIT_OK



def cmd_locks(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    locks = store.locks()
    keys = sum(1 for _ in store.client.scan_iter(match=store.keys.lock_prefix + "*", count=1000))
    if keys > len(locks):
        sys.stderr.write(f"Warning: {keys - len(locks)} lock key(s) unreadable or just released; "
                         "run statestore fsck\n")
    if args.format == "json":
        for li in locks:
            out.write(orjson.dumps({
                "container": li.container_id, "token": li.token, "replica": li.replica, "host": li.host,
                "pid": li.pid, "acquired_ms": li.acquired_ms, "age": round(li.age, 3),
                "ttl_left": round(li.ttl_left, 3), "wedged": li.wedged}).decode() + "\n")
        return EXIT_OK
    rows = [["CONTAINER ID", "NAME", "REPLICA", "HOST", "PID", "TOKEN", "AGE", "TTL LEFT", ""]]
    for li in locks:
        try:
            name = store.containers.get(li.container_id).name
        except StateStoreError:
            name = "-"
        rows.append([li.container_id[:12], name, li.replica, li.host, str(li.pid), str(li.token),
                     f"{li.age:.1f}s", f"{li.ttl_left:.1f}s", "WEDGED" if li.wedged else ""])
    table(rows, out)
    return EXIT_OK


def cmd_fsck(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    report = store.fsck(repair=args.repair)
    if args.format == "json":
        out.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(report.text() + "\n")
    return EXIT_OK if report.clean or (args.repair and report.repaired_all) else EXIT_ERROR


# --- entry point ------------------------------------------------------------------------------


class UsageError(Exception):
    """A command line that does not parse: docker's message, usage line and exit code."""

    def __init__(self, prog: str, message: str, code: int) -> None:
        super().__init__(message)
        self.prog, self.message, self.code = prog, message, code


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as docker (cobra) does, instead of exiting 2."""

    usage_args = ""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (\S+): invalid choice: '?([^' ]*)'?", message)
        if m and m.group(1) == "COMMAND":
            raise UsageError(self.prog, f"unknown command: {self.prog} {m.group(2)}", EXIT_ERROR)
        if message.startswith("the following arguments are required"):
            if "COMMAND" in message:
                raise UsageError(self.prog, f"'{self.prog}' requires a command", EXIT_USAGE)
            raise UsageError(self.prog, f"'{self.prog}' requires at least 1 argument", EXIT_ERROR)
        m = re.match(r"argument (\S+): (.*)", message)
        if m:  # a flag's value: "argument -n/--last: invalid int value: 'x'"
            flags, problem = m.group(1).split("/"), m.group(2)
            if problem.startswith("expected one argument"):
                raise UsageError(self.prog, f"flag needs an argument: {flags[-1]}", EXIT_USAGE)
            v = re.match(r"invalid (?:(\w+) value|choice): '(.*?)'(?: \((.*)\))?$", problem)
            if v:
                why = (v.group(3) if v.group(3).startswith("choose") else f"choose from {v.group(3)}") \
                    if v.group(3) else f"not a valid {v.group(1)}"
                raise UsageError(self.prog, f'invalid argument "{v.group(2)}" for "{", ".join(flags)}" flag: '
                                            f"{why}", EXIT_USAGE)
            raise UsageError(self.prog, f'invalid argument for "{", ".join(flags)}" flag: {problem}', EXIT_USAGE)
        raise UsageError(self.prog, message, EXIT_USAGE)


def _usage_text(err: UsageError, parser: argparse.ArgumentParser) -> str:
    sub = _subparser(parser, err.prog)
    usage = f"Usage:  {err.prog} [OPTIONS]" + (f" {sub.usage_args}" if isinstance(sub, _Parser) and
                                              sub.usage_args else "")
    if err.prog == parser.prog:
        usage = f"Usage:  {parser.prog} [OPTIONS] COMMAND"
    if err.message.startswith("unknown command"):
        return f"{parser.prog}: {err.message}\n\nRun '{parser.prog} --help' for more information\n"
    lead = f"{parser.prog}: {err.message}" if err.code == EXIT_ERROR else err.message
    return f"{lead}\n\n{usage}\n\nRun '{err.prog} --help' for more information\n"


def _subparser(parser: argparse.ArgumentParser, prog: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:  # argparse keeps its subparsers here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if isinstance(sub, argparse.ArgumentParser) and sub.prog == prog:
                    return sub
    return None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="statestore", description="Inspect and operate statestore namespaces in Redis.")
    p.add_argument("--version", action="version", version=f"statestore version {__version__}")
    p.add_argument("--redis-url", default=None,
                   help=f"Redis to use (default: $STATESTORE_REDIS_URL, else {DEFAULT_URL}; the demo "
                        "starts its own Redis when neither is given and none answers there)")
    p.add_argument("--namespace", default=os.environ.get("STATESTORE_NAMESPACE", "default"),
                   help="namespace (default: $STATESTORE_NAMESPACE, else %(default)s)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    ps.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    ps.add_argument("-n", "--last", type=int, default=0, metavar="N",
                    help="show N last created containers (includes all states)")
    ps.add_argument("-l", "--latest", action="store_true",
                    help="show the latest created container (includes all states)")
    ps.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="filter output (docker ps filters)")
    ps.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    ps.add_argument("--format", default=None, metavar="FORMAT",
                    help="'table' (default), 'table TEMPLATE', 'json', or a Go template such as "
                         "'{{.ID}}\\t{{.Names}}' (the placeholders of docker ps --format)")

    ins = sub.add_parser("inspect", help="show records as JSON")
    ins.usage_args = "REF [REF...]"
    ins.add_argument("refs", nargs="+", metavar="REF")
    ins.add_argument("--type", choices=("container", "exec"), default=None)
    ins.add_argument("-f", "--format", default=None, metavar="FORMAT",
                     help="a Go template per record, e.g. '{{.State.Status}}' or '{{json .Config}}'")

    ev = sub.add_parser("events", help="follow the change log (until Ctrl-C or --until)")
    ev.add_argument("--since", default=None, metavar="TIME|REV",
                    help="start at a time (unix seconds, RFC 3339, or a duration such as 10m: that long ago) "
                         "or after a revision (0-0: from the start of the log); default: now")
    ev.add_argument("--until", default=None, metavar="TIME|REV",
                    help="stop after this time or revision (same forms as --since)")
    ev.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                    help="type=container|exec, event=create|update|delete, container=NAME|ID, "
                         "label=KEY[=VALUE]")
    ev.add_argument("--format", choices=("text", "json"), default="text")

    nss = sub.add_parser("namespaces", help="list the namespaces in this Redis, with their counts")
    nss.add_argument("-q", "--quiet", action="store_true", help="only display the names")
    nss.add_argument("--format", choices=("table", "json"), default="table")

    lk = sub.add_parser("locks", help="list held action locks")
    lk.add_argument("--format", choices=("table", "json"), default="table")

    fs = sub.add_parser("fsck", help="check (and repair) the namespace's invariants")
    fs.add_argument("--repair", action="store_true", help="fix what can be fixed from the records")
    fs.add_argument("--format", choices=("text", "json"), default="text")

    from . import daemon, demo  # the faces with their own options

    daemon.add_arguments(sub.add_parser("daemon", help="run one daemon replica (simulated runtime)"))
    demo.add_arguments(sub.add_parser("demo", help="run the demo: replicas, a hung container, queries"))
    return p


COMMANDS: dict[str, Callable[[Store, argparse.Namespace, TextIO], int]] = {
    "ps": cmd_ps, "inspect": cmd_inspect, "events": cmd_events, "locks": cmd_locks, "fsck": cmd_fsck,
    "namespaces": cmd_namespaces,
}


class _StderrWarnings(logging.Handler):
    """``Warning: <message>`` on whatever ``sys.stderr`` is when the record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"Warning: {record.getMessage()}\n")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; UsageError for one docker would refuse."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        prog = f"{parser.prog} {args.command}"
        if extra[0].startswith("-") and extra[0] != "-":
            raise UsageError(prog, f"unknown flag: {extra[0].split('=', 1)[0]}", EXIT_USAGE)
        raise UsageError(prog, f"'{prog}' accepts no arguments", EXIT_ERROR)
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except UsageError as err:
        sys.stderr.write(_usage_text(err, parser))
        return err.code
    if args.command not in ("daemon", "demo"):  # those two configure logging themselves
        # the library logs what it skips or retries; the CLI reports problems itself, on one line
        lib_log = logging.getLogger("statestore")
        if not lib_log.handlers:
            lib_log.addHandler(logging.NullHandler())
            lib_log.propagate = False
        # ...except a broken index that a read worked around: the user should run fsck
        index_log = logging.getLogger("statestore.index")
        if not index_log.handlers:
            index_log.addHandler(_StderrWarnings())
    try:
        if args.command == "demo":
            from . import demo

            return demo.run(args)  # it needs to know whether a Redis was given (None: choose one)
        args.redis_url = args.redis_url or os.environ.get("STATESTORE_REDIS_URL") or DEFAULT_URL
        if args.command == "daemon":
            from . import daemon

            return daemon.run(args)
        with Store.from_url(args.redis_url, namespace=args.namespace, unavailable_timeout=2.0) as store:
            return COMMANDS[args.command](store, args, out)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
