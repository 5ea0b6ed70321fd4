"""A guided tour of statestore's Python API against a real Redis, step by step.

    .venv/bin/python tools/quickstart.py [--redis-url URL]

Uses the Redis named by ``--redis-url`` or ``$STATESTORE_REDIS_URL``;
without either it starts a private ``redis-server`` on a free port in a
temporary directory and removes it afterwards.  Every run works in a fresh
namespace (``quickstart-<pid>-<random>``) and deletes every key of it at the
end, also after a failed step.  Exit status: 0 when every step behaved as
documented, 1 otherwise (or when no Redis can be had).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from statestore import (
    ConflictError,
    Container,
    ExecConfig,
    InvalidStateError,
    NameInUseError,
    NotFoundError,
    StateStoreError,
    Store,
)


class StepFailed(Exception):
    """A step did not behave as the docs say it does."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise StepFailed(what)


def expect(exc_type: type[StateStoreError], fn: Callable[[], Any]) -> StateStoreError:
    """Run ``fn``, which must raise ``exc_type``; return the error."""
    try:
        fn()
    except exc_type as exc:
        return exc
    raise StepFailed(f"expected {exc_type.__name__}")


def section(title: str) -> None:
    print(f"\n== {title}")


def show(label: str, value: object) -> None:
    print(f"   {label:<34} {value}")


# --- a private redis-server -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(binary: str, workdir: str) -> tuple[subprocess.Popen[bytes], int] | None:
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
         "--appendonly", "no", "--logfile", os.path.join(workdir, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=0.5).ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    return None


@contextmanager
def private_redis(binary: str) -> Iterator[str]:
    """A throw-away redis-server on 127.0.0.1:<free port>; yields its URL."""
    workdir = tempfile.mkdtemp(prefix="statestore-quickstart-")
    started = None
    try:
        for _ in range(3):  # another process may take the free port first
            started = _start(binary, workdir)
            if started is not None:
                break
        if started is None:
            raise RuntimeError(f"redis-server did not start (see {workdir}/redis.log)")
        yield f"redis://127.0.0.1:{started[1]}/0"
    finally:
        if started is not None:
            proc = started[0]
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# --- the tour -----------------------------------------------------------------------


