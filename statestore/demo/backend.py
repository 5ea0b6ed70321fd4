"""Picking the Redis the demo runs on: a given URL, a Redis on localhost, or an embedded one."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ..embedded import Embedded, EmbeddedError, redis_answers, start_embedded

DEFAULT_URL = "redis://127.0.0.1:6379/0"


# --- picking a Redis ----------------------------------------------------------------------------------


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def choose_redis(args: argparse.Namespace, say: Callable[[str], None]) -> tuple[str, Embedded | None]:
    """The URL to use and the embedded server started for it (None if an existing Redis is used)."""
    given = (getattr(args, "demo_redis_url", None) or getattr(args, "redis_url", None)
             or os.environ.get("STATESTORE_REDIS_URL"))
    if given:
        if args.backend != "auto":
            raise EmbeddedError("--backend chooses an embedded Redis; it cannot be combined with --redis-url "
                                "or $STATESTORE_REDIS_URL")
        if not redis_answers(given, 2.0):
            raise EmbeddedError(f"no Redis answers at {_redact(given)}")
        say(f"Redis: {_redact(given)} (given)")
        return given, None
    if args.backend == "auto" and redis_answers(DEFAULT_URL):
        say("Redis: the one answering on 127.0.0.1:6379 (no --redis-url given)")
        return DEFAULT_URL, None
    emb = start_embedded(args.backend)
    why = "asked for" if args.backend != "auto" else "no Redis configured and none on 127.0.0.1:6379"
    if emb.kind == "fakeredis" and args.backend == "auto":
        why += "; no redis-server binary"
    say(f"Redis: {emb.detail} (embedded: {why})")
    return emb.url, emb
