"""Run the API-level tests on the async face too: ``statestore.aio`` behind a blocking adapter.

The adapter runs an event loop in a thread of its own and turns every coroutine method of the
async store, its repositories, leases, watches and views into a blocking call that runs on that
loop, so a test written against ``statestore.Store`` exercises ``statestore.aio.Store`` (the
source the sync face is generated from), its tasks (the lock renewer, the View's follower) and
its cancellation-free paths unchanged.  Values cross as they are (records, lists, events and
errors are the same classes in both faces); leases, watches and views get adapters.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from statestore import aio


class Portal:
    """An event loop in a daemon thread; ``call`` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aio-face-loop", daemon=True)
        self._thread.start()

    def run(self, aw: Awaitable[Any]) -> Any:
        if not asyncio.iscoroutine(aw):  # an awaitable object (store.lock's): await it in a coroutine
            awaitable = aw

            async def wait() -> Any:
                return await awaitable
            aw = wait()
        return asyncio.run_coroutine_threadsafe(aw, self.loop).result()

    def sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A plain call made on the loop's thread (the async face's state belongs to it)."""
        async def call() -> Any:
            return fn(*args, **kwargs)
        return self.run(call())

    def close(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class _Proxy:
    """Coroutine methods of the wrapped object become blocking calls; adapters are unwrapped on
    the way in and applied on the way out."""

    def __init__(self, target: Any, portal: Portal) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_portal", portal)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.iscoroutinefunction(value):
            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(self._portal.run(value(*_unwrap_all(args), **_unwrap_kw(kwargs))),
                             self._portal)
            return call
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


class LeaseFace(_Proxy):
    def __enter__(self) -> LeaseFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self._portal.run(self._target.__aexit__(*exc))

    def __repr__(self) -> str:
        return repr(self._target)


class WatchFace(_Proxy):
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self._portal.run(self._target.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._portal.run(self._target.aclose())

    def __enter__(self) -> WatchFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ViewFace(_Proxy):
    """Reads run on the loop's thread: the follower task changes the tables there."""

    def get(self, ref: str) -> Any:
        return self._portal.sync(self._target.get, ref)

    def get_exec(self, ref: str) -> Any:
        return self._portal.sync(self._target.get_exec, ref)

    def list(self, *args: Any, **kwargs: Any) -> Any:
        return self._portal.sync(self._target.list, *args, **kwargs)

    def execs(self, *args: Any, **kwargs: Any) -> Any:
        return self._portal.sync(self._target.execs, *args, **kwargs)

    def __len__(self) -> int:
        return int(self._portal.sync(len, self._target))

    def close(self) -> None:
        self._portal.run(self._target.aclose())

    def __enter__(self) -> ViewFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreFace(_Proxy):
    def __init__(self, target: aio.Store, portal: Portal) -> None:
        super().__init__(target, portal)
        object.__setattr__(self, "containers", _Proxy(target.containers, portal))
        object.__setattr__(self, "execs", _Proxy(target.execs, portal))

    def watch(self, *args: Any, **kwargs: Any) -> WatchFace:
        w = WatchFace(self._portal.sync(self._target.watch, *args, **kwargs), self._portal)
        # closed with the store if the test did not: an unclosed asyncio connection warns when collected
        _WATCHES.setdefault(self._portal, []).append(w)
        return w

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        on_lost = kwargs.get("on_lost", args[3] if len(args) > 3 else None)
        if callable(on_lost):
            faces = _LEASES.setdefault(self._portal, {})

            def relay(lease: aio.Lease) -> None:
                on_lost(faces.setdefault(id(lease), LeaseFace(lease, self._portal)))
            if len(args) > 3:
                args = (*args[:3], relay, *args[4:])
            else:
                kwargs["on_lost"] = relay
        lease = self._portal.run(self._target.lock(*args, **kwargs))
        return _LEASES.setdefault(self._portal, {}).setdefault(id(lease), LeaseFace(lease, self._portal))

    def close(self) -> None:
        try:
            for w in _WATCHES.pop(self._portal, []):
                w.close()
            self._portal.run(self._target.aclose())
        finally:
            _LEASES.pop(self._portal, None)
            self._portal.close()

    def __enter__(self) -> StoreFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LEASES: dict[Portal, dict[int, LeaseFace]] = {}
_WATCHES: dict[Portal, list[WatchFace]] = {}


def _wrap(value: Any, portal: Portal) -> Any:
    if isinstance(value, aio.Lease):
        return _LEASES.setdefault(portal, {}).setdefault(id(value), LeaseFace(value, portal))
    if isinstance(value, aio.View):
        return ViewFace(value, portal)
    if isinstance(value, aio.Watch):
        return WatchFace(value, portal)
    return value


def _unwrap(value: Any) -> Any:
    return value._target if isinstance(value, _Proxy) else value


def _unwrap_all(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_unwrap(a) for a in args)


def _unwrap_kw(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: _unwrap(v) for k, v in kwargs.items()}


def async_store(port: int, namespace: str, **kwargs: Any) -> StoreFace:
    """``statestore.aio.Store`` on a private redis-server, behind the blocking adapter."""
    portal = Portal()

    async def make() -> aio.Store:
        return aio.Store.from_url(f"redis://127.0.0.1:{port}/0", namespace, **kwargs)  # closed with it

    return StoreFace(portal.run(make()), portal)


def forged_lease(store: Any, container_id: str, token: int, ttl: float = 10.0) -> Any:
    """A lease of ``store``'s face that claims ``token`` without having acquired it (for tests
    that check the store refuses it)."""
    import time

    from statestore import Lease

    if isinstance(store, StoreFace):
        lease = aio.Lease(store._target._locks, container_id, token, ttl, time.monotonic(), None)
        return LeaseFace(lease, store._portal)
    return Lease(store._locks, container_id, token, ttl, time.monotonic(), None)


def background(store: Any, name: str) -> int:
    """How many of ``store``'s face's background workers called ``name`` are alive: threads in
    the sync face, tasks of the loop in the async one."""
    if isinstance(store, StoreFace):
        async def count() -> int:
            return sum(1 for t in asyncio.all_tasks() if t.get_name() == name and not t.done())
        return int(store._portal.run(count()))
    return sum(1 for t in threading.enumerate() if t.name == name and t.is_alive())


def fsck_phases(store: Any) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """fsck's scan and its repair as two blocking calls on ``store``'s face (tests put changes
    between them)."""
    if isinstance(store, StoreFace):
        from statestore._async import _fsck as afsck

        target, portal = store._target, store._portal
        return (lambda: portal.run(afsck.read_namespace(target)),
                lambda analysis: portal.run(afsck.repair(target, analysis)))
    from statestore._sync import _fsck as sfsck

    return (lambda: sfsck.read_namespace(store), lambda analysis: sfsck.repair(store, analysis))
