"""The subset of Go's ``text/template`` that docker's ``--format`` strings use: pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from .. import (
    InvalidArgumentError,
)

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
