"""Docker's wording for containers: ``ps`` columns, durations, tables and ``--format`` contexts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from .. import Container
from .._wording import _ago, command_raw, parse_time, status_text
from ._template import FormatContext, Template

# --- formatting helpers (Docker's wording) ---------------------------------------------


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
