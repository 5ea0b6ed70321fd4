"""Per-container output logs: a capped Redis stream per container, readable by every replica.

Theory of operation
-------------------
A container's output (what its runtime writes to stdout and stderr) is the
stream ``ss:{ns}:logs:<id>``: one entry per chunk, fields ``s`` (the output
stream) and ``d`` (the bytes), so any replica can serve ``docker logs`` and
``docker logs -f`` for any container.

* **Append** is one script call (``logs_append.lua``): if the container record
  exists it ``XADD``s every chunk given with ``MAXLEN ~ maxlen`` and returns
  their entry IDs; if it does not, it writes nothing and the call raises
  NotFoundError.  Checking and writing in one script is what keeps a late
  write from recreating the log of a container whose delete (which deletes
  the log in the same commit) just ran.  ``MAXLEN ~`` trims by whole
  internal nodes: cheap, and the log keeps at least the newest ``maxlen``
  entries.  An append is sent once, never retried: a retry after a lost
  reply would write the chunks twice, so an error means they may or may not
  have been appended (StoreUnavailableError).
* **Read** is one ``XRANGE`` (or, for ``tail``, one ``XREVRANGE``, reversed):
  ``since``/``until`` (Unix seconds) become entry IDs (the entry IDs'
  milliseconds are the Redis server's clock when the chunk was appended),
  ``after`` continues after a line already read.  Reads are retried on
  connection errors like every read of the store.
* **Follow** is ``XREAD BLOCK`` after a position.  It runs like the lock
  waiter's ``BLPOP``: on a connection of the store's pool that nobody else
  uses meanwhile (the engine's single-command path takes a connection for
  the one command), in steps of at most 1 s (0.8 x the client's
  ``socket_timeout`` when one is set), so no blocking read outlives the
  socket timeout and a cancelled follower only drops its own connection.
* **Delete** is ``DEL``; ``containers.delete`` deletes the log in the
  container's own commit.  fsck reports (``logs-orphan``) and deletes a log
  whose container does not exist.

The ID checks are the store's: a container ID is 64 lowercase hex digits,
and everything else is refused with InvalidArgumentError before anything
is sent.  Only the engine talks to Redis, so every failure is a statestore
error.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any, Protocol

from .. import _loglines
from .._edge import read_lua
from .._errors import InvalidArgumentError, NotFoundError
from .._loglines import DEFAULT_MAXLEN, LogLine
from .._model import validate_id
from ._engine import AsyncScript
from ._parts import StoreParts


class LogSource(StoreParts, Protocol):
    """What the logs use of the store that makes them (a ``Store``): its keys, client (for its
    socket timeout) and engine."""


class AsyncLogs:
    """The output logs of a namespace's containers (``store.logs``)."""

    def __init__(self, store: LogSource) -> None:
        self.store = store
        self._append_script = AsyncScript(read_lua("logs_append.lua"))
        sock_timeout = store.client.connection_pool.connection_kwargs.get("socket_timeout")
        #: the longest one blocking read may wait (as the lock waiter's BLPOP)
        self._max_block = 1.0 if not sock_timeout else max(0.01, float(sock_timeout) * 0.8)

    def _key(self, container_id: str) -> str:
        return self.store.keys.logs(validate_id(container_id, "container ID"))

    # --- writing -----------------------------------------------------------------------
    async def append(self, container_id: str, stream: str, data: bytes | str, *,
                     maxlen: int = DEFAULT_MAXLEN) -> str:
        """Append one chunk of output (``stream`` ``"stdout"`` or ``"stderr"``; text is sent as
        UTF-8) and return its entry ID.  NotFoundError if the container does not exist."""
        return (await self.append_many(container_id, [(stream, data)], maxlen=maxlen))[0]

    async def append_many(self, container_id: str, items: Iterable[tuple[str, bytes | str]], *,
                          maxlen: int = DEFAULT_MAXLEN) -> list[str]:
        """Append several chunks in order, in one round trip and all or none; their entry IDs.

        At most ``_loglines.MAX_BATCH`` chunks per call; every chunk is checked before any is sent.
        """
        key = self._key(container_id)
        cap = _loglines.maxlen(maxlen)
        pairs = _loglines.entries(items)
        if not pairs:
            return []
        args: list[Any] = [cap]
        for s, d in pairs:
            args += [s, d]
        engine = self.store._engine
        reply = await engine.once(functools.partial(
            self._append_script, engine.execute, (key, self.store.keys.container(container_id)), args), key)
        if not isinstance(reply, list):  # -1: no such container
            raise NotFoundError("container", container_id)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in reply]

    async def delete(self, container_id: str) -> None:
        """Delete the container's log (nothing happens if it has none)."""
        key = self._key(container_id)
        await self.store._engine.command("DEL", key, key=key)

    # --- reading -----------------------------------------------------------------------
    async def read(self, container_id: str, *, since: float | None = None, until: float | None = None,
                   tail: int | None = None, after: str | None = None, count: int = 1000) -> list[LogLine]:
        """The lines appended at or after ``since`` and at or before ``until`` (Unix seconds;
        a line's time is whole milliseconds) and after the entry ID ``after``, oldest first.

        Without ``tail``, at most ``count`` lines from the start of that range: read on with
        ``after=lines[-1].id``.  With ``tail``, the last ``tail`` lines of the range (``0``: none).
        A container without a log (or without any container) has no lines.
        """
        key = self._key(container_id)
        n = _loglines.count(count, "count")
        last = None if tail is None else _loglines.count(tail, "tail", zero=True)
        bounds = _loglines.window(since, until, after)
        if bounds is None or last == 0:
            return []
        start, end = bounds
        engine = self.store._engine
        if last is not None:
            reply = await engine.command("XREVRANGE", key, end, start, "COUNT", last, key=key)
            return _loglines.lines(reply)[::-1]
        reply = await engine.command("XRANGE", key, start, end, "COUNT", n, key=key)
        return _loglines.lines(reply)

    async def last_id(self, container_id: str) -> str:
        """The entry ID of the container's newest line, ``"0-0"`` when it has none: ``follow``
        after it for the lines still to come (``docker logs -f --tail 0``)."""
        key = self._key(container_id)
        got = _loglines.lines(await self.store._engine.command("XREVRANGE", key, "+", "-", "COUNT", 1, key=key))
        return got[0].id if got else "0-0"

    async def follow(self, container_id: str, after: str, *, block: float = 1.0,
                     count: int = 1000) -> list[LogLine]:
        """The lines appended after the entry ID ``after`` (at most ``count``), waiting up to
        ``block`` seconds for the first one; ``[]`` if none came (``block=0``: no waiting).

        ``after`` is a line's ``id``, ``"0-0"`` for every line, or ``_loglines.after_time(t)``
        for the lines from the time ``t`` on.
        """
        key = self._key(container_id)
        n = _loglines.count(count, "count")
        _loglines.stream_id(after)
        if isinstance(block, bool) or not isinstance(block, int | float) or not 0 <= block <= 3600:
            raise InvalidArgumentError(f"block must be a number of seconds from 0 to 3600, not {block!r}")
        engine = self.store._engine
        if not block:
            return _loglines.read_reply(await engine.command("XREAD", "COUNT", n, "STREAMS", key, after, key=key))
        deadline = time.monotonic() + block
        while True:
            # XREAD BLOCK 0 would wait forever: never ask for less than 1 ms
            ms = max(1, int(min(deadline - time.monotonic(), self._max_block) * 1000))
            reply = await engine.command("XREAD", "COUNT", n, "BLOCK", ms, "STREAMS", key, after, key=key)
            if reply or time.monotonic() >= deadline:
                return _loglines.read_reply(reply)


__all__ = ["AsyncLogs", "LogLine", "LogSource"]
