"""Multi-process Redis topologies for tests: a Sentinel-managed primary, a Redis Cluster.

Built on ``tests/redisproc.py``: every server is a private ``redis-server`` on a
free loopback port in its own temporary directory, and everything announces
``127.0.0.1``.  Both groups are context managers; ``stop()`` kills every process
and removes every directory, also when ``start()`` failed half-way, and an
``atexit`` hook stops groups a test forgot.  Every wait has a deadline and
raises ``TopologyTimeout`` (with the servers' log tails) instead of hanging.

``SentinelGroup``::

    with SentinelGroup(replicas=2, sentinels=3) as g:          # started, replicas synced, sentinels agree
        s = redis.sentinel.Sentinel(g.sentinel_addresses, socket_timeout=1)
        client = s.master_for(g.service_name)
        old = g.kill_master()                                   # SIGKILL
        address, took = g.wait_failover(timeout=30)             # a replica was promoted
        g.restart_node(old)                                     # comes back as a replica

``ClusterGroup``::

    with ClusterGroup(masters=3) as c:                          # cluster_state:ok on every node
        rc = redis.RedisCluster(startup_nodes=c.startup_nodes)
        c.migrate_slot(slot, target_node)                       # keys move while clients run
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from tests.redisproc import HOST, RedisProcess, free_ports

T = TypeVar("T")

Address = tuple[str, int]

_live: set[Any] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_forgotten_groups() -> None:
    with _live_lock:
        groups = list(_live)
    for g in groups:
        g.stop()


class TopologyTimeout(TimeoutError):
    """A topology did not reach the awaited state in time."""


def redis_cli_binary() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise RuntimeError("redis-cli is not installed: ClusterGroup needs it (apt-get install redis-tools)")
    return path


def _wait(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05,
          logs: Iterable[RedisProcess] = ()) -> T:
    """Call ``probe`` until it returns something other than None (or False); errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            got = probe()
            if got is not None and got is not False:
                return got
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            tails = "".join(f"\n--- {p.address[1]} ({'sentinel' if p.sentinel else 'redis'}) log:\n{p.log_tail(15)}"
                            for p in logs)
            raise TopologyTimeout(f"timed out after {timeout:g}s waiting for {what}"
                                  f"{f' (last error: {last_error})' if last_error else ''}{tails}")
        time.sleep(interval)


def _ask(proc: RedisProcess, fn: Callable[[redis.Redis], T], timeout: float = 1.0) -> T:
    """One short-lived, decoding client call to ``proc``."""
    c = proc.client(decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0))
    try:
        return fn(c)
    finally:
        c.close()


def _info(proc: RedisProcess, section: str) -> dict[str, Any]:
    return _ask(proc, lambda c: c.info(section))


# --- Sentinel ----------------------------------------------------------------------------------------------

