"""The few primitives whose sync and async forms differ by more than a keyword.

The I/O layer is written once, as async code (``statestore/_async``); the sync
modules are generated from it by ``tools/unasync.py``, which renames
``AsyncX`` to ``X`` and ``async_x`` to ``x``.  Each primitive here therefore
comes in two spellings with the same meaning: the async one for the source,
the sync one for what is generated from it.  Background work (a lock's
renewer, the View's follower) is a thread in the sync face and a task in the
async face (:class:`Worker`, :class:`AsyncWorker`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

#: what an :class:`AsyncEntering` call returns
_CM = TypeVar("_CM", bound=Any)
_T = TypeVar("_T")

#: a mutual exclusion for state that several tasks (threads) of one store touch
AsyncLock = asyncio.Lock
Lock = threading.Lock


async def async_sleep(seconds: float) -> None:
    """Pause this task (``sleep``: this thread)."""
    await asyncio.sleep(seconds)


sleep = time.sleep


async def async_uncancelled(aw: Awaitable[_T], undo: Callable[[_T], Awaitable[None]]) -> _T:
    """Await ``aw``; if the caller is cancelled meanwhile, still let ``aw`` finish (a request
    already sent gets its reply), then ``undo`` its result (shielded) and re-raise the
    cancellation.  For calls whose effect must not outlive a caller that is gone (a lock taken
    for a cancelled task).  Later cancellations only wait for ``aw`` too: its own round trip
    bounds the wait.  (``uncancelled``, the sync form, has nothing to wait for.)  It runs
    ``aw`` as a task of its own; :func:`async_settled_reply` is the cheaper form for one reply."""
    task = asyncio.ensure_future(aw)
    cancelled = await _wait_out(task)
    if cancelled is None:
        return task.result()
    await _undo_result(task, undo)
    raise cancelled


def uncancelled(value: _T, undo: Callable[[_T], None]) -> _T:
    """:func:`async_uncancelled` for the sync face: a call returns, or it raised already."""
    return value


def async_cancel_requests() -> int:
    """How many cancellations of the running task are pending (``Task.cancelling()``; 0
    outside a task).  Read before a send, it tells :func:`async_settled_reply` whether the
    send swallowed one.  (``cancel_requests``, the sync form: always 0.)"""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def cancel_requests() -> int:
    return 0


async def async_settled_reply(conn: Any, undo: Callable[[Any], Awaitable[None]], pending: int = 0) -> Any:
    """The reply to the command just sent on ``conn`` (a redis-py connection); if the caller
    is cancelled while it waits, the reply is still read (one round trip bounds the wait,
    whatever further cancellations come), handed to ``undo`` (shielded), and the
    cancellation re-raised.  What :func:`async_uncancelled` does, for the common case of
    one reply, with no task unless a cancellation comes.

    A cancellation that came during the send counts too: redis-py sends through
    ``asyncio.wait_for`` when the connection has a socket timeout, and on Python 3.11
    ``wait_for`` swallows a cancellation that arrives as the send completes (fixed in 3.12).
    ``pending`` is :func:`async_cancel_requests` from before the send: more requests now
    mean the caller was cancelled while the command went out, so it is settled as above.
    (``settled_reply``, the sync form, just reads.)"""
    try:
        if async_cancel_requests() > pending:
            raise asyncio.CancelledError  # swallowed during the send: the command is out, settle it
        # not disconnecting on a cancellation keeps the reply readable (redis-py's
        # parser resumes an interrupted read, as its pub/sub timeouts do)
        return await conn.read_response(disconnect_on_error=False)
    except asyncio.CancelledError:
        task = asyncio.ensure_future(conn.read_response())
        await _wait_out(task)
        await _undo_result(task, undo)
        raise


def settled_reply(conn: Any, undo: Callable[[Any], None], pending: int = 0) -> Any:
    """:func:`async_settled_reply` for the sync face: a blocking read is not interrupted."""
    return conn.read_response()


async def _wait_out(task: asyncio.Future[_T]) -> asyncio.CancelledError | None:
    """Wait until ``task`` is done, through any cancellations of the caller; the first of
    them, or None.  (If ``task`` itself is cancelled, the loop is closing: that propagates.)"""
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.cancelled():
                raise
            cancelled = cancelled or exc
        except BaseException:
            break  # the task failed: the caller sees its error, or the cancellation
    return cancelled


async def _undo_result(task: asyncio.Future[_T], undo: Callable[[_T], Awaitable[None]]) -> None:
    """``undo`` the result of a finished ``task`` (nothing if it failed), shielded."""
    if not task.cancelled() and task.exception() is None:
        await asyncio.shield(asyncio.ensure_future(undo(task.result())))


class Condition:
    """A condition variable whose ``wait`` takes a timeout (None: for ever), over its own
    lock or ``lock``."""

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self._cond = threading.Condition(lock)

    def __enter__(self) -> Condition:
        self._cond.__enter__()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._cond.__exit__(t, e, tb)

    def wait(self, timeout: float | None) -> None:
        """Release the lock, sleep until notified or ``timeout`` passes, take the lock again."""
        self._cond.wait(timeout)

    def notify(self) -> None:
        self._cond.notify()

    def notify_all(self) -> None:
        self._cond.notify_all()


class AsyncCondition:
    """:class:`Condition` for tasks of one event loop."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AsyncCondition:
        await self._cond.acquire()
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._cond.release()

    async def wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._cond.wait(), timeout)
        except TimeoutError:
            pass  # wait_for re-took the lock before raising

    def notify(self) -> None:
        self._cond.notify()


