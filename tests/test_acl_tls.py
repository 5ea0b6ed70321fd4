"""Access control (ACL), AUTH and TLS, against private redis-servers.

The ACL line that docs/operations.md ("Access control (ACL)") gives operators is
built here, by :func:`acl_rules`, and the tests create their users with exactly
that text; ``test_the_docs_quote_the_acl_line_of_this_file`` keeps the two the same.

What is proven, with real commands:

* a user limited to one namespace's keys and channels can do everything a store
  does there, nothing it does is refused (``ACL LOG`` stays empty), and every
  command the line grants is one the store sent (MONITOR): the line is enough
  and nothing in it is unused;
* a store for another namespace opened with that user's credentials gets
  ``StorePermissionError`` (a ``PermissionError``) on reads, writes, locks and
  watches, and the other namespace stays byte-for-byte unchanged;
* a wrong password or user gives ``StorePermissionError``;
* a ``requirepass`` server works through ``redis://:pass@...``, a TLS-only
  server through ``rediss://...?ssl_ca_certs=...`` (with and without client
  certificates), and a client that does not trust the server's CA gets
  ``StoreUnavailableError`` naming the certificate failure.

The TLS tests need a redis-server built with TLS (Debian's and Ubuntu's are).
Without it they are skipped with a message saying so, unless
``STATESTORE_REQUIRE_TLS=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from statestore import (
    Container,
    ExecConfig,
    NameInUseError,
    StateStoreError,
    Store,
    StorePermissionError,
    StoreUnavailableError,
)
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess, free_port, redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# --- the ACL line (docs/operations.md quotes what these functions build) ------------------------

#: Every command a Store sends, in the order docs/operations.md explains them.
ACL_COMMANDS = (
    "ping",                                    # Store.ping()
    "script|load", "evalsha",                  # the Lua scripts, loaded once and called by SHA
    "watch", "unwatch", "multi", "exec",       # commits
    "get", "exists", "zrange",                 # lookups and lists outside the scripts
    "type", "scan",                            # fsck; SCAN also for locks()
    "pttl", "time",                            # locks()
    "blpop",                                   # waiting for a lock
    "xrange", "xrevrange", "xread",            # watch() and view()
    # only inside statestore's scripts (Redis checks what a script runs, with its keys and channels)
    "set", "del", "incr", "incrby", "pexpire", "rpush", "zadd", "zrem", "zlexcount", "xadd", "publish",
)


#: What ``statestore daemon`` replicas (statestore.daemon) send besides, for the work queue streams.
DAEMON_COMMANDS = ("xgroup|create", "xgroup|createconsumer", "xreadgroup", "xack", "xdel", "xclaim", "xpending",
                   "xautoclaim")


def acl_rules(namespace: str, password: str) -> list[str]:
    """The rules of a user that may do everything a Store for ``namespace`` does, and no more."""
    return ["reset", "on", f">{password}", f"~ss:{{{namespace}}}:*", f"&ss:{{{namespace}}}:ev:*",
            *(f"+{c}" for c in ACL_COMMANDS)]


def acl_setuser(user: str, password: str, namespace: str) -> str:
    """The ``ACL SETUSER`` command as typed at a redis-cli prompt (no quoting needed there)."""
    return " ".join(["ACL", "SETUSER", user, *acl_rules(namespace, password)])


def acl_setuser_shell(user: str, password: str, namespace: str) -> str:
    """The same command as one shell line (``>``, ``~``, ``&``, ``*``, ``|`` quoted)."""
    return shlex.join(["redis-cli", "ACL", "SETUSER", user, *acl_rules(namespace, password)])


def aclfile_line(user: str, password: str, namespace: str) -> str:
    """The same user as a line of an ACL file (``aclfile`` in redis.conf; ``ACL LOAD``)."""
    return " ".join(["user", user, *acl_rules(namespace, password)])


def daemon_acl_rules(namespace: str, password: str) -> list[str]:
    """The rules of a ``statestore daemon`` replica's user (and of a producer of work items)."""
    return [*acl_rules(namespace, password), *(f"+{c}" for c in DAEMON_COMMANDS)]


