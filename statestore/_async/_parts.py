"""What the store's parts read of the ``Store`` that wires them (a Protocol, so none imports it).

The watch, the view, the locks and fsck are handed the ``Store`` that makes
them; each declares what it uses as a Protocol extending ``StoreParts`` (its
namespace, keys, client, engine, record size cap) with the few calls of its
own, and ``mypy --strict`` checks ``Store`` against it where it hands itself
over.  Imports then point one way: ``_store`` imports the parts, never the
reverse.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

from typing import Protocol

from .._keys import KeySchema
from ._clients import Client
from ._engine import AsyncEngine


class StoreParts(Protocol):
    """The store's settings and connections that its parts share."""

    @property
    def namespace(self) -> str: ...

    @property
    def keys(self) -> KeySchema: ...

    @property
    def client(self) -> Client: ...

    @property
    def max_record_bytes(self) -> int: ...

    @property
    def _engine(self) -> AsyncEngine: ...