class SentinelGroup:
    """A master, ``replicas`` replicas (``--replicaof``) and ``sentinels`` Sentinels monitoring them.

    Sentinels use quorum ``quorum`` (default: a majority), ``down_after_ms`` and
    ``failover_timeout_ms``.  ``master_args`` are extra options for every data
    node (for example ``("--appendonly", "yes")``); ``appendonly`` turns AOF on.
    """

    def __init__(self, replicas: int = 2, sentinels: int = 3, *, service_name: str = "ssmaster",
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000, quorum: int | None = None,
                 appendonly: bool = False, master_args: Iterable[str] = ()) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError("a SentinelGroup needs at least one replica and one sentinel")
        self.service_name = service_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = quorum if quorum is not None else sentinels // 2 + 1
        ports = free_ports(1 + replicas + sentinels)
        # no 5 s wait for more replicas before a diskless full sync (the Redis 7 default)
        common = ("--replica-announce-ip", HOST, "--repl-diskless-sync-delay", "0", *master_args)
        #: every data node (the first started as the master), in start order; failovers change roles, not this list
        self.data_nodes: list[RedisProcess] = [RedisProcess(*common, port=ports[0], appendonly=appendonly)]
        for p in ports[1:1 + replicas]:
            self.data_nodes.append(RedisProcess(*common, "--replicaof", HOST, str(ports[0]),
                                                port=p, appendonly=appendonly))
        self.sentinels: list[RedisProcess] = [
            RedisProcess(port=p, sentinel=True, config=self._sentinel_conf(ports[0]))
            for p in ports[1 + replicas:]
        ]
        self._killed: tuple[Address, float] | None = None

    def _sentinel_conf(self, master_port: int) -> str:
        n = self.service_name
        return "\n".join([
            "sentinel resolve-hostnames no",
            "sentinel announce-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {n} {HOST} {master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {n} {self.down_after_ms}",
            f"sentinel failover-timeout {n} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {n} 2",
            "",
        ])

    # --- life cycle ---
    def start(self, timeout: float = 30.0) -> SentinelGroup:
        """Start everything; return once every replica is synced and every sentinel
        sees the master, every replica and every other sentinel."""
        with _live_lock:
            _live.add(self)
        try:
            deadline = time.monotonic() + timeout
            for node in self.data_nodes:
                node.start()
            master, replicas = self.data_nodes[0], self.data_nodes[1:]
            _wait("the replicas to sync with the master",
                  lambda: all(_info(r, "replication").get("master_link_status") == "up" for r in replicas)
                  and _info(master, "replication").get("connected_slaves") == len(replicas),
                  max(1.0, deadline - time.monotonic()), logs=self.data_nodes)
            for s in self.sentinels:
                s.start()
            _wait("the sentinels to agree on the master and see every replica and sentinel",
                  lambda: self._sentinels_settled(master.address),
                  max(1.0, deadline - time.monotonic()), interval=0.1, logs=self.sentinels)
            return self
        except BaseException:
            self.stop()
            raise

    def _sentinels_settled(self, master: Address) -> bool:
        for s in self.sentinels:
            m = _ask(s, lambda c: c.sentinel_master(self.service_name))
            if (m["ip"], int(m["port"])) != master or not m["is_master"] or m["is_sdown"] or m["is_odown"]:
                return False
            if int(m["num-other-sentinels"]) != len(self.sentinels) - 1:
                return False
            reps = _ask(s, lambda c: c.sentinel_slaves(self.service_name))
            ok = [r for r in reps if r["is_slave"] and not r["is_sdown"] and r.get("master-link-status") == "ok"]
            if len(ok) != len(self.data_nodes) - 1:
                return False
        return True

    def stop(self) -> None:
        """Kill every process and remove every directory (idempotent)."""
        for p in [*self.sentinels, *self.data_nodes]:
            try:
                p.cleanup()
            except Exception:  # keep cleaning up the others
                p.kill()
                shutil.rmtree(p.dir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ---
    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    def sentinel(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A redis-py Sentinel on this group's sentinels (short timeouts unless given)."""
        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("socket_connect_timeout", 1.0)
        return redis.sentinel.Sentinel(self.sentinel_addresses, **kwargs)

    def node(self, address: Address) -> RedisProcess:
        for p in self.data_nodes:
            if p.address == (address[0], int(address[1])):
                return p
        raise LookupError(f"no data node of this group at {address}")

    def reported_masters(self) -> list[Address | None]:
        """What each sentinel answers to SENTINEL get-master-addr-by-name (None: no answer)."""
        out: list[Address | None] = []
        for s in self.sentinels:
            try:
                got = _ask(s, lambda c: c.sentinel_get_master_addr_by_name(self.service_name))
                out.append((str(got[0]), int(got[1])) if got else None)
            except (redis.RedisError, OSError):
                out.append(None)
        return out

    def master_address(self) -> Address:
        """The master address a majority of the sentinels report."""
        answers = [a for a in self.reported_masters() if a is not None]
        for a in answers:
            if answers.count(a) * 2 > len(self.sentinels):
                return a
        raise LookupError(f"the sentinels do not agree on a master: {self.reported_masters()}")

    def master(self) -> RedisProcess:
        """The current master's process, as the sentinels report it."""
        return self.node(self.master_address())

    def replicas(self) -> list[RedisProcess]:
        """The running data nodes other than the current master."""
        m = self.master_address()
        return [p for p in self.data_nodes if p.address != m and p.running]

    # --- faults ---
    def kill_master(self) -> RedisProcess:
        """SIGKILL the current master; ``wait_failover`` measures from here."""
        m = self.master()
        m.kill()
        self._killed = (m.address, time.monotonic())
        return m

    def wait_failover(self, timeout: float = 30.0) -> tuple[Address, float]:
        """Wait until every sentinel reports a new master, flags it up (no sdown/odown, no
        failover in progress) and that server answers as a master; then check that this
        holds for ``down_after_ms`` + 0.5 s more (a too-eager sentinel can mark a freshly
        promoted master down and start a second failover).  Returns the new master's
        address and the seconds from ``kill_master()`` to the first time it was seen."""
        if self._killed is None:
            raise RuntimeError("wait_failover() needs a kill_master() first")
        old, since = self._killed
        deadline = time.monotonic() + timeout
        stable_for = self.down_after_ms / 1000 + 0.5

        def done() -> Address | None:
            answers = self.reported_masters()
            new = answers[0]
            if new is None or new == old or any(a != new for a in answers):
                return None
            for s in self.sentinels:
                m = _ask(s, lambda c: c.sentinel_master(self.service_name))
                if m["flags"] != "master":  # s_down, o_down, failover_in_progress, ...
                    return None
            if _info(self.node(new), "replication").get("role") != "master":
                return None
            return new

        logs = [*self.sentinels, *self.data_nodes]
        while True:
            new = _wait(f"a failover away from {old[0]}:{old[1]}", done, max(0.1, deadline - time.monotonic()),
                        logs=logs)
            took = time.monotonic() - since
            stable_until = time.monotonic() + stable_for
            while time.monotonic() < stable_until and done() == new:
                time.sleep(0.1)
            if time.monotonic() >= stable_until:
                self._killed = None
                return new, took
            if time.monotonic() >= deadline:
                raise TopologyTimeout(f"the master after the failover ({new}) did not stay up {stable_for:g}s")

    def restart_node(self, node: RedisProcess, timeout: float = 10.0) -> RedisProcess:
        """Start a stopped (killed) data node again on its port and directory.  The
        sentinels then turn a former master into a replica of the current one."""
        if node not in self.data_nodes:
            raise LookupError("not a data node of this group")
        return node.start(timeout)

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Wait until every running data node but the master replicates it with its link up."""
        m = self.master_address()

        def synced() -> bool:
            for r in self.replicas():
                info = _info(r, "replication")
                if info.get("role") != "slave" or (info.get("master_host"), info.get("master_port")) != m \
                        or info.get("master_link_status") != "up":
                    return False
            return True

        _wait("the replicas to sync with the current master", synced, timeout, logs=self.data_nodes)


# --- Cluster -----------------------------------------------------------------------------------------------

class ClusterGroup:
    """``masters`` cluster masters with ``replicas_per_master`` replicas each, created with
    ``redis-cli --cluster create``.  Each node's cluster bus listens on a free port of its
    own (``--cluster-port``), so any free client port works."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 0, *, node_timeout_ms: int = 2000,
                 appendonly: bool = False, node_args: Iterable[str] = ()) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        total = masters * (1 + replicas_per_master)
        ports = free_ports(2 * total)
        self.n_masters = masters
        self.replicas_per_master = replicas_per_master
        #: every node, in the order given to redis-cli --cluster create
        self.nodes: list[RedisProcess] = []
        for port, bus in zip(ports[:total], ports[total:], strict=True):
            node = RedisProcess(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--cluster-port", str(bus),
                "--cluster-announce-ip", HOST, "--cluster-require-full-coverage", "yes",
                "--repl-diskless-sync-delay", "0",
                *node_args, port=port, appendonly=appendonly)
            self.nodes.append(node)

    # --- life cycle ---
    def start(self, timeout: float = 40.0) -> ClusterGroup:
        """Start the nodes, create the cluster, and wait until every node reports
        ``cluster_state:ok``, every slot assigned, and one identical slot map."""
        with _live_lock:
            _live.add(self)
        try:
            deadline = time.monotonic() + timeout
            for node in self.nodes:
                node.start()
            cmd = [redis_cli_binary(), "--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
                   "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True,
                                     timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise TopologyTimeout(f"redis-cli --cluster create did not finish: {exc}") from None
            if res.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed ({res.returncode}):\n{res.stdout}{res.stderr}")
            self.wait_consistent(max(1.0, deadline - time.monotonic()))
            want = {"master": self.n_masters, "slave": len(self.nodes) - self.n_masters}

            def roles_known() -> bool:
                for n in self.nodes:
                    roles = list(self._roles(n).values())
                    if {r: roles.count(r) for r in want} != want:
                        return False
                return all(_info(r, "replication").get("master_link_status") == "up" for r in self.replicas())

            _wait("every node to know every master and replica, and the replicas to sync", roles_known,
                  max(1.0, deadline - time.monotonic()), interval=0.1, logs=self.nodes)
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every node and remove every directory (idempotent)."""
        for n in self.nodes:
            try:
                n.cleanup()
            except Exception:
                n.kill()
                shutil.rmtree(n.dir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> ClusterGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses and topology ---
    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """For ``redis.RedisCluster(startup_nodes=...)``."""
        return [ClusterNode(HOST, n.port) for n in self.nodes]

    @property
    def addresses(self) -> list[Address]:
        return [n.address for n in self.nodes]

    def client(self, **kwargs: Any) -> redis.RedisCluster:
        """A redis-py RedisCluster on this cluster."""
        return redis.RedisCluster(startup_nodes=self.startup_nodes, **kwargs)

    def node(self, address: Address | int) -> RedisProcess:
        port = address if isinstance(address, int) else int(address[1])
        for n in self.nodes:
            if n.port == port:
                return n
        raise LookupError(f"no node of this cluster on port {port}")

    def node_id(self, node: RedisProcess) -> str:
        return str(_ask(node, lambda c: c.execute_command("CLUSTER", "MYID")))

    def _slot_map(self, node: RedisProcess) -> dict[int, int]:
        """slot range start -> owning master's port, from one node's CLUSTER SLOTS (raw reply)."""
        reply = _ask(node, lambda c: c.execute_command("CLUSTER SLOTS"))
        out: dict[int, int] = {}
        if isinstance(reply, dict):  # redis-py parsed: {(start, end): {"primary": (host, port), ...}}
            for (start, end), v in reply.items():
                port = int(v["primary"][1])
                for s in range(int(start), int(end) + 1):
                    out[s] = port
            return out
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            for s in range(start, end + 1):
                out[s] = int(primary[1])
        return out

    def _roles(self, node: RedisProcess) -> dict[int, str]:
        """port -> "master" / "slave" / "fail" as ``node``'s CLUSTER NODES reports them."""
        reply = _ask(node, lambda c: c.execute_command("CLUSTER NODES"))
        rows: list[tuple[str, str]]
        if isinstance(reply, dict):  # redis-py parsed it: {"host:port": {"flags": ..., ...}}
            rows = [(addr, str(v["flags"])) for addr, v in reply.items()]
        else:
            rows = [(line.split()[1], line.split()[2]) for line in str(reply).splitlines() if line.strip()]
        out: dict[int, str] = {}
        for addr, flags in rows:
            port = int(addr.split("@")[0].rsplit(":", 1)[1])
            fl = flags.split(",")
            out[port] = "fail" if ("fail" in fl or "fail?" in fl) else "master" if "master" in fl else "slave"
        return out

    def masters(self) -> list[RedisProcess]:
        """The current masters (not failed), as a running node's CLUSTER NODES reports them."""
        live = next(n for n in self.nodes if n.running)
        roles = self._roles(live)
        return [n for n in self.nodes if roles.get(n.port) == "master"]

    def replicas(self) -> list[RedisProcess]:
        """The current replicas (not failed), as a running node's CLUSTER NODES reports them."""
        live = next(n for n in self.nodes if n.running)
        roles = self._roles(live)
        return [n for n in self.nodes if roles.get(n.port) == "slave"]

    def slot_owner(self, slot: int) -> RedisProcess:
        """The master that owns ``slot`` (as a node that owns slots reports it)."""
        if not 0 <= slot < 16384:
            raise ValueError("slot must be in [0, 16383]")
        master = self.masters()[0]
        return self.node(self._slot_map(master)[slot])

    def wait_consistent(self, timeout: float = 20.0) -> None:
        """Every node: ``cluster_state:ok``, 16384 slots ok, knows every node, same slot map."""
        total = len(self.nodes)

        def ok() -> bool:
            maps = []
            for n in self.nodes:
                info = _ask(n, lambda c: c.execute_command("CLUSTER INFO"))
                if isinstance(info, str):
                    info = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
                if (str(info.get("cluster_state")) != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384
                        or int(info.get("cluster_known_nodes", 0)) != total):
                    return False
                maps.append(self._slot_map(n))
            return all(m == maps[0] and len(m) == 16384 for m in maps)

        _wait("a consistent cluster (state ok, all slots covered, one slot map)", ok, timeout,
              interval=0.1, logs=self.nodes)

    def migrate_slot(self, slot: int, target: RedisProcess, *, batch: int = 50, timeout: float = 30.0,
                     on_batch: Callable[[int], None] | None = None) -> int:
        """Move ``slot`` and its keys to the master ``target`` while clients keep running.

        The documented manual resharding: ``CLUSTER SETSLOT <slot> IMPORTING`` on the target,
        ``MIGRATING`` on the source, ``CLUSTER GETKEYSINSLOT`` + ``MIGRATE ... KEYS`` in
        batches of ``batch``, then ``CLUSTER SETSLOT <slot> NODE <target>`` on the target,
        the source and every other master.  Waits until every node reports the new owner.
        ``on_batch(moved_so_far)`` is called after each batch (tests use it to interleave
        client traffic).  Returns the number of keys moved.
        """
        source = self.slot_owner(slot)
        if target not in self.masters():
            raise ValueError(f"{target.address} is not a master of this cluster")
        if source is target:
            return 0
        deadline = time.monotonic() + timeout
        src_id, dst_id = self.node_id(source), self.node_id(target)
        src = source.client(decode_responses=True, socket_timeout=10)
        dst = target.client(decode_responses=True, socket_timeout=10)
        moved = 0
        try:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                if time.monotonic() > deadline:
                    raise TopologyTimeout(f"migrating slot {slot}: {moved} keys moved in {timeout:g}s, not done")
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                if on_batch is not None:
                    on_batch(moved)
            # the target first (it bumps its config epoch), then the source, then everyone else
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            for m in self.masters():
                if m is not source and m is not target:
                    _ask(m, lambda c: c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id))
        finally:
            src.close()
            dst.close()

        def settled() -> bool:
            return all(self._slot_map(n).get(slot) == target.port for n in self.nodes if n.running)

        _wait(f"every node to see slot {slot} on {target.port}", settled,
              max(1.0, deadline - time.monotonic()), logs=self.nodes)
        return moved