def test_the_docs_quote_the_acl_line_of_this_file() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for line in (acl_setuser("ss-prod", "CHANGE-ME", "prod"), acl_setuser_shell("ss-prod", "CHANGE-ME", "prod"),
                 aclfile_line("ss-prod", "CHANGE-ME", "prod"),
                 "ACL SETUSER ss-prod " + " ".join(f"+{c}" for c in DAEMON_COMMANDS)):
        assert f"\n{line}\n" in text, f"docs/operations.md does not quote this line of tests/test_acl_tls.py:\n{line}"
    assert "## Access control (ACL)" in text and "### TLS and AUTH" in text


def test_the_rules_grant_each_command_once_and_only_to_the_namespace() -> None:
    rules = acl_rules("prod", "pw")
    assert len(set(ACL_COMMANDS)) == len(ACL_COMMANDS)
    assert [r for r in rules if r[0] in "~&%"] == ["~ss:{prod}:*", "&ss:{prod}:ev:*"]
    assert not [r for r in rules if "@" in r or r in ("allkeys", "allchannels", "allcommands", "nopass")]


# --- servers ------------------------------------------------------------------------------------

_counter = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_counter)}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _acl_log(admin: redis.Redis, user: str) -> list[dict[str, Any]]:
    """ACL LOG entries of ``user``, newest first.

    A refused ``CLIENT SETINFO`` is left out: redis-py sends it after connecting and
    ignores a refusal; Redis 7.0 does not know the subcommand (and refuses
    ``+client|setinfo`` in a rule), newer servers log its refusal.
    """
    entries: list[dict[str, Any]] = admin.acl_log(count=1000)
    return [e for e in entries if e.get("username") == user and e.get("object") != "client|setinfo"]


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisProcess]:
    with RedisProcess().start() as proc:
        yield proc


@pytest.fixture
def admin(acl_server: RedisProcess) -> Iterator[redis.Redis]:
    c = acl_server.client()
    try:
        yield c
    finally:
        c.close()


class NamespaceUser:
    """A namespace of its own and an ACL user made with the documented line for it."""

    def __init__(self, server: RedisProcess, admin: redis.Redis, rules: Callable[[str, str], list[str]] = acl_rules):
        self.namespace = _unique("acl")
        self.user = f"ss-{self.namespace}"
        self.password = f"pw-{self.namespace}"
        self.port = server.port
        command = acl_setuser(self.user, self.password, self.namespace)
        if rules is not acl_rules:
            command = " ".join(["ACL", "SETUSER", self.user, *rules(self.namespace, self.password)])
        assert admin.execute_command(*command.split(" ")) in (b"OK", "OK")

    def url(self, password: str | None = None, user: str | None = None, db: int = 0) -> str:
        return (f"redis://{quote(user or self.user)}:{quote(password or self.password)}"
                f"@{HOST}:{self.port}/{db}")

    def store(self, namespace: str | None = None, **kw: Any) -> Store:
        return Store.from_url(self.url(), namespace=namespace or self.namespace, **kw)


@pytest.fixture
def user(acl_server: RedisProcess, admin: redis.Redis) -> NamespaceUser:
    return NamespaceUser(acl_server, admin)


