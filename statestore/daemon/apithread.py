"""The Engine API's event loop, in a thread of the ``statestore daemon`` process.

The replica's work-queue loop stays the main thread's (sync face); the API
runs on the async face in its own thread and event loop, with its own
connections, sharing only the simulated runtime (thread-safe) with it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading

from .. import InvalidArgumentError, StateStoreError
from ..aio import Store as AsyncStore
from .replica import Options
from .runtime import Runtime
from .server import ApiOptions, EngineAPI, Listener, TLSOptions, check_listeners

log = logging.getLogger("statestore.api")


def api_options(args: argparse.Namespace, opts: Options) -> ApiOptions:
    """The API's options from the daemon's arguments; InvalidArgumentError for bad ones."""
    listeners = [Listener.parse(u) for u in getattr(args, "listen", None) or []]
    tls = None
    if getattr(args, "tlsverify", False) or getattr(args, "tls", False):
        if not args.tlscert or not args.tlskey:
            raise InvalidArgumentError("--tls and --tlsverify need --tlscert and --tlskey")
        tls = TLSOptions(args.tlscert, args.tlskey, args.tlscacert, verify=bool(args.tlsverify))
        tls.context()  # unreadable files are a usage error now, not a failed start later
    elif any(getattr(args, a, None) for a in ("tlscacert", "tlscert", "tlskey")):
        raise InvalidArgumentError("--tlscacert, --tlscert and --tlskey need --tls or --tlsverify")
    check_listeners(listeners, tls)
    return ApiOptions(replica_id=opts.replica_id, lock_ttl=opts.lock_ttl, lock_timeout=opts.lock_timeout,
                      listeners=listeners, tls=tls)


class ApiThread:
    """Runs ``EngineAPI.serve`` in a thread; ``begin`` waits until it listens (or failed)."""

    def __init__(self, url: str, args: argparse.Namespace, opts: ApiOptions, runtime: Runtime) -> None:
        self.url, self.args, self.opts, self.runtime = url, args, opts, runtime
        self._ready = threading.Event()
        self._failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="engine-api", daemon=True)

    def begin(self, timeout: float = 30.0) -> str | None:
        """Start serving; None once every listener is bound, else why it failed."""
        self._thread.start()
        if not self._ready.wait(timeout):
            return f"not listening after {timeout:g}s"
        return self._failure

    def request_stop(self) -> None:
        """Stop listening and end the streams (events, logs -f, wait); safe from a signal handler."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop ended meanwhile
                pass

    def end(self, drain_timeout: float = 10.0, timeout: float = 15.0) -> None:
        """Stop, give the actions in flight ``drain_timeout`` seconds, then interrupt the runtime
        calls that still hang (their actions end with 503, nothing committed, locks released)."""
        self.request_stop()
        self._thread.join(drain_timeout)
        if self._thread.is_alive() or self.runtime.hanging:
            # a hung call holds a thread of the API's pool even when its client left (its handler is
            # gone then): the interpreter would wait for that thread at exit
            log.warning("interrupting Engine API actions still running after %gs (hung runtime calls)",
                        drain_timeout)
        self.runtime.interrupt.set()  # the work loop has drained: nothing else needs the runtime
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except (StateStoreError, OSError, InvalidArgumentError) as exc:
            if not self._ready.is_set():
                self._failure = str(exc)
            else:
                log.error("the Engine API stopped: %s", exc)
        except Exception as exc:  # a bug must be reported, not kill the thread silently
            log.exception("the Engine API failed")
            self._failure = self._failure or f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        a = self.args
        async with AsyncStore.from_url(self.url, namespace=a.namespace, replica_id=self.opts.replica_id,
                                       durability=a.durability, replicas=a.replicas,
                                       durability_timeout=a.durability_timeout) as store:
            await store.ping()
            api = EngineAPI(store, self.runtime, self.opts)
            await api.serve(self._stopping, ready=lambda bound: self._ready.set())


__all__ = ["ApiThread", "api_options"]