class Flag:
    """A flag set once, that waiters can block on (``wait`` returns whether it is set)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class AsyncFlag:
    """:class:`Flag` for tasks; ``set`` may be called from any thread."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flag = False

    def set(self) -> None:
        self._flag = True
        loop = self._loop
        if loop is None or loop.is_closed():
            self._event.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._event.set()
        else:
            loop.call_soon_threadsafe(self._event.set)

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None) -> bool:
        self._loop = asyncio.get_running_loop()
        if self._flag:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        return self._flag


class Worker:
    """Background work of one store part: a daemon thread running ``target``."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def is_current(self) -> bool:
        return self._thread is threading.current_thread()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None and not self.is_current():
            self._thread.join(timeout)


class AsyncWorker:
    """:class:`Worker` as a task of the running event loop."""

    def __init__(self, target: Callable[[], Coroutine[object, object, None]], name: str) -> None:
        self._target, self._name = target, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._target(), name=self._name)

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def is_current(self) -> bool:
        try:
            return self._task is not None and asyncio.current_task() is self._task
        except RuntimeError:
            return False

    async def join(self, timeout: float) -> None:
        task = self._task
        if task is None or task.done() or self.is_current():
            return
        _, pending = await asyncio.wait({task}, timeout=timeout)
        for t in pending:
            t.cancel()


class Signal(Condition):
    """Wakes waiters when state guarded by ``lock`` changed: ``with signal:`` takes the lock,
    ``wait`` releases it while sleeping (so a check and the wait that follows it cannot miss
    a change), ``notify_all`` wakes every waiter (call it holding the lock)."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(lock)


class AsyncSignal:
    """:class:`Signal` for tasks of one event loop.  ``with signal:`` takes nothing: tasks
    switch only at an ``await``, so a check and the ``wait`` after it see one state (the
    lock stays for the readers of the sync face, which share the code)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._event = asyncio.Event()

    def __enter__(self) -> AsyncSignal:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None

    async def wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass

    def notify_all(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


__all__ = ["AsyncCondition", "AsyncFlag", "AsyncLock", "AsyncSignal", "AsyncWorker", "Condition", "Flag", "Lock",
           "Signal", "Worker", "async_sleep", "sleep"]


class AsyncEntering(Coroutine[Any, Any, _CM]):
    """A call whose result is an async context manager, usable both ways:
    ``x = await call()`` (or ``asyncio.create_task(call())``: it is a coroutine), or
    ``async with call() as x:`` (entered, and exited at the end of the block).  The
    sync face returns the context manager itself, which ``with`` enters, so it needs
    no counterpart here.
    """

    __slots__ = ("_coro", "_entered")

    def __init__(self, coro: Coroutine[Any, Any, _CM]) -> None:
        self._coro = coro
        self._entered: _CM | None = None

    def __await__(self) -> Generator[Any, None, _CM]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> _CM:
        self._entered = await self._coro
        return await self._entered.__aenter__()  # type: ignore[no-any-return]

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        entered, self._entered = self._entered, None
        if entered is not None:
            await entered.__aexit__(t, e, tb)
