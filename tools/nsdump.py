"""Export a statestore namespace as JSON lines, or import such a file into an empty namespace.

    python tools/nsdump.py export --redis-url redis://host:6379/0 --namespace prod prod.jsonl
    python tools/nsdump.py import --redis-url redis://other:6379/0 --namespace prod-copy prod.jsonl

``FILE`` may be ``-`` for stdout (export) or stdin (import).  ``--redis-url`` and ``--namespace``
default to ``$STATESTORE_REDIS_URL`` and ``$STATESTORE_NAMESPACE`` like the ``statestore`` CLI.

The file
--------
One JSON object per line.  The first line is the header::

    {"kind":"header","format":1,"namespace":"prod","revision":"1795783276256-1","containers":2,"execs":1,...}

then one line per container, oldest ``Created`` first, then one line per exec, in the order of their
container's ``ExecIDs``::

    {"kind":"container","record":{ ...the stored docker-inspect document... }}
    {"kind":"exec","record":{ ... }}

The records come from one ``store.snapshot()``, so the file is one consistent revision of the namespace
(``revision`` in the header) even while replicas keep committing.

Import
------
Only through the public API, into a namespace that holds no records, in three steps:

1. every container is created (``containers.create``) from its exported document with ``ExecIDs``
   emptied, so ID, name, ``Created``, state, labels and every other field are the exported ones;
2. every exec is created (``execs.create``) in its container's ``ExecIDs`` order, which rebuilds
   ``ExecIDs`` exactly.  ``execs.create`` needs a running container, so a container that has execs but
   is not running is created in step 1 with its state flags set to running, and
3. gets its exported ``State`` back by one ``containers.commit`` after its execs exist.

Limits: record versions restart (a container's version becomes 1, plus one per exec, plus one if
step 3 ran; an exec's becomes 1), since every commit counts.  The change log, locks, fencing tokens
and lock counters are not exported; the target's log holds the import's own entries, including the
temporary ``running`` state of step 2 containers.  The import is not atomic: a watcher of the target
sees the records appear one by one, and if it fails half-way the target must be emptied before a new
attempt (see docs/operations.md).  Records that the store cannot decode are not exported (export
names them and exits 1; run ``statestore fsck`` first).  An exec whose container is missing from the
file, or an ``ExecIDs`` entry without its exec record, cannot be imported: import names them and
exits 1, after importing everything else.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statestore import Container, ExecConfig, StateStoreError, Store  # noqa: E402

FORMAT = 1
DEFAULT_URL = "redis://127.0.0.1:6379/0"


class DumpError(Exception):
    """The file is not a valid export, or the target cannot take it."""


def _created_key(c: Container) -> tuple[str, str]:
    return (str(c.created), c.id)


def export_namespace(store: Store, out: IO[bytes]) -> dict[str, Any]:
    """Write the namespace to ``out``; return the header plus ``corrupt`` (descriptions of skipped records)."""
    snap = store.snapshot()
    containers = sorted(snap.containers.values(), key=_created_key)
    listed: list[ExecConfig] = []
    seen: set[str] = set()
    for c in containers:
        for xid in c.exec_ids:
            x = snap.execs.get(xid)
            if x is not None and xid not in seen:
                listed.append(x)
                seen.add(xid)
    unlisted = sorted((x for xid, x in snap.execs.items() if xid not in seen), key=lambda x: x.id)
    execs = listed + unlisted
    header = {
        "kind": "header", "format": FORMAT, "namespace": store.namespace, "revision": snap.revision,
        "containers": len(containers), "execs": len(execs),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    out.write(orjson.dumps(header) + b"\n")
    for c in containers:
        out.write(orjson.dumps({"kind": "container", "record": c.to_dict()}) + b"\n")
    for x in execs:
        out.write(orjson.dumps({"kind": "exec", "record": x.to_dict()}) + b"\n")
    return {**header, "corrupt": [str(e) for e in snap.corrupt]}


def read_dump(lines: Iterable[bytes]) -> tuple[dict[str, Any], list[Container], list[ExecConfig]]:
    """Parse and check a whole export before anything is written; DumpError names the first bad line."""
    header: dict[str, Any] | None = None
    containers: list[Container] = []
    execs: list[ExecConfig] = []
    ids: set[str] = set()
    names: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DumpError(f"line {lineno}: not JSON: {exc}") from None
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if header is None:
            if kind != "header":
                raise DumpError(f"line {lineno}: the first line must be the header, not {kind!r}")
            if obj.get("format") != FORMAT:
                raise DumpError(f"line {lineno}: unsupported format {obj.get('format')!r} (this tool reads {FORMAT})")
            header = obj
            continue
        if kind not in ("container", "exec") or not isinstance(obj.get("record"), dict):
            raise DumpError(f"line {lineno}: expected a container or exec record, got kind {kind!r}")
        doc = obj["record"]
        meta = doc.get("StateStore")
        if isinstance(meta, dict):
            doc["StateStore"] = {**meta, "Version": 0}
        try:
            rec: Container | ExecConfig = (Container if kind == "container" else ExecConfig).from_dict(doc)
        except StateStoreError as exc:
            raise DumpError(f"line {lineno}: invalid {kind} record: {exc}") from None
        if rec.id in ids:
            raise DumpError(f"line {lineno}: {kind} {rec.id} appears twice")
        ids.add(rec.id)
        if isinstance(rec, Container):
            if execs:
                raise DumpError(f"line {lineno}: containers must come before execs")
            if rec.name in names:
                raise DumpError(f"line {lineno}: name {rec.name!r} appears twice")
            names.add(rec.name)
            containers.append(rec)
        else:
            execs.append(rec)
    if header is None:
        raise DumpError("empty file: no header")
    if (header.get("containers"), header.get("execs")) != (len(containers), len(execs)):
        raise DumpError(
            f"the header announces {header.get('containers')} containers and {header.get('execs')} execs, "
            f"the file holds {len(containers)} and {len(execs)} (truncated?)")
    return header, containers, execs


def _running_copy(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its state flags set to running (so that execs can be created on it)."""
    state = doc["State"]
    state.update(Running=True, Paused=False, Restarting=False, Status="running")
    return doc


