"""The ``statestore`` command line (also ``python -m statestore``).

A face: it uses only the public API.  Output follows Docker's CLI where there
is a Docker equivalent (``ps``, ``inspect``, ``events``).  Errors are one line
on stderr and a non-zero exit; a user mistake or an unreachable Redis never
prints a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

import orjson

from . import (
    Container,
    Event,
    InvalidArgumentError,
    NotFoundError,
    StateStoreError,
    Store,
    parse_filter_args,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


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


def command_text(c: Container, trunc: bool) -> str:
    parts = [str(c.path or "")] + [str(a) for a in (c.args or [])]
    cmd = " ".join(p for p in parts if p)
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return f'"{cmd}"'


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
        "ID": c.id, "Names": c.name, "Image": c.config.image, "Command": command_text(c, False).strip('"'),
        "CreatedAt": c.created, "State": c.status, "Status": status_text(c, datetime.now(UTC)),
        "Ports": ports_text(c), "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
        "Networks": ",".join(sorted((c.network_settings.networks or {}).keys())), "Version": c.version,
    }


# --- commands ---------------------------------------------------------------------------


def cmd_ps(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    filters = parse_filter_args(args.filter or [])
    limit = args.last if args.last and args.last > 0 else None
    containers = store.containers.list(filters=filters, all=args.all, limit=limit)
    for bad in containers.corrupt:
        sys.stderr.write(f"Warning: {bad}\n")
    if args.quiet:
        for c in containers:
            out.write((c.id if args.no_trunc else c.id[:12]) + "\n")
        return EXIT_OK
    if args.format == "json":
        for c in containers:
            out.write(orjson.dumps(summary(c)).decode() + "\n")
        return EXIT_OK
    now = datetime.now(UTC)
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]]
    for c in containers:
        rows.append([
            c.id if args.no_trunc else c.id[:12], c.config.image, command_text(c, not args.no_trunc),
            f"{_ago(c.created, now)} ago", status_text(c, now), ports_text(c), c.name,
        ])
    table(rows, out)
    return EXIT_OK


def cmd_inspect(store: Store, args: argparse.Namespace, out: TextIO) -> int:
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


def _event_filters(values: Sequence[str]) -> dict[str, Any]:
    f = parse_filter_args(values)
    allowed = {"type", "event", "container", "id", "label"}
    bad = set(f) - allowed
    if bad:
        raise InvalidArgumentError(f"invalid filter '{sorted(bad)[0]}' (use type, event, container, label)")
    return f


def cmd_events(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    f = _event_filters(args.filter or [])
    ids: list[str] | None = None
    refs = [*f.get("container", []), *f.get("id", [])]
    if refs:
        ids = [store.containers.resolve(r) for r in refs]
    store.ping()  # an unreachable Redis is an error now, not an endless reconnect loop
    watch = store.watch(since=args.since, kinds=f.get("type"), ids=ids, labels=f.get("label"),
                        types=f.get("event"), block=0.2)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="statestore", description="Inspect and operate statestore namespaces in Redis.")
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
    ps.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="filter output (docker ps filters)")
    ps.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    ps.add_argument("--format", choices=("table", "json"), default="table")

    ins = sub.add_parser("inspect", help="show records as JSON")
    ins.add_argument("refs", nargs="+", metavar="REF")
    ins.add_argument("--type", choices=("container", "exec"), default=None)

    ev = sub.add_parser("events", help="follow the change log (until Ctrl-C)")
    ev.add_argument("--since", default=None, metavar="REV", help="revision to start after (default: now; 0-0: all)")
    ev.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                    help="type=container|exec, event=create|update|delete, container=REF, label=KEY[=VALUE]")
    ev.add_argument("--format", choices=("text", "json"), default="text")

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
}


class _StderrWarnings(logging.Handler):
    """``Warning: <message>`` on whatever ``sys.stderr`` is when the record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"Warning: {record.getMessage()}\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
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