class _Monitor:
    """MONITOR in a thread: every command the server ran, except those of the admin connection."""

    def __init__(self, port: int, admin: redis.Redis) -> None:
        self.admin = admin
        self.client = redis.Redis(host=HOST, port=port, protocol=2)
        self.commands: list[tuple[str, str]] = []   # (client, command name)
        self.admin_address: str | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._token = _unique("monitor-")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Monitor:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._started.wait(0.05):
            assert time.monotonic() < deadline and self._error is None, f"MONITOR did not start: {self._error}"
            self.admin.echo(f"{self._token}-start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.admin.echo(f"{self._token}-end")
        self._thread.join(10)
        self.client.close()
        assert not self._thread.is_alive(), "MONITOR did not see the end marker"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            with self.client.monitor() as m:
                while True:
                    cmd = m.next_command()
                    text = str(cmd["command"])
                    where = ("lua" if cmd.get("client_type") == "lua"
                             else f"{cmd.get('client_address')}:{cmd.get('client_port')}")
                    if text.startswith(f"ECHO {self._token}-"):
                        if text.endswith("-start") and not self._started.is_set():
                            self.admin_address = where
                            self._started.set()
                        elif text.endswith("-end"):
                            return
                        continue
                    if not self._started.is_set() or where == self.admin_address:
                        continue
                    parts = text.split(" ")
                    name = parts[0].lower()
                    if name in ("script", "client", "xgroup", "xinfo", "acl", "config") and len(parts) > 1:
                        name += "|" + parts[1].lower()
                    self.commands.append((where, name))
        except BaseException as exc:  # reported by __exit__
            self._error = exc
            self._started.set()

    def names(self) -> set[str]:
        # AUTH and HELLO need no permission: every client may authenticate
        return {n for _, n in self.commands if n not in ("auth", "hello")}


# --- (a) the namespace's own user can do everything -----------------------------------------------


def _wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_namespace_user_can_do_everything_and_the_line_grants_nothing_unused(
        acl_server: RedisProcess, admin: redis.Redis, user: NamespaceUser) -> None:
    ns = user.namespace
    with user.store(replica_id="a1") as store, user.store(replica_id="a2") as other, \
            _Monitor(acl_server.port, admin) as monitor:
        store.ping()
        web = store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "shop"}))
        with pytest.raises(NameInUseError):  # refused after its read: the commit UNWATCHes
            store.containers.create(Container.new("nginx:1.27", name="web"))
        web = store.containers.update("web", lambda c: c.state.set_running(pid=42))
        x = store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"]))
        x = store.execs.update(x.id, lambda e: e.set_running(43))
        assert store.containers.get(web.id).version == web.version + 1  # + the exec
        assert store.containers.get("web").id == web.id
        assert store.containers.get(web.id[:7]).id == web.id
        assert store.execs.get(x.id[:9]).id == x.id
        assert [c.id for c in store.containers.list({"label": "app=shop"})] == [web.id]
        assert [c.id for c in store.containers.list({"name": ["^w.b$"]}, all=True)] == [web.id]  # ZRANGE + filter
        assert [e.id for e in store.execs.list(web.id)] == [x.id]
        snap = store.snapshot()
        assert set(snap.containers) == {web.id} and set(snap.execs) == {x.id}

        # watching: from now, from a revision, and a view
        watch_now = store.watch(block=0.2)
        assert watch_now.poll() == []
        view = store.view()
        try:
            assert view.get("web").id == web.id
            paused = store.containers.update("web", lambda c: c.state.set_paused())
            assert [(e.type, e.id) for e in watch_now.poll(5.0)] == [("update", web.id)]
            with store.watch(since=snap.revision, block=0.2) as since_snap:
                assert [(e.type, e.version) for e in since_snap.poll(5.0)] == [("update", paused.version)]
            assert view.wait_for(paused.revision or "", timeout=5.0)
            assert view.get("web").state.status == "paused"
        finally:
            watch_now.close()
            view.close()

        # locks: a renewed lease, another replica waiting for it, the wake-up on release, fencing
        lease = store.lock("web", ttl=0.3, timeout=2.0)
        time.sleep(0.25)  # past a renewal (every ttl/3)
        (held,) = store.locks()
        assert held.container_id == web.id and held.token == lease.token and held.replica == "a1"
        got: list[Any] = []

        def wait_for_the_lock() -> None:
            try:
                with other.lock("web", ttl=1.0, timeout=5.0) as lease2:
                    got.append(other.containers.update("web", lambda c: c.state.set_unpaused(), lease=lease2))
            except BaseException as exc:  # reported below
                got.append(exc)

        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        try:
            _wait_until(lambda: bool(admin.exists(f"ss:{{{ns}}}:lockwait:{web.id}")), 5, "the waiter's flag")
            store.containers.update("web", lambda c: c.labels.update(step="locked"), lease=lease)
            assert lease.release() is True
        finally:
            waiter.join(10)
        assert len(got) == 1 and isinstance(got[0], Container), got
        assert got[0].state.status == "running" and got[0].labels["step"] == "locked"
        assert store.locks() == []

        # fsck, and a repair after a hand edit
        assert store.fsck().clean
        admin.delete(f"ss:{{{ns}}}:name:web")
        report = store.fsck(repair=True)
        assert [p.code for p in report.problems] == ["name-missing"] and report.repaired_all
        assert store.fsck().clean

        store.execs.delete(x.id)
        store.containers.delete("web")
        assert store.snapshot().containers == {}

    assert _acl_log(admin, user.user) == [], "the documented ACL line refused something the store did"
    users = {where for where, _ in monitor.commands}
    assert users, "MONITOR saw nothing"
    granted = {c.lower() for c in ACL_COMMANDS}
    assert monitor.names() == granted, (
        f"sent but not granted: {sorted(monitor.names() - granted)}; "
        f"granted but never sent: {sorted(granted - monitor.names())}")


