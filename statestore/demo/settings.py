"""The demo's settings and options, and names shared by its parts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import daemon as _daemon
from ..embedded import BACKENDS

STUCK_NAME = "stuck-netlink"
IMAGES = ("nginx:1.27", "redis:7.2", "postgres:16", "busybox:1.36", "alpine:3.20", "python:3.12-slim")


# --- settings ---------------------------------------------------------------------------------------


@dataclass
class Settings:
    replicas: int
    containers: int
    duration: float
    hang_at: float
    hang_for: float
    lock_ttl: float
    lock_timeout: float
    max_inflight: int = 8
    latency: str = "5:50"
    health_interval: float = 1.0
    keep_logs: bool = False
    api: bool = True
    api_port: int = 0  # the first replica's Engine API port (0: free ports)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if args.short:
            containers = args.containers if args.containers_given else 24
            duration = args.duration if args.duration_given else 4.0
            return cls(replicas=args.replicas, containers=containers, duration=duration,
                       hang_at=min(1.0, duration / 4), hang_for=1.5, lock_ttl=1.5, lock_timeout=0.6,
                       health_interval=0.5, keep_logs=args.keep_logs, api=not args.no_api,
                       api_port=args.api_port)
        duration = args.duration
        return cls(replicas=args.replicas, containers=args.containers, duration=duration,
                   hang_at=duration / 4, hang_for=max(1.5, round(duration * 0.3, 1)), lock_ttl=3.0,
                   lock_timeout=min(2.0, max(0.5, duration * 0.1)), keep_logs=args.keep_logs,
                   api=not args.no_api, api_port=args.api_port)


_count = _daemon.positive_int  # the same argument rule as the replicas


def _within(convert: Callable[[str], float], what: str, lo: float, hi: float, span: str) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)`` within [lo, hi]."""
    def parse(text: str) -> Any:
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {span}, not {text!r}")
        return v

    return parse


_port = _within(int, "a TCP port", 1, 65000, "a TCP port in 1..65000")
_seconds = _within(float, "seconds", 1, 3600, "1 to 3600 seconds")


class _Given(argparse.Action):
    """Stores the value and remembers that the user gave it (for --short's defaults)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Start N daemon replicas on one Redis, drive a mixed workload through their work queue, "
                     "hang one container's runtime while it holds its lock, query everything from another "
                     "process meanwhile, and check the invariants.  Uses --redis-url (or "
                     "$STATESTORE_REDIS_URL) if given, else a Redis on 127.0.0.1:6379, else an embedded one.")
    p.add_argument("--replicas", type=_count, default=3, metavar="N", help="replica processes (default: 3)")
    p.add_argument("--containers", type=_count, default=200, metavar="N", action=_Given,
                   help="containers (default: 200)")
    p.add_argument("--duration", type=_seconds, default=20.0, metavar="S", action=_Given,
                   help="seconds of workload (default: 20)")
    p.add_argument("--short", action="store_true", help="a quick run (~5 s, few containers), for tests")
    p.add_argument("--redis-url", dest="demo_redis_url", default=None, metavar="URL",
                   help="the Redis to use, as the global --redis-url (so that './dev demo --redis-url URL' works)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="without --redis-url: auto (a Redis on localhost:6379, else redis-server, else "
                        "fakeredis), or force an embedded redis-server or fakeredis")
    p.add_argument("--keep-logs", action="store_true", help="keep the replicas' logs (kept anyway on failure)")
    p.add_argument("--api-port", type=_port, default=0, metavar="PORT",
                   help="serve the Engine API of replica i on 127.0.0.1:PORT+i-1 (default: free ports)")
    p.add_argument("--no-api", action="store_true", help="replicas serve no Engine API")
    p.set_defaults(containers_given=False, duration_given=False)
