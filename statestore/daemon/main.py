"""``statestore daemon``: options, logging and the process around one replica."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from types import FrameType

from .. import (
    InvalidArgumentError,
    StateStoreError,
    Store,
)
from .apithread import ApiThread, api_options
from .replica import Options, Replica
from .runtime import Runtime

log = logging.getLogger("statestore.daemon")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
EXIT_USAGE = 125  # a bad option, as the rest of the CLI (and docker)
_REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


# --- the command ------------------------------------------------------------------------------------


def parse_latency(text: str) -> tuple[float, float]:
    """``MIN:MAX`` (or one number) in milliseconds."""
    lo_s, sep, hi_s = text.partition(":")
    try:
        lo = float(lo_s)
        hi = float(hi_s) if sep else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX in milliseconds, not {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, not {text!r}")
    return lo, hi


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return v


def _non_negative(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _positive(text)


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (shared with the demo)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run one replica: take work items from the namespace's queue and perform them on a "
                     "simulated runtime, each under the container's lock with fenced commits.")
    p.add_argument("--replica-id", required=True, help="this replica's name (consumer name, lock holder)")
    p.add_argument("--lock-ttl", type=_positive, default=5.0, metavar="S",
                   help="TTL of the container locks this replica takes (default: %(default)s)")
    p.add_argument("--lock-timeout", type=_positive, default=5.0, metavar="S",
                   help="how long an action waits for a busy container's lock (default: %(default)s)")
    p.add_argument("--claim-idle", type=_positive, default=None, metavar="S",
                   help="take over items another replica left idle this long (default: 2 x lock TTL + 1)")
    p.add_argument("--max-inflight", type=positive_int, default=8, metavar="N",
                   help="actions performed at once (default: %(default)s)")
    p.add_argument("--hang", action="append", default=[], metavar="REF",
                   help="the runtime hangs (until shutdown) for this container: name, ID or ID prefix")
    p.add_argument("--hang-stop", action="append", default=[], metavar="REF",
                   help="the runtime hangs (until shutdown) when stopping or killing this container")
    p.add_argument("--fail", action="append", default=[], metavar="REF",
                   help="the runtime fails every call for this container")
    p.add_argument("--latency-ms", type=parse_latency, default=(5.0, 50.0), metavar="MIN:MAX",
                   help="runtime latency per call, uniform in [MIN, MAX] ms (default: 5:50)")
    p.add_argument("--health-interval", type=_non_negative, default=2.0, metavar="S",
                   help="record a health probe of each container this replica runs every S seconds (0: off)")
    p.add_argument("--drain-timeout", type=_positive, default=10.0, metavar="S",
                   help="on SIGTERM, wait this long for actions in flight before interrupting them")
    p.add_argument("--exit-after", type=positive_int, default=None, metavar="N",
                   help="stop (drain and exit 0) after N work items (for tests)")
    p.add_argument("--durability", choices=("fast", "replicated"), default="fast",
                   help="'replicated': every commit and lock acquisition waits for --replicas replica "
                        "acknowledgements (WAIT); see docs/operations.md")
    p.add_argument("--replicas", type=positive_int, default=1, metavar="N",
                   help="replicas that must acknowledge a commit with --durability replicated (default 1)")
    p.add_argument("--durability-timeout", type=_positive, default=1.0, metavar="S",
                   help="how long a replicated commit waits for acknowledgements (default 1 s)")
    p.add_argument("--listen", action="append", default=[], metavar="URL",
                   help="serve the Docker Engine API on tcp://HOST:PORT or unix:///PATH (repeatable); plain TCP "
                        "only on a loopback address unless TLS is on (docs/engine-api.md)")
    p.add_argument("--tls", action="store_true", help="serve the Engine API over TLS (--tlscert, --tlskey)")
    p.add_argument("--tlsverify", action="store_true",
                   help="TLS, and require client certificates signed by --tlscacert")
    p.add_argument("--tlscacert", metavar="FILE", help="the CA that signs client certificates")
    p.add_argument("--tlscert", metavar="FILE", help="the server's TLS certificate")
    p.add_argument("--tlskey", metavar="FILE", help="the server's TLS key")
    p.add_argument("-v", "--verbose", action="store_true", help="log every action")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # the demo's: exit with it


class _Formatter(logging.Formatter):
    def __init__(self, replica_id: str) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S")
        self.replica_id = replica_id

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        stamp, _, msg = text.partition(" ")
        level = "" if record.levelno == logging.INFO or record.levelno == logging.DEBUG else \
            f"{record.levelname.lower()}: "
        return f"{stamp} [{self.replica_id}] {level}{msg}"


def _setup_logging(replica_id: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(replica_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("statestore").setLevel(logging.DEBUG if verbose else logging.INFO)


def run(args: argparse.Namespace) -> int:
    replica_id = str(args.replica_id)
    if not _REPLICA_ID_RE.fullmatch(replica_id):
        sys.stderr.write(f"Error: invalid replica id {replica_id!r}: letters, digits and _ . : @ - only\n")
        return EXIT_USAGE
    _setup_logging(replica_id, bool(getattr(args, "verbose", False)))
    opts = Options(replica_id=replica_id, lock_ttl=args.lock_ttl, lock_timeout=args.lock_timeout,
                   claim_idle=args.claim_idle, max_inflight=args.max_inflight, exit_after=args.exit_after,
                   drain_timeout=args.drain_timeout, health_interval=args.health_interval,
                   parent_pid=getattr(args, "parent_pid", None))
    if opts.claim_idle_s <= opts.lock_ttl:
        sys.stderr.write("Error: --claim-idle must be longer than --lock-ttl (a dead replica's lock must have "
                         "expired before its work is taken over)\n")
        return EXIT_USAGE
    url = getattr(args, "redis_url", None) or os.environ.get("STATESTORE_REDIS_URL") or DEFAULT_URL
    try:
        api = api_options(args, opts)
    except InvalidArgumentError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_USAGE
    runtime = Runtime(args.latency_ms, args.hang, args.fail, hang_stop=args.hang_stop)
    try:
        store = Store.from_url(url, namespace=args.namespace, replica_id=replica_id,
                               durability=args.durability, replicas=args.replicas,
                               durability_timeout=args.durability_timeout)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    try:
        store.ping()
        replica = Replica(store, opts, runtime)
        server = None
        if api.listeners:
            server = ApiThread(url, args, api, runtime)
            failure = server.begin()
            if failure is not None:
                sys.stderr.write(f"Error: the Engine API could not start: {failure}\n")
                return 1

        def on_signal(signum: int, frame: FrameType | None) -> None:
            replica.stop(signal.Signals(signum).name)
            if server is not None:
                server.request_stop()  # both drain at once

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return replica.serve()
        finally:
            if server is not None:
                server.end(opts.drain_timeout)
            for s, h in old.items():
                signal.signal(s, h)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"Error: Redis is unavailable: {exc}\n")
        return 1
    finally:
        store.close()