def test_a_daemon_replica_works_with_the_daemon_line(acl_server: RedisProcess, admin: redis.Redis) -> None:
    from statestore import daemon

    u = NamespaceUser(acl_server, admin, rules=daemon_acl_rules)
    with u.store() as store, u.store() as producer, _Monitor(acl_server.port, admin) as monitor:
        daemon.ensure_group(producer)
        # an item a replica that died took: the live one takes it over (XPENDING, XAUTOCLAIM)
        orphan = Container.new("nginx", name="orphan")
        daemon.submit(producer, "create", orphan.id, name="orphan", image="nginx")
        producer.client.xreadgroup(daemon.GROUP, "dead-replica", {producer.keys.work_queue: ">"}, count=1)
        replica = daemon.Replica(store, daemon.Options("r1", lock_ttl=2.0, claim_idle=0.3, health_interval=0),
                                 daemon.Runtime(latency_ms=(1.0, 2.0)))
        serving = threading.Thread(target=replica.serve)
        serving.start()
        results: dict[str, Any] = {}
        after = "0-0"

        def wait_for(item: str) -> Any:
            nonlocal after
            deadline = time.monotonic() + 15
            while item not in results:
                assert time.monotonic() < deadline, f"no result for {item}; results so far: {results}"
                for r in daemon.read_results(producer, after, block=0.2):
                    after = r.entry
                    results[r.item] = r
            return results[item]

        try:
            web = Container.new("nginx", name="web")
            for action, args in (("create", {"name": "web", "image": "nginx"}),
                                 ("start", {"hang": 0.4}),  # in flight across a touch (XCLAIM)
                                 ("exec", {"cmd": ["true"]})):
                done = wait_for(daemon.submit(producer, action, web.id, **args))
                assert done.ok, done
            _wait_until(lambda: "orphan" in {c.name for c in store.containers.list(all=True)}, 15,
                        "the dead replica's item to be taken over")
        finally:
            replica.stop("test over")
            serving.join(15)
        assert not serving.is_alive()
        assert store.containers.get("orphan").id == orphan.id and store.containers.get("web").state.running
    assert _acl_log(admin, u.user) == []
    granted = {*ACL_COMMANDS, *DAEMON_COMMANDS}
    assert monitor.names() <= granted, sorted(monitor.names() - granted)
    assert set(DAEMON_COMMANDS) <= monitor.names(), sorted(set(DAEMON_COMMANDS) - monitor.names())


# --- (b) another namespace with the same credentials -----------------------------------------------


@pytest.fixture
def foreign(admin: redis.Redis) -> Iterator[tuple[Store, Container, ExecConfig]]:
    """Namespace B, written by the admin (default user): a running container, an exec, a held lock."""
    b = Store(admin, namespace=_unique("other"))
    c = b.containers.create(Container.new("nginx", name="web", labels={"app": "b"}))
    c = b.containers.update("web", lambda r: r.state.set_running(pid=9))
    x = b.execs.create(ExecConfig.new("web", ["ls"]))
    lease = b.lock("web", ttl=30.0)
    try:
        yield b, c, x
    finally:
        lease.release()
        b.close()