def tour(store: Store) -> None:
    ns = store.namespace
    keys = store.keys
    containers, execs = store.containers, store.execs

    section("1. create containers (version 1; the name is reserved in the same commit)")
    web = containers.create(Container.new(
        "nginx:1.27", name="web", labels={"app": "shop", "tier": "front"},
        cmd=["nginx", "-g", "daemon off;"], port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
    ))
    db = containers.create(Container.new("postgres:16", name="db", labels={"app": "shop", "tier": "data"}))
    job = containers.create(Container.new("busybox", cmd=["true"]))  # no name: a generated one
    for c in (web, db, job):
        show(c.name, f"{c.id[:12]}  version={c.version}  status={c.status}")
    check(web.version == 1 and job.name.count("_") == 1, "create returns version 1 and a generated name")
    err = expect(NameInUseError, lambda: containers.create(Container.new("redis:7", name="web")))
    show("create another 'web':", f"NameInUseError (held by {err.holder_id[:12]})")  # type: ignore[attr-defined]

    section("2. look up: exact ID, exact name (with or without '/'), unique ID prefix")
    for ref in (web.id, "web", "/web", web.id[:12], web.id[:4]):
        got = containers.get(ref)
        check(got.id == web.id and got == web and got is not web, f"get({ref!r})")
        show(f"get({ref[:16] + ('...' if len(ref) > 16 else '')!r})", repr(got))
    show("get('nosuch'):", expect(NotFoundError, lambda: containers.get("nosuch")))

    section("3. update: read, change a private copy, commit (retried on conflict)")
    web = containers.update("web", lambda c: c.state.set_running(pid=4242))
    db = containers.update("db", lambda c: c.state.set_running(pid=4343))
    show("web after start:", repr(web))
    check(web.version == 2 and web.status == "running", "start bumps the version to 2")
    err = expect(InvalidStateError, lambda: containers.update("web", lambda c: c.state.set_running(pid=1)))
    show("start web again:", err)

    section("4. commit a stale copy: the store refuses it")
    stale = containers.get("web")
    containers.update("web", lambda c: c.labels.update(release="2"))  # someone else commits first
    stale.labels["release"] = "3"
    conflict = expect(ConflictError, lambda: containers.commit(stale))
    assert isinstance(conflict, ConflictError)
    show("commit(stale):", conflict)
    show("attributes:", f"key={conflict.key} expected={conflict.expected} actual={conflict.actual}")
    check(conflict.expected == 2 and conflict.actual == 3, "ConflictError carries both versions")
    fresh = containers.get("web")
    fresh.labels["release"] = "3"
    web = containers.commit(fresh)
    show("re-read and commit:", f"{web!r} release={web.labels['release']}")

    section("5. rename: the old name is freed in the same commit")
    db = containers.rename("db", "database")
    show("rename db -> database:", repr(db))
    # '/db' asks for the name only: a bare 'db' could also match another
    # container's ID prefix (Docker's lookup order), as 'dbb26c...' would.
    show("get('/db'):", expect(NotFoundError, lambda: containers.get("/db")))
    check(containers.get("database").id == db.id, "the new name resolves")

    section("6. list, docker ps style (newest first)")
    queries: list[tuple[str, dict[str, Any], bool, int]] = [
        ("ps", {}, False, 2),
        ("ps -a", {}, True, 3),
        ("ps --filter label=tier=front", {"label": "tier=front"}, False, 1),
        ("ps -a --filter status=created", {"status": "created"}, False, 1),
        ("ps -a --filter name=^data", {"name": "^data"}, True, 1),
        # publish matches the container's port that has a host binding, as moby does (web: 8080->80/tcp)
        ("ps --filter publish=80", {"publish": "80"}, False, 1),
        ("ps --filter publish=8080", {"publish": "8080"}, False, 0),
    ]
    for label, filters, all_, n in queries:
        found = containers.list(filters, all=all_)
        show(label, ", ".join(c.name for c in found) + f"   (revision {found.revision})")
        check(len(found) == n and not found.corrupt, f"{label} finds {n}")

    section("7. snapshot: every record at one change-log revision")
    snap = store.snapshot()
    show("revision:", snap.revision)
    show("containers / execs:", f"{len(snap.containers)} / {len(snap.execs)}")
    show("snap.get('web'):", repr(snap.get("web")))
    check(len(snap.containers) == 3 and snap.get("web") == web, "the snapshot holds what was committed")

    section("8. exec: a new exec record and the container's ExecIDs change in one commit")
    x = execs.create(ExecConfig.new("web", ["sh", "-c", "echo hello"]))
    show("execs.create:", repr(x))
    show("web ExecIDs:", [i[:12] for i in containers.get("web").exec_ids])
    check(containers.get("web").exec_ids == [x.id], "ExecIDs lists the exec")
    err = expect(InvalidStateError, lambda: execs.create(ExecConfig.new(job.id, ["ls"])))
    show(f"exec in {job.name}:", err)

    section("9. the raw record, as redis-cli shows it")
    ckey = keys.container(web.id)
    print(f"   $ redis-cli GET '{ckey}'")
    raw = json.loads(store.client.get(ckey) or b"{}")
    print("   " + json.dumps({k: raw[k] for k in ("Id", "Name", "StateStore")})[:-1] + ", ...}")
    print(f"   $ redis-cli GET '{keys.name('web')}'")
    holder = store.client.get(keys.name("web"))
    print(f"   {holder.decode() if isinstance(holder, bytes) else holder}")
    block = raw["StateStore"]
    check({k: block.get(k) for k in ("Schema", "Kind", "Version")}
          == {"Schema": 1, "Kind": "container", "Version": containers.get("web").version}
          and re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", str(block.get("Commit"))) is not None,
          "the stored StateStore block carries the version and the id of the commit that wrote it")

    section("10. delete everything: records, names, index members and execs go in one commit each")
    for ref in ("web", "database", job.id):
        gone = containers.delete(ref)
        show(f"delete({ref[:12]!r}):", f"{gone!r} at revision {gone.revision}")
    check(not execs.list() and not containers.list(all=True), "nothing is left to list")
    left = sorted(k.decode() for k in store.client.scan_iter(match=keys.match_all, count=1000))
    show("keys left in the namespace:", left)
    check(left == sorted([keys.log, keys.log_seq]), "only the change log and its sequence counter remain")
    show("change-log entries:", store.client.xlen(keys.log))
    print(f"\nok: every step behaved as documented; namespace {ns!r} is removed on exit")


def remove_namespace(store: Store) -> None:
    """Best effort, also after a failed step: delete what the tour created through the API, then every
    key left in its namespace (the change log, its sequence counter and whatever a failed step left;
    the namespace is this run's own)."""
    try:
        for c in store.containers.list(all=True):
            store.containers.delete(c.id)
    except StateStoreError as exc:
        print(f"quickstart: deleting the containers of {store.namespace!r} failed: {exc}", file=sys.stderr)
    try:
        left = list(store.client.scan_iter(match=store.keys.match_all, count=1000))
        if left:
            store.client.delete(*left)
    except redis.RedisError as exc:
        print(f"quickstart: could not clean up namespace {store.namespace!r}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis-url", default=os.environ.get("STATESTORE_REDIS_URL"),
                        help="Redis to use (default: $STATESTORE_REDIS_URL, else a private redis-server)")
    args = parser.parse_args(argv)
    namespace = f"quickstart-{os.getpid()}-{secrets.token_hex(3)}"

    def run(url: str) -> int:
        try:
            store = Store.from_url(url, namespace, unavailable_timeout=2.0)
            store.ping()
        except StateStoreError as exc:
            print(f"quickstart: cannot use {url}: {exc}", file=sys.stderr)
            return 1
        with store:
            try:
                tour(store)
            except (StepFailed, StateStoreError) as exc:
                print(f"\nFAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
            finally:
                remove_namespace(store)
        return 0

    if args.redis_url:
        print(f"using the Redis at {args.redis_url} (namespace {namespace})")
        return run(args.redis_url)
    binary = shutil.which("redis-server")
    if binary is None:
        print("quickstart: redis-server not found; install it (apt-get install redis-server) "
              "or pass --redis-url", file=sys.stderr)
        return 1
    with private_redis(binary) as url:
        print(f"using a private redis-server at {url} (namespace {namespace})")
        return run(url)


if __name__ == "__main__":
    sys.exit(main())
