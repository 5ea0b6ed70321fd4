"""``statestore demo``: several daemon replicas share one Redis; one container hangs; nobody waits.

What it does, in under a minute:

1. Picks a Redis: the one ``--redis-url`` (or ``$STATESTORE_REDIS_URL``)
   names; else one answering on 127.0.0.1:6379; else an embedded one
   (``statestore.embedded``: a private ``redis-server``, or an in-process
   fakeredis server).  It works in a fresh namespace and deletes it at the end.
2. Starts a watcher process (``store.watch``: checks that per-record versions
   and the log's sequence numbers are consecutive), N replica processes
   (``python -m statestore daemon``) and a querier process.
3. Drives a mixed workload (create, start, stop, restart, pause, unpause, kill,
   rename, remove, exec) on the containers through the work queue.  Part way,
   it makes one container's runtime hang during ``stop`` (the netlink case):
   the replica holds that container's lock all the while, and two more actions
   on it time out waiting for the lock.  Meanwhile the querier runs ``ps``,
   ``inspect`` of the hung container by ID, name and ID prefix, and the same
   lookups for other containers, and measures their latency.
4. Stops everything and checks the invariants: no lost update (every
   successful action increments the container's ``statestore.actions`` label in
   its fenced commit, so the counters must equal the successful results), every
   work item answered once, every event delivered in order, no lock left
   behind, replicas exited cleanly, ``fsck`` clean, and the hung container
   answered queries while its lock was held.  Exit status 1 if one failed.

The querier and the watcher are this module run as a program
(``python -m statestore.demo querier|watcher ...``); they talk to the demo in
JSON lines on stdout and take ``stop`` on stdin.
"""

from __future__ import annotations

from . import backend
from .backend import DEFAULT_URL, choose_redis
from .driver import Check, Demo, RunState
from .main import run
from .roles import querier_main, watcher_main
from .settings import IMAGES, STUCK_NAME, Settings, add_arguments

__all__ = [
    "DEFAULT_URL", "IMAGES", "STUCK_NAME", "Check", "Demo", "RunState", "Settings", "add_arguments", "backend",
    "choose_redis", "querier_main", "run", "watcher_main",
]
