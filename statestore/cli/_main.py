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
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson

from .. import (
    Event,
    InvalidArgumentError,
    NotFoundError,
    StateStoreError,
    Store,
    __version__,
    parse_filter_args,
)
from ._format import DEFAULT_PS_TABLE, ContainerContext, _HeaderOnly, prepare_format, render_rows, summary, table
from ._template import Template
from ._times import events_range

DEFAULT_URL = "redis://127.0.0.1:6379/0"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 125  # docker exits 125 for a flag error


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
    if ev.type == "progress":
        return {"namespace": namespace, "type": ev.type, "seq": ev.seq, "revision": ev.revision}
    return {"namespace": namespace, "type": ev.type, "kind": ev.kind, "id": ev.id, "name": ev.name,
            "container": ev.container_id, "version": ev.version, "status": ev.status, "seq": ev.seq,
            "revision": ev.revision, "labels": ev.labels}


def event_line(ev: Event) -> str:
    when = ev.revision.split("-", 1)[0]
    ts = datetime.fromtimestamp(int(when) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if ev.type == "progress":
        return f"{ts} progress (revision={ev.revision}, seq={ev.seq})"
    attrs = [f"name={ev.name}"] if ev.name else []
    if ev.kind == "exec":
        attrs.append(f"container={ev.container_id[:12]}")
    attrs += [f"version={ev.version}", f"status={ev.status}", f"revision={ev.revision}"]
    attrs += [f"{k}={v}" for k, v in sorted(ev.labels.items())]
    return f"{ts} {ev.kind} {ev.type} {ev.id} ({', '.join(attrs)})"


EVENT_KINDS = ("container", "exec")
EVENT_TYPES = ("create", "update", "delete", "enter", "leave")


@dataclass
class EventFilter:
    """``docker events --filter``, turned into the watch's selectors (moby ``events.Filter``):
    values of one key are alternatives, keys must all hold.  ``container=`` (and ``id=``)
    matches the container's ID or name, each exactly or as a prefix (moby's ``FuzzyMatch``),
    on each event, so a name that does not exist yet, or a re-created container, is matched
    when its events come; with ``container=`` or ``label=``, a container that stops or starts
    matching (a rename, a label change) is reported as ``leave`` or ``enter``."""

    kinds: frozenset[str] | None = None
    types: frozenset[str] | None = None
    containers: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

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
        for lbl in f.get("label", []):
            if not lbl or lbl.startswith("="):
                raise InvalidArgumentError(f"invalid filter 'label={lbl}' (use label=KEY or label=KEY=VALUE)")
        return cls(
            kinds=frozenset(f["type"]) if "type" in f else None,
            types=frozenset(f["event"]) if "event" in f else None,
            containers=tuple(dict.fromkeys([*f.get("container", []), *f.get("id", [])])),
            labels=tuple(f.get("label", [])),
        )


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
                        on_connection=on_connection, kinds=filt.kinds, types=filt.types,
                        labels=filt.labels, names=filt.containers or None, progress=args.progress)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        watch.close()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for ev in watch:
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
    if locks.unreadable:
        sys.stderr.write(f"Warning: {locks.unreadable} lock key(s) unreadable or just released; "
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


def _seconds(text: str) -> float:
    """``--progress``: a non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number of seconds, 0 or more")
    return value


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
                    help="type=container|exec, event=create|update|delete|enter|leave, container=NAME|ID, "
                         "label=KEY[=VALUE]")
    ev.add_argument("--format", choices=("text", "json"), default="text")
    ev.add_argument("--progress", type=_seconds, default=None, metavar="SECONDS",
                    help="with filters: print a progress mark (the revision read up to) at most every SECONDS "
                         "while events are filtered out, to resume from with --since")

    nss = sub.add_parser("namespaces", help="list the namespaces in this Redis, with their counts")
    nss.add_argument("-q", "--quiet", action="store_true", help="only display the names")
    nss.add_argument("--format", choices=("table", "json"), default="table")

    lk = sub.add_parser("locks", help="list held action locks")
    lk.add_argument("--format", choices=("table", "json"), default="table")

    fs = sub.add_parser("fsck", help="check (and repair) the namespace's invariants")
    fs.add_argument("--repair", action="store_true", help="fix what can be fixed from the records")
    fs.add_argument("--format", choices=("text", "json"), default="text")

    from .. import daemon, demo  # the faces with their own options

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
            from .. import demo

            return demo.run(args)  # it needs to know whether a Redis was given (None: choose one)
        args.redis_url = args.redis_url or os.environ.get("STATESTORE_REDIS_URL") or DEFAULT_URL
        if args.command == "daemon":
            from .. import daemon

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