def _foreign_operations(store: Store, c: Container, x: ExecConfig) -> dict[str, Callable[[], Any]]:
    return {
        "get by ID": lambda: store.containers.get(c.id),
        "get by name": lambda: store.containers.get("web"),
        "get by prefix": lambda: store.containers.get(c.id[:6]),
        "exec get": lambda: store.execs.get(x.id),
        "exec get by prefix": lambda: store.execs.get(x.id[:6]),
        "list": lambda: store.containers.list(all=True),
        "list by label": lambda: store.containers.list({"label": "app=b"}),
        "list by name pattern": lambda: store.containers.list({"name": ["^w"]}, all=True),
        "execs list": lambda: store.execs.list(),
        "execs of a container": lambda: store.execs.list(c.id),
        "snapshot": lambda: store.snapshot(),
        "create": lambda: store.containers.create(Container.new("nginx", name="intruder")),
        "update by ID": lambda: store.containers.update(c.id, lambda r: r.state.set_paused()),
        "update by name": lambda: store.containers.update("web", lambda r: r.labels.update(x="y")),
        "commit": lambda: store.containers.commit(c),
        "delete": lambda: store.containers.delete(c.id),
        "exec create": lambda: store.execs.create(ExecConfig.new(c.id, ["sh"])),
        "exec delete": lambda: store.execs.delete(x.id),
        "lock by name": lambda: store.lock("web", timeout=0.5),
        "lock by ID": lambda: store.lock(c.id, timeout=0.5),
        "locks": lambda: store.locks(),
        "watch from now": lambda: next(iter(store.watch(block=0.1))),
        "watch from the start": lambda: store.watch(since="0-0", block=0.1).poll(0.2),
        "view": lambda: store.view(),
    }


def test_a_store_for_another_namespace_is_refused_everything_and_changes_nothing(
        admin: redis.Redis, user: NamespaceUser, foreign: tuple[Store, Container, ExecConfig]) -> None:
    b, c, x = foreign
    before = dump_namespace(admin, b.namespace)
    with user.store(namespace=b.namespace) as intruder:
        for what, op in _foreign_operations(intruder, c, x).items():
            with pytest.raises(StorePermissionError) as info:
                op()
            exc = info.value
            assert isinstance(exc, StateStoreError) and isinstance(exc, PermissionError), what
            assert not isinstance(exc, rex.RedisError), what
            assert "no permissions" in str(exc), (what, str(exc))
    assert dump_namespace(admin, b.namespace) == before
    # the refusals were about B's keys, never about a command the line lacks
    log = _acl_log(admin, user.user)
    assert log and {e["reason"] for e in log} == {"key"}
    assert all(str(e["object"]).startswith(f"ss:{{{b.namespace}}}:") for e in log), log
    # and A's own namespace still works with the same credentials
    with user.store() as own:
        own.containers.create(Container.new("nginx", name="web"))
        assert [r.name for r in own.containers.list(all=True)] == ["web"]


def test_fsck_of_another_namespace_is_refused(
        admin: redis.Redis, user: NamespaceUser, foreign: tuple[Store, Container, ExecConfig]) -> None:
    b, _, _ = foreign
    before = dump_namespace(admin, b.namespace)
    with user.store(namespace=b.namespace) as intruder:
        try:
            with pytest.raises(StorePermissionError):
                intruder.fsck()
            with pytest.raises(StorePermissionError):
                intruder.fsck(repair=True)
        finally:
            assert dump_namespace(admin, b.namespace) == before


# --- (c) authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_wrong_credentials_are_a_permission_error(user: NamespaceUser, who: str) -> None:
    url = user.url(password="not-the-password") if who == "wrong password" else user.url(user="nobody")
    with Store.from_url(url, namespace=user.namespace) as store:
        for op in (lambda: store.containers.get("web"), lambda: store.containers.list(),
                   lambda: store.containers.create(Container.new("nginx")), lambda: store.watch().poll(0.1),
                   lambda: store.lock("a" * 64), store.ping):
            with pytest.raises(StorePermissionError, match="authentication failed"):
                op()


