"""``statestore demo``: run the demo and clean up after it."""

from __future__ import annotations

import argparse
import sys
import time

from .. import (
    StateStoreError,
)
from ..embedded import EmbeddedError
from .backend import choose_redis
from .driver import Demo
from .settings import Settings


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    settings = Settings.from_args(args)
    started = time.monotonic()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    try:
        url, emb = choose_redis(args, say)
    except EmbeddedError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    demo: Demo | None = None
    code = 1
    try:
        demo = Demo(url, settings, out)
        code = demo.run()
        return code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
        return code
    except (StateStoreError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    finally:
        if demo is not None:
            keep = settings.keep_logs or code == 1
            demo.cleanup(keep_logs=keep)
            if keep:
                out.write(f"logs of the replicas, querier and watcher: {demo.logdir}\n")
        if emb is not None:
            emb.close()
        out.write(f"demo finished in {time.monotonic() - started:.1f} s\n")
        out.flush()