def import_namespace(store: Store, lines: Iterable[bytes]) -> dict[str, Any]:
    """Import an export into ``store``'s namespace, which must hold no records; return counts and problems."""
    header, containers, execs = read_dump(lines)
    snap = store.snapshot()
    if snap.containers or snap.execs or snap.corrupt:
        raise DumpError(
            f"namespace {store.namespace!r} is not empty ({len(snap.containers)} containers, "
            f"{len(snap.execs)} execs): import only into an empty namespace")
    by_id = {c.id: c for c in containers}
    execs_of: dict[str, list[ExecConfig]] = {}
    problems: list[str] = []
    for x in execs:
        if x.container_id not in by_id:
            problems.append(f"exec {x.id}: its container {x.container_id} is not in the file; skipped")
            continue
        execs_of.setdefault(x.container_id, []).append(x)
    for cid, xs in execs_of.items():
        order = {xid: i for i, xid in enumerate(by_id[cid].exec_ids)}
        xs.sort(key=lambda x: (order.get(x.id, len(order)), x.id))
        for xid in by_id[cid].exec_ids:
            if xid not in {x.id for x in xs}:
                problems.append(f"container {cid}: ExecIDs lists {xid}, which is not in the file; dropped")

    restore: list[Container] = []
    for c in containers:
        doc = c.to_dict()
        doc["ExecIDs"] = None
        if execs_of.get(c.id) and c.status != "running":
            store.containers.create(Container.from_dict(_running_copy(doc)))
            restore.append(c)
        else:
            store.containers.create(Container.from_dict(doc))
    n_execs = 0
    for c in containers:
        for x in execs_of.get(c.id, []):
            store.execs.create(x)
            n_execs += 1
    for c in restore:
        current = store.containers.get(c.id)
        final = c.to_dict()
        final["ExecIDs"] = current.to_dict()["ExecIDs"]
        final["StateStore"]["Version"] = current.version
        store.containers.commit(Container.from_dict(final))
    return {"containers": len(containers), "execs": n_execs, "problems": problems,
            "source_namespace": header.get("namespace"), "source_revision": header.get("revision")}


# --- command line ---------------------------------------------------------------------------------
def _open_out(path: str) -> IO[bytes]:
    return sys.stdout.buffer if path == "-" else open(path, "wb")


def _lines_in(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield from f


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nsdump", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_ in (("export", "write every container and exec of a namespace as JSON lines"),
                        ("import", "create the records of an export in an empty namespace")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--redis-url", default=os.environ.get("STATESTORE_REDIS_URL", DEFAULT_URL),
                       help="Redis to use (default: $STATESTORE_REDIS_URL, else %(default)s)")
        s.add_argument("--namespace", default=os.environ.get("STATESTORE_NAMESPACE", "default"),
                       help="namespace (default: $STATESTORE_NAMESPACE, else %(default)s)")
        s.add_argument("file", metavar="FILE", help="the JSON-lines file, or - for stdout/stdin")
    return p


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        with Store.from_url(args.redis_url, namespace=args.namespace) as store:
            if args.command == "export":
                out = _open_out(args.file)
                try:
                    info = export_namespace(store, out)
                finally:
                    if out is not sys.stdout.buffer:
                        out.close()
                    else:
                        out.flush()
                for bad in info["corrupt"]:
                    sys.stderr.write(f"Warning: not exported: {bad}\n")
                sys.stderr.write(
                    f"exported {_n(info['containers'], 'container')} and {_n(info['execs'], 'exec')} of namespace "
                    f"{store.namespace!r} at revision {info['revision']} in {time.monotonic() - started:.1f}s\n")
                return 1 if info["corrupt"] else 0
            result = import_namespace(store, _lines_in(args.file))
            for problem in result["problems"]:
                sys.stderr.write(f"Warning: {problem}\n")
            sys.stderr.write(
                f"imported {_n(result['containers'], 'container')} and {_n(result['execs'], 'exec')} from namespace "
                f"{result['source_namespace']!r} (revision {result['source_revision']}) into "
                f"{store.namespace!r} in {time.monotonic() - started:.1f}s\n")
            return 1 if result["problems"] else 0
    except (DumpError, StateStoreError, OSError) as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