def test_a_database_other_than_0_needs_select(user: NamespaceUser) -> None:
    # the line grants no SELECT (docs: add +select for another database)
    with Store.from_url(user.url(db=1), namespace=user.namespace) as store:
        with pytest.raises(StorePermissionError, match="select"):
            store.containers.list()


def test_without_scan_only_fsck_and_locks_are_refused(acl_server: RedisProcess, admin: redis.Redis) -> None:
    # docs: drop +scan to hide other namespaces' key names; fsck and locks() then need another user
    u = NamespaceUser(acl_server, admin, rules=lambda ns, pw: [r for r in acl_rules(ns, pw) if r != "+scan"])
    with u.store() as store:
        store.containers.create(Container.new("nginx", name="web"))
        with store.lock("web"):
            assert store.containers.get("web").name == "web"
            with pytest.raises(StorePermissionError, match="scan"):
                store.locks()
        with pytest.raises(StorePermissionError, match="scan"):
            store.fsck()


def test_scan_lists_but_never_reads_another_namespaces_keys(
        admin: redis.Redis, user: NamespaceUser, foreign: tuple[Store, Container, ExecConfig]) -> None:
    # what docs/operations.md says +scan lets the user see: key names, not values
    b, c, _ = foreign
    raw = redis.Redis.from_url(user.url())
    try:
        names = set(raw.scan_iter(match=f"ss:{{{b.namespace}}}:*"))
        assert f"ss:{{{b.namespace}}}:name:web".encode() in names
        with pytest.raises(rex.NoPermissionError):
            raw.get(f"ss:{{{b.namespace}}}:c:{c.id}")
    finally:
        raw.close()


# --- the ACL file form --------------------------------------------------------------------------


def test_the_aclfile_line_defines_the_same_user(tmp_path: Path, acl_server: RedisProcess,
                                                 admin: redis.Redis) -> None:
    import hashlib

    ns, pw = _unique("f"), "file-pw"
    hashed = aclfile_line("ss-hashed", pw, ns).replace(f" >{pw} ", f" #{hashlib.sha256(pw.encode()).hexdigest()} ")
    acl = tmp_path / "users.acl"
    acl.write_text("user default on nopass ~* &* +@all\n" + aclfile_line("ss-file", pw, ns) + "\n" + hashed + "\n")
    proc = RedisProcess("--aclfile", str(acl)).start()
    try:
        c = proc.client()
        try:
            listed = {r.split(" ")[1]: r for r in map(_text, c.acl_list())}
            # the same rules as ACL SETUSER with the command form gives
            admin.execute_command(*acl_setuser("ss-file", pw, ns).split(" "))
            try:
                by_setuser = {r.split(" ")[1]: r for r in map(_text, admin.acl_list())}["ss-file"]
            finally:
                admin.acl_deluser("ss-file")
            # (Redis lists the commands in its own order, and +watch +unwatch +multi +exec as
            # +@transaction -discard)
            assert sorted(listed["ss-file"].split(" ")) == sorted(by_setuser.split(" "))
            hashed_rules = by_setuser.replace("ss-file", "ss-hashed")
            assert sorted(listed["ss-hashed"].split(" ")) == sorted(hashed_rules.split(" "))
        finally:
            c.close()
        for name in ("ss-file", "ss-hashed"):
            url = f"redis://{name}:{pw}@{HOST}:{proc.port}/0"
            with Store.from_url(url, namespace=ns) as store:
                made = store.containers.create(Container.new("nginx"))
                assert store.containers.get(made.id[:8]).id == made.id
            with Store.from_url(url, namespace=ns + "x") as store, pytest.raises(StorePermissionError):
                store.containers.list()
    finally:
        proc.cleanup()


# --- an incomplete line ---------------------------------------------------------------------------


def _no_channel(ns: str, pw: str) -> list[str]:
    return [r for r in acl_rules(ns, pw) if not r.startswith("&")]


def test_a_commit_refused_inside_the_script_is_a_permission_error(
        acl_server: RedisProcess, admin: redis.Redis) -> None:
    u = NamespaceUser(acl_server, admin, rules=_no_channel)
    with u.store() as store, pytest.raises(StorePermissionError):
        store.containers.create(Container.new("nginx", name="web"))


