"""The statestore exception family.

Every error a user can see derives from :class:`StateStoreError`.  Errors carry
the data a caller needs to act on them (the key, the versions seen, the holder
of a name) as attributes, not only in the message.  Nothing from
``redis.exceptions`` crosses the public API: the Redis edge translates in one
place (``statestore._edge.translate``).
"""

from __future__ import annotations


class StateStoreError(Exception):
    """Root of every statestore error."""

    def __init__(self, message: str) -> None:
        if type(self) is StateStoreError:
            raise TypeError("StateStoreError is abstract; raise a specific subclass")
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(StateStoreError, ValueError):
    """The caller passed something malformed (a bad name, ID, label, filter...).

    Nothing was read or written because of it.
    """


class NotFoundError(StateStoreError, LookupError):
    """No record matches the reference."""

    def __init__(self, kind: str, reference: str) -> None:
        what = "container" if kind == "container" else "exec instance"
        super().__init__(f"No such {what}: {reference}")
        self.kind = kind
        self.reference = reference


class AmbiguousReferenceError(StateStoreError, LookupError):
    """An ID prefix matches more than one record."""

    def __init__(self, kind: str, prefix: str) -> None:
        super().__init__(f"multiple IDs found with provided prefix: {prefix}")
        self.kind = kind
        self.prefix = prefix


class NameInUseError(StateStoreError):
    """The container name is reserved by another container."""

    def __init__(self, name: str, holder_id: str) -> None:
        super().__init__(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{holder_id}". You have to remove (or rename) that container to be able '
            "to reuse that name."
        )
        self.name = name
        self.holder_id = holder_id


class AlreadyExistsError(StateStoreError):
    """A record with this ID already exists."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(f"{kind} {record_id} already exists")
        self.kind = kind
        self.id = record_id


class ConflictError(StateStoreError):
    """A compare-and-set commit lost: the record changed since it was read.

    ``expected`` is the version the caller based its change on, ``actual`` the
    version found in Redis (``None`` when the record no longer exists).  For
    an ``update()`` whose optimistic retries ran out, ``attempts`` says how
    many were made.
    """

    def __init__(
        self,
        key: str,
        expected: int | None,
        actual: int | None,
        attempts: int = 1,
        detail: str = "",
    ) -> None:
        msg = f"conflict on {key}: expected version {expected}, found {actual}"
        if attempts > 1:
            msg += f" after {attempts} attempts"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.key = key
        self.expected = expected
        self.actual = actual
        self.attempts = attempts


class InvalidStateError(StateStoreError):
    """An illegal container (or exec) state transition."""

    def __init__(self, record_id: str, action: str, current: str, target: str, hint: str = "",
                 kind: str = "container") -> None:
        msg = f"cannot {action} {kind} {record_id[:12]}: invalid transition {current} -> {target}"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)
        self.id = record_id
        self.kind = kind
        self.action = action
        self.current = current
        self.target = target


class CorruptRecordError(StateStoreError):
    """A stored value cannot be decoded (garbage JSON, wrong Redis type, bad shape)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt record at {key}: {reason}")
        self.key = key
        self.reason = reason


class SchemaVersionError(CorruptRecordError):
    """A record was written by a newer statestore with a schema this one cannot read."""

    def __init__(self, key: str, found: int, supported: int) -> None:
        super().__init__(
            key,
            f"schema version {found} is newer than this statestore supports ({supported}); "
            "upgrade statestore to read it",
        )
        self.found = found
        self.supported = supported


class StoreUnavailableError(StateStoreError):
    """Redis could not be reached (or answered with a server error) after retries."""


class CommitIndeterminateError(StoreUnavailableError):
    """The connection was lost after EXEC was sent: the commit may or may not be applied.

    Re-read the record to learn the outcome; its version tells.
    """

    def __init__(self, key: str, cause: str) -> None:
        super().__init__(
            f"outcome of the commit to {key} is unknown: connection lost after EXEC ({cause}); "
            "re-read the record to learn whether it was applied"
        )
        self.key = key


class DurabilityError(CommitIndeterminateError):
    """A ``durability="replicated"`` commit was applied on the primary, but fewer
    replicas than required acknowledged it before the timeout.

    The commit may or may not survive a failover: it is on the primary now and
    will reach the replicas if the primary lives, but a failover before then
    loses it.  ``result`` is what the commit returned (the committed record);
    ``acknowledged``/``required`` count replicas.
    """

    def __init__(self, key: str, acknowledged: int, required: int, result: object = None,
                 detail: str = "") -> None:
        StoreUnavailableError.__init__(
            self,
            f"commit to {key} was applied on the primary but only {acknowledged} of {required} "
            f"required replica(s) acknowledged it{detail}; it may be lost if the primary fails now",
        )
        self.key = key
        self.acknowledged = acknowledged
        self.required = required
        self.result = result


class StorePermissionError(StateStoreError, PermissionError):
    """Redis refused the command for this user (ACL)."""


class InconsistentStoreError(StateStoreError):
    """Redis holds state that violates statestore's invariants (run ``statestore fsck``)."""


class LockTimeoutError(StateStoreError, TimeoutError):
    """The container's action lock could not be taken within the timeout."""

    def __init__(self, container_id: str, timeout: float, holder: dict[str, object] | None) -> None:
        who = ""
        if holder:
            who = (f" (held by replica {holder.get('replica')!s} pid {holder.get('pid')!s} "
                   f"on {holder.get('host')!s}, token {holder.get('token')!s})")
        super().__init__(f"timed out after {timeout:g}s waiting for the lock of container "
                         f"{container_id[:12]}{who}")
        self.container_id = container_id
        self.timeout = timeout
        self.holder = holder


class LockLostError(StateStoreError):
    """The lease no longer holds its container's lock (expired, taken over, or released).

    A commit made with such a lease raises this and writes nothing: this is
    the fencing check that keeps a stale holder from overwriting the work of
    the next one.
    """

    def __init__(self, container_id: str, token: int, reason: str) -> None:
        super().__init__(f"lock of container {container_id[:12]} with token {token} is lost: {reason}")
        self.container_id = container_id
        self.token = token
        self.reason = reason


class HistoryTrimmedError(StateStoreError):
    """The change log no longer holds the events after ``since``: relist, then watch again.

    Like etcd's "required revision has been compacted" and Kubernetes' 410 Gone.
    ``first_available`` is the oldest revision still in the log (None if it is empty).
    """

    def __init__(self, since: str, first_available: str | None, missing: int | None = None) -> None:
        what = f"{missing} event(s) after revision {since}" if missing else f"revision {since}"
        super().__init__(
            f"the change log was trimmed past {what} (oldest available: {first_available}); "
            "take a new snapshot and watch from its revision"
        )
        self.since = since
        self.first_available = first_available
        self.missing = missing


class LogRegressionError(StateStoreError):
    """The change log went backwards (e.g. a failover to a replica that missed writes).

    A watcher never serves older state as newer: it stops and the caller relists.
    """

    def __init__(self, last_revision: str, found_revision: str, last_seq: int | None,
                 found_seq: int | None) -> None:
        super().__init__(
            f"the change log went backwards: after revision {last_revision} (seq {last_seq}) came "
            f"{found_revision} (seq {found_seq}); relist from a new snapshot"
        )
        self.last_revision = last_revision
        self.found_revision = found_revision
