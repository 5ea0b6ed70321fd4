"""One Sentinel failover under a continuous writer, and what it cost (for ``tests/test_sentinel.py``
and ``tools/failover_loss.py``).

``run_failover(durability)`` starts a private topology (a master, two replicas, three Sentinels on
loopback, ``tests/topology.py``), runs ``tests/failover_writer.py`` in its own OS process against the
Sentinel URL, SIGKILLs the master once the writer has been acknowledged for a while, waits for the
Sentinels to promote a replica, lets the writer go on through the new master, stops it, and then
compares every commit the writer saw acknowledged with what the new master holds.

Everything it starts is stopped in ``finally`` blocks (and ``SentinelGroup`` has an atexit hook).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from statestore import Store, parse_revision
from tests.topology import SentinelGroup

ROOT = Path(__file__).resolve().parent.parent
# repl-diskless-sync-delay 0: a replica's first sync starts at once (the default waits 5 s)
DATA_NODE_ARGS = ("--repl-diskless-sync-delay", "0")


@dataclass
class Line:
    status: str            # A (acknowledged), U (unknown), F (not applied)
    op: str                # create | update
    id: str
    version: int | None
    n: int | None
    extra: str             # the revision (A) or the error class (U, F)
    t: float               # time.monotonic() in the writer when the outcome was known
    wall: float            # time.time() at the same moment


def parse_lines(text: str) -> list[Line]:
    out = []
    for raw in text.splitlines():
        if not raw.endswith(tuple("0123456789")):
            continue  # a torn last line cannot happen with O_APPEND writes, but be strict elsewhere
        s, op, rid, v, n, extra, t, wall = raw.split()
        out.append(Line(s, op, rid, None if v == "-" else int(v), None if n == "-" else int(n),
                        extra, float(t), float(wall)))
    return out


@dataclass
class FailoverRun:
    durability: str
    fault: str = "kill"
    acked: int = 0
    unknown: int = 0
    failed: int = 0
    acked_after_failover: int = 0
    #: acknowledged commits whose record is missing on the new master or holds an older version
    #: than the one acknowledged (the record's last acknowledged version is what is compared)
    older: int = 0
    #: acknowledged commits that are not in the new master's history of their record: per record,
    #: acknowledged commits minus the record's final version (each commit adds one version; exact
    #: for records without unknown outcomes, a lower bound otherwise).  Counts a lost commit even
    #: when later commits brought the record back to a higher version.
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    #: containers whose final counter is not (acknowledged increments + a subset of the unknown ones)
    counter_violations: list[str] = field(default_factory=list)
    containers: int = 0
    #: seconds from the fault to the first commit acknowledged by the new master (kill only)
    recovery: float | None = None
    #: seconds from the fault until the Sentinels first agreed on a new master
    failover: float = 0.0
    #: pause only: seconds the resumed old master went on answering as a master
    zombie: float | None = None
    fsck_clean: bool = False
    fsck_text: str = ""
    writer_rc: int | None = None
    writer_stderr: str = ""
    unknown_kinds: dict[str, int] = field(default_factory=dict)
    #: acknowledged commits per second before the fault (all writers together)
    rate_before: float = 0.0
    #: when each unknown outcome was reported, in seconds after the fault
    unknown_at: list[float] = field(default_factory=list)
    old_master: tuple[str, int] = ("", 0)
    new_master: tuple[str, int] = ("", 0)

    def summary(self) -> str:
        rec = "n/a" if self.recovery is None else f"{self.recovery:.2f}s"
        zombie = "" if self.zombie is None else f", old master answered {self.zombie:.1f}s after resuming"
        return (f"{self.durability}/{self.fault}: acknowledged {self.acked} ({self.rate_before:.0f}/s before the "
                f"fault, {self.acked_after_failover} after the failover), unknown {self.unknown} "
                f"{dict(self.unknown_kinds)}, failed {self.failed}, "
                f"lost {self.lost} (older or missing {self.older}), counter violations "
                f"{len(self.counter_violations)}, containers {self.containers}, failover {self.failover:.2f}s, "
                f"recovery {rec}{zombie}, fsck {'clean' if self.fsck_clean else 'NOT clean'}"
                + (f"; unknown outcomes at {self.unknown_at[:12]} s after the fault" if self.unknown_at else ""))


def sentinel_url(g: SentinelGroup, db: int = 0, service: str | None = None, query: str = "") -> str:
    hosts = ",".join(f"{h}:{p}" for h, p in g.sentinel_addresses)
    return f"redis+sentinel://{hosts}/{service or g.service_name}/{db}{'?' + query if query else ''}"


def _wait_for(what: str, probe: object, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _new_master(group: SentinelGroup, old: tuple[str, int]) -> tuple[str, int] | None:
    """The master every Sentinel reports, if they all agree on one other than ``old``."""
    answers = group.reported_masters()
    first = answers[0]
    if first is None or first == old or any(a != first for a in answers):
        return None
    return first


def _demoted(group: SentinelGroup, node_address: tuple[str, int], master: tuple[str, int]) -> bool:
    """Whether the data node at ``node_address`` replicates ``master`` with its link up."""
    c = group.node(node_address).client(decode_responses=True, socket_timeout=1)
    try:
        info = c.info("replication")
    except (redis.RedisError, OSError):
        return False
    finally:
        c.close()
    return bool(info.get("role") == "slave" and int(info.get("master_port", 0)) == master[1]
                and info.get("master_link_status") == "up")


def run_failover(durability: str, *, fault: str = "kill", namespace: str = "failover", before_acks: int = 300,
                 before_seconds: float = 1.5, after_acks: int = 200, after_seconds: float = 1.0,
                 replicas_required: int = 1, writers: int = 1, seed: int = 0, log: object = None) -> FailoverRun:
    """Run the scenario once on a private topology; see the module doc.

    ``fault`` is ``kill`` (SIGKILL the master) or ``pause`` (SIGSTOP it until the Sentinels agree
    on a new master, then SIGCONT it: a master that stalled and came back, which the Sentinels
    turn into a replica of the new one a few seconds later).  ``writers`` writer processes share
    the namespace, each with containers of its own.

    Bounded: the topology starts within 30 s, the writers get 20 s to reach ``before_acks``,
    the failover 30 s (and, with ``pause``, the old master 60 s to be turned into a replica), the
    writers 30 s to be acknowledged ``after_acks`` times after that, and 30 s to stop.  A bound
    that runs out raises TimeoutError (after cleaning up).
    """
    if fault not in ("kill", "pause"):
        raise ValueError("fault must be 'kill' or 'pause'")
    say = log if callable(log) else (lambda _msg: None)
    run = FailoverRun(durability, fault)
    tmp = Path(tempfile.mkdtemp(prefix="statestore-failover-"))
    outs = [tmp / f"acks-{i}.txt" for i in range(writers)]
    errs = [tmp / f"writer-{i}.err" for i in range(writers)]
    stop = tmp / "stop"
    for o in outs:
        o.touch()
    group = SentinelGroup(replicas=2, sentinels=3, down_after_ms=1000, failover_timeout_ms=5000,
                          master_args=DATA_NODE_ARGS)
    procs: list[subprocess.Popen[bytes]] = []
    paused = None
    errfs = [open(e, "wb") for e in errs]  # noqa: SIM115 - closed in finally
    try:
        group.start()
        url = sentinel_url(group)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
        for i in range(writers):
            cmd = [sys.executable, "-m", "tests.failover_writer", "--url", url, "--namespace", namespace,
                   "--out", str(outs[i]), "--stop", str(stop), "--durability", durability,
                   "--replicas", str(replicas_required), "--durability-timeout", "1.0",
                   "--unavailable-timeout", "20", "--max-seconds", "150",
                   "--seed", str(seed * 1000 + i + 1 if seed else 0)]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errfs[i]))
        started = time.monotonic()

        def all_lines() -> list[Line]:
            return [ln for o in outs for ln in parse_lines(o.read_text())]

        def acked_lines() -> list[Line]:
            return [ln for ln in all_lines() if ln.status == "A"]

        def writer_alive() -> bool:
            for p, e in zip(procs, errs, strict=True):
                if p.poll() is not None:
                    raise RuntimeError(f"a writer exited early ({p.returncode}): {e.read_text()[-3000:]}")
            return True

        _wait_for(f"{before_acks} acknowledged commits before the fault",
                  lambda: writer_alive() and len(acked_lines()) >= before_acks
                  and time.monotonic() - started >= before_seconds, 20)
        old = group.master()
        run.old_master = old.address
        say(f"  {fault}: master {old.address[1]} after {len(acked_lines())} acknowledged commits")
        fault_wall = time.time()
        if fault == "kill":
            group.kill_master()
            fault_mono = time.monotonic()
            run.new_master, run.failover = group.wait_failover(timeout=30)
            settled = time.monotonic()
        else:
            old.signal(signal.SIGSTOP)
            paused = old
            fault_mono = time.monotonic()
            found: list[tuple[str, int]] = []

            def agreed() -> bool:
                m = _new_master(group, old.address)
                if m is not None:
                    found.append(m)
                return m is not None

            _wait_for("the Sentinels to agree on a new master", agreed, 30)
            run.new_master, run.failover = found[0], time.monotonic() - fault_mono
            old.signal(signal.SIGCONT)
            paused = None
            resumed = time.monotonic()
            _wait_for("the resumed old master to become a replica of the new one",
                      lambda: _demoted(group, old.address, run.new_master), 60, interval=0.1)
            settled = time.monotonic()
            run.zombie = settled - resumed
        say(f"  new master {run.new_master[1]} after {run.failover:.2f}s")

        def after() -> list[Line]:
            return [ln for ln in acked_lines() if ln.t > settled]

        _wait_for(f"{after_acks} acknowledged commits after the failover",
                  lambda: writer_alive() and len(after()) >= after_acks
                  and time.monotonic() - settled >= after_seconds, 30)
        stop.touch()
        stop_by = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(max(0.1, stop_by - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError("a writer did not stop within 30 s") from None
        run.writer_rc = max(abs(p.returncode) for p in procs)
        for f in errfs:
            f.flush()
        run.writer_stderr = "".join(e.read_text() for e in errs)

        lines = sorted(all_lines(), key=lambda ln: ln.t)
        acked = [ln for ln in lines if ln.status == "A"]
        run.acked = len(acked)
        run.unknown = sum(ln.status == "U" for ln in lines)
        run.failed = sum(ln.status == "F" for ln in lines)
        run.unknown_kinds = dict(Counter(ln.extra for ln in lines if ln.status == "U"))
        run.acked_after_failover = sum(ln.t > settled for ln in acked)
        run.unknown_at = [round(ln.t - fault_mono, 2) for ln in lines if ln.status == "U"]
        before = [ln for ln in acked if ln.t <= fault_mono]
        if len(before) > 1:
            run.rate_before = (len(before) - 1) / max(1e-9, before[-1].t - before[0].t)

        if fault == "kill":
            def by_new_master(ln: Line) -> bool:
                if ln.t <= fault_mono:
                    return False
                if ln.extra != "-":  # its change-log entry was made after the kill: by the new master
                    return parse_revision(ln.extra)[0] >= int(fault_wall * 1000)
                return True

            first = next((ln for ln in acked if by_new_master(ln)), None)
            run.recovery = None if first is None else first.t - fault_mono

        new = redis.Redis(host=run.new_master[0], port=run.new_master[1], socket_timeout=10)
        try:
            check = Store(new, namespace=namespace)
            final = {c.id: c for c in check.containers.list(all=True)}
            run.containers = len(final)
            report = check.fsck()
            run.fsck_clean, run.fsck_text = report.clean, report.text()
        finally:
            new.close()

        acked_of = Counter(ln.id for ln in acked)
        last_acked: dict[str, int] = {}
        for ln in acked:
            assert ln.version is not None
            last_acked[ln.id] = max(last_acked.get(ln.id, 0), ln.version)
        for rid, count in acked_of.items():
            got = final.get(rid)
            have = 0 if got is None else got.version
            if have < last_acked[rid]:
                run.older += sum(1 for ln in acked if ln.id == rid and ln.version is not None and ln.version > have)
            if count > have:
                run.lost += count - have
                if len(run.lost_examples) < 10:
                    run.lost_examples.append(f"{rid[:12]}: {count} acknowledged commits (last version "
                                             f"{last_acked[rid]}), new master has "
                                             f"{'nothing' if got is None else f'version {have}'}")
        acked_inc = Counter(ln.id for ln in acked if ln.op == "update")
        unknown_inc = Counter(ln.id for ln in lines if ln.status == "U" and ln.op == "update")
        for rid, c in final.items():
            n = int(c.labels.get("n", "-1"))
            lo, hi = acked_inc[rid], acked_inc[rid] + unknown_inc[rid]
            if c.version != n + 1 or not lo <= n <= hi:
                run.counter_violations.append(f"{rid[:12]}: n={n} version={c.version}, acknowledged "
                                              f"increments {lo}, unknown {unknown_inc[rid]}")
        return run
    finally:
        if paused is not None:
            paused.signal(signal.SIGCONT)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for f in errfs:
            f.close()
        group.stop()
        for path in (*outs, *errs, stop):
            path.unlink(missing_ok=True)
        tmp.rmdir()