def test_a_commit_refused_inside_the_script_writes_nothing(acl_server: RedisProcess, admin: redis.Redis) -> None:
    u = NamespaceUser(acl_server, admin, rules=_no_channel)
    with u.store() as store:
        with pytest.raises(StateStoreError):
            store.containers.create(Container.new("nginx", name="web"))
        assert dump_namespace(admin, u.namespace) == {}


# --- AUTH with requirepass --------------------------------------------------------------------------


class Server:
    """A private redis-server whose readiness check needs client settings (a password, TLS).

    ``args`` must include the port options (``--port P`` or ``--port 0 --tls-port P``).
    """

    def __init__(self, *args: str, port: int, client_kwargs: dict[str, Any]) -> None:
        self.port = port
        self.args = list(args)
        self.client_kwargs = client_kwargs
        self.dir = Path(tempfile.mkdtemp(prefix="statestore-acl-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--bind", HOST, "--dir", str(self.dir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.dir / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise ServerExited(f"redis-server exited at start (status {self.proc.returncode}):\n{self.log}")
            c = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0),
                            **self.client_kwargs)
            try:
                c.ping()
                return self
            except rex.ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer within 10s: {exc}\n"
                                       f"{self.log}") from None
                time.sleep(0.02)
            finally:
                c.close()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerExited(RuntimeError):
    pass


def _exercise(store: Store) -> None:
    """Commits, lookups by ID, name and prefix, a lock with a fenced commit, and a watch."""
    c = store.containers.create(Container.new("nginx", name="web", labels={"tier": "front"}))
    with store.watch(since="0-0", block=0.2) as watch:
        assert [(e.type, e.id) for e in watch.poll(2.0)] == [("create", c.id)]
        with store.lock("web", ttl=5.0) as lease:
            store.containers.update("web", lambda r: r.state.set_running(pid=11), lease=lease)
        assert [(e.type, e.version) for e in watch.poll(2.0)] == [("update", 2)]
    for ref in (c.id, "web", c.id[:5]):
        assert store.containers.get(ref).state.status == "running"
    x = store.execs.create(ExecConfig.new("web", ["true"]))
    assert [r.id for r in store.containers.list({"label": "tier=front"})] == [c.id]
    assert set(store.snapshot().execs) == {x.id}


def test_requirepass_server_through_a_url_password() -> None:
    pw = "s3cret/with:odd@chars"
    port = free_port()
    server = Server("--port", str(port), "--requirepass", pw, port=port, client_kwargs={"password": pw}).start()
    try:
        with Store.from_url(f"redis://:{quote(pw, safe='')}@{HOST}:{port}/0", namespace="auth") as store:
            _exercise(store)
        for url in (f"redis://:wrong@{HOST}:{port}/0", f"redis://{HOST}:{port}/0"):
            with Store.from_url(url, namespace="auth") as store:
                with pytest.raises(StorePermissionError):
                    store.containers.get("web")
                with pytest.raises(StorePermissionError):
                    store.containers.create(Container.new("nginx"))
                with pytest.raises(StorePermissionError):
                    store.watch().poll(0.1)
    finally:
        server.cleanup()


# --- TLS ----------------------------------------------------------------------------------------


def _openssl(cwd: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the TLS tests' throwaway certificates"
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {' '.join(args)} failed:\n{done.stderr}"


def _make_ca(d: Path, name: str) -> None:
    (d / f"{name}.cnf").write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = statestore test " + name + "\n"
        "[ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n")
    _openssl(d, "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-config", f"{name}.cnf",
             "-extensions", "ext")


def _make_cert(d: Path, name: str, ca: str, usage: str, san: str) -> None:
    (d / f"{name}.cnf").write_text(f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {name}\n")
    (d / f"{name}.ext").write_text(
        "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage = {usage}\n" + (f"subjectAltName = {san}\n" if san else ""))
    _openssl(d, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-config", f"{name}.cnf")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a server certificate (for 127.0.0.1) and a client one, and an unrelated CA."""
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_cert(d, "server", "ca", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _make_cert(d, "client", "ca", "clientAuth", "")
    return d


def _tls_server(certs: Path, auth_clients: bool) -> Server:
    port = free_port()
    client_kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(certs / "ca.crt")}
    if auth_clients:
        client_kwargs.update(ssl_certfile=str(certs / "client.crt"), ssl_keyfile=str(certs / "client.key"))
    server = Server("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs / "server.crt"),
                    "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
                    "--tls-auth-clients", "yes" if auth_clients else "no",
                    port=port, client_kwargs=client_kwargs)
    try:
        return server.start()
    except ServerExited as exc:
        server.cleanup()
        no_tls = re.search(r"tls", str(exc), re.IGNORECASE) is not None
        message = (f"the installed redis-server ({redis_server_binary()}) could not start a TLS port; "
                   f"it was probably built without TLS (BUILD_TLS=yes):\n{exc}")
        if os.environ.get("STATESTORE_REQUIRE_TLS") == "1" or not no_tls:
            pytest.fail(message + ("\n(STATESTORE_REQUIRE_TLS=1: TLS is expected here)" if no_tls else ""))
        pytest.skip(message + "\n(set STATESTORE_REQUIRE_TLS=1 to make this a failure)")


@pytest.fixture(scope="module")
def tls_server(certs: Path) -> Iterator[Server]:
    server = _tls_server(certs, auth_clients=False)
    try:
        yield server
    finally:
        server.cleanup()


def _tls_url(port: int, ca: Path, **extra: Path) -> str:
    query = "&".join([f"ssl_cert_reqs=required&ssl_ca_certs={quote(str(ca))}",
                      *(f"{k}={quote(str(v))}" for k, v in extra.items())])
    return f"rediss://{HOST}:{port}/0?{query}"


def test_tls_server_through_a_rediss_url(tls_server: Server, certs: Path) -> None:
    with Store.from_url(_tls_url(tls_server.port, certs / "ca.crt"), namespace=_unique("tls")) as store:
        _exercise(store)
        with store.view() as view:
            assert view.get("web").state.status == "running"
            paused = store.containers.update("web", lambda r: r.state.set_paused())
            # closed only after it applied an event: View.close() while the view's watch is still
            # starting sometimes waits 5 s (its join timeout), its thread stuck in XREAD (a library bug)
            assert view.wait_for(paused.revision or "", timeout=5.0)
            assert view.get("web").state.status == "paused"
        assert store.fsck().clean


def test_tls_client_that_does_not_trust_the_ca_is_unavailable(tls_server: Server, certs: Path) -> None:
    url = _tls_url(tls_server.port, certs / "other-ca.crt")
    with Store.from_url(url, namespace="tls", unavailable_timeout=0.2) as store:
        for op in (lambda: store.containers.get("web"), lambda: store.containers.create(Container.new("nginx"))):
            with pytest.raises(StoreUnavailableError, match="certificate verify failed"):
                op()
        with pytest.raises(StoreUnavailableError, match="certificate verify failed"):
            store.watch(reconnect_timeout=0.2).poll(0.1)


def test_plaintext_client_on_a_tls_port_is_unavailable(tls_server: Server) -> None:
    with Store.from_url(f"redis://{HOST}:{tls_server.port}/0", namespace="tls", unavailable_timeout=0.2) as store:
        with pytest.raises(StoreUnavailableError):
            store.containers.get("web")


def test_tls_with_client_certificates(certs: Path) -> None:
    server = _tls_server(certs, auth_clients=True)
    try:
        ca = certs / "ca.crt"
        url = _tls_url(server.port, ca, ssl_certfile=certs / "client.crt", ssl_keyfile=certs / "client.key")
        with Store.from_url(url, namespace="mtls") as store:
            _exercise(store)
        with Store.from_url(_tls_url(server.port, ca), namespace="mtls", unavailable_timeout=0.2) as store:
            with pytest.raises(StoreUnavailableError):
                store.containers.get("web")
    finally:
        server.cleanup()
