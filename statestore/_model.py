"""Records: containers and execs, shaped like ``docker inspect``.

A record object is a thin, typed view over one JSON document (a ``dict``)
with Docker's inspect field names and nesting.  The document is the record:
what is stored in Redis is exactly ``orjson.dumps(record.to_dict())``, so a
field statestore does not know (a newer Docker field, an operator's
annotation) survives a read-modify-write untouched.

Every read from the store decodes a fresh document, so every object a caller
holds is its own deep copy; mutating it changes nothing until it is
committed.  Views returned by attributes (``c.state``, ``c.config``) share the
record's document, so ``c.state.set_running(pid=1)`` changes ``c``.

Store metadata lives in one reserved top-level object, ``StateStore``
(``Schema``, ``Kind``, ``Version``); see docs/schema.md.

Runtime handles (processes, sockets, timers) have no place here: a record can
only hold JSON values, and ``from_dict`` refuses anything else.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import _state
from ._errors import InvalidArgumentError, InvalidStateError
from ._names import generate_name

SCHEMA_VERSION: Final = 1
META: Final = "StateStore"

ID_LEN: Final = 64
ID_RE: Final = re.compile(r"^[0-9a-f]{64}$")
ID_PREFIX_RE: Final = re.compile(r"^[0-9a-f]{1,64}$")
# Docker's rule (moby daemon/names: RestrictedNameChars), plus a length cap so
# a name always fits comfortably in a key.
NAME_RE: Final = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_NAME_LEN: Final = 255
MAX_LABEL_BYTES: Final = 64 * 1024

Clock = Callable[[], int]
"""A function returning nanoseconds since the epoch (``time.time_ns``)."""


def format_time(ns: int) -> str:
    """RFC 3339 with 9 fractional digits, UTC: sorts lexically in time order."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def now_string(clock: Clock | None = None) -> str:
    return format_time((clock or time.time_ns)())


# --- identifiers ---------------------------------------------------------------


def generate_id(rand: Callable[[int], bytes] = os.urandom) -> str:
    """A 64-hex ID whose 12-char short form never parses as a number (moby's rule)."""
    while True:
        candidate = rand(32).hex()
        short = candidate[:12]
        try:
            float(short)
        except ValueError:
            return candidate


def validate_id(record_id: object, what: str = "ID") -> str:
    if not isinstance(record_id, str) or not ID_RE.fullmatch(record_id):
        raise InvalidArgumentError(f"invalid {what} {record_id!r}: must be 64 lowercase hex digits")
    return record_id


def normalize_name(name: object) -> str:
    """Validate a container name and return it without the leading slash."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name.lstrip("/")) > MAX_NAME_LEN:
        raise InvalidArgumentError(
            f"Invalid container name ({name!r}), only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
            f" (at most {MAX_NAME_LEN} characters)"
        )
    return name[1:] if name.startswith("/") else name


def validate_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidArgumentError(f"labels must be a mapping of strings, not {type(labels).__name__}")
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(f"label {k!r}={v!r}: keys and values must be strings")
        if not k:
            raise InvalidArgumentError("label keys must not be empty")
        if "\x00" in k or "\x00" in v:
            raise InvalidArgumentError(f"label {k!r}: NUL characters are not allowed")
        try:
            size = len(k.encode()) + len(v.encode())
        except UnicodeEncodeError:  # a lone surrogate: not text that can be stored
            raise InvalidArgumentError(f"label {k!r}={v!r}: not valid Unicode text") from None
        if size > MAX_LABEL_BYTES:
            raise InvalidArgumentError(f"label {k!r} is larger than {MAX_LABEL_BYTES} bytes")
        out[k] = v
    return out


def _str_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{what} must be a list of strings")
    items = list(value)
    if not all(isinstance(x, str) for x in items):
        raise InvalidArgumentError(f"{what} must be a list of strings")
    return items


def _expect(doc: dict[str, Any], key: str, typ: type, *, optional: bool = False,
            where: str = "") -> Any:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        path = f"{where}.{key}" if where else key
        raise InvalidArgumentError(f"{path} must be {'null or ' if optional else ''}a JSON {_JSON_NAMES[typ]}")
    return value


_JSON_NAMES: Final[dict[type, str]] = {str: "string", int: "integer", bool: "boolean", dict: "object",
                                       list: "array"}


# (field, type, optional) of the parts of a container the store reads
_TOP_FIELDS: Final = (("Created", str, False), ("Image", str, True), ("State", dict, False),
                      ("Config", dict, False), ("HostConfig", dict, True), ("NetworkSettings", dict, True),
                      ("Mounts", list, True))
_STATE_FIELDS: Final = tuple((f, bool, True) for f in (
    "Running", "Paused", "Restarting", "OOMKilled", "Dead", "RemovalInProgress")) + (
    ("Pid", int, True), ("ExitCode", int, True), ("StartedAt", str, True), ("FinishedAt", str, True),
    ("Error", str, True), ("Status", str, True), ("Health", dict, True))
_CONFIG_FIELDS: Final = (("Image", str, False), ("ExposedPorts", dict, True))


def _check(doc: dict[str, Any], spec: tuple[tuple[str, type, bool], ...], where: str) -> None:
    """``_expect`` for many fields, with the common (valid) case kept cheap."""
    get = doc.get
    for key, typ, optional in spec:
        value = get(key)
        if type(value) is typ or (value is None and optional):
            continue
        _expect(doc, key, typ, optional=optional, where=where)  # subclasses, or raise


def _port_map(doc: dict[str, Any], key: str, where: str) -> None:
    ports = _expect(doc, key, dict, optional=True, where=where)
    for port, bindings in (ports or {}).items():
        if bindings is None:
            continue
        if not isinstance(bindings, list) or not all(
                isinstance(b, dict) and isinstance(b.get("HostPort", ""), str) for b in bindings):
            raise InvalidArgumentError(f"{where}.{key}[{port!r}] must be a list of port bindings")


# --- views ---------------------------------------------------------------------


class _View:
    """A typed window onto part of a record's document."""

    __slots__ = ("_d",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._d = data

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of this part of the document."""
        copied: dict[str, Any] = orjson.loads(orjson.dumps(self._d))
        return copied

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._d!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._d == self._d

    __hash__ = None  # type: ignore[assignment]


def _prop(field: str, doc: str = "") -> Any:
    def get(self: _View) -> Any:
        return self._d.get(field)

    def set_(self: _View, value: Any) -> None:
        self._d[field] = value

    return property(get, set_, doc=doc or f"``{field}``")


class Health(_View):
    status = _prop("Status")
    failing_streak = _prop("FailingStreak")
    log = _prop("Log")


class State(_View):
    """``State`` of a container; the lifecycle methods follow moby's transitions."""

    __slots__ = ("_id", "_clock")

    def __init__(self, data: dict[str, Any], record_id: str, clock: Clock | None = None) -> None:
        super().__init__(data)
        self._id = record_id
        self._clock = clock

    @property
    def status(self) -> str:
        return _state.derive_status(self._d)

    running = property(lambda self: bool(self._d.get("Running")))
    paused = property(lambda self: bool(self._d.get("Paused")))
    restarting = property(lambda self: bool(self._d.get("Restarting")))
    oom_killed = property(lambda self: bool(self._d.get("OOMKilled")))
    dead = property(lambda self: bool(self._d.get("Dead")))
    removal_in_progress = property(lambda self: bool(self._d.get("RemovalInProgress")))
    pid = property(lambda self: int(self._d.get("Pid") or 0))
    exit_code = property(lambda self: int(self._d.get("ExitCode") or 0))
    error = property(lambda self: str(self._d.get("Error") or ""))
    started_at = property(lambda self: str(self._d.get("StartedAt") or _state.ZERO_TIME))
    finished_at = property(lambda self: str(self._d.get("FinishedAt") or _state.ZERO_TIME))

    @property
    def health(self) -> Health | None:
        h = self._d.get("Health")
        return Health(h) if isinstance(h, dict) else None

    def _now(self, at: str | None) -> str:
        return at if at is not None else now_string(self._clock)

    def set_running(self, pid: int, *, at: str | None = None) -> None:
        """The container's process started (``docker start``, or a restart-policy restart)."""
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise InvalidArgumentError(f"pid must be a positive integer, not {pid!r}")
        _state.apply(self._id, "start", self._d, self._now(at), pid=pid)

    def set_paused(self) -> None:
        _state.apply(self._id, "pause", self._d, "")

    def set_unpaused(self) -> None:
        _state.apply(self._id, "unpause", self._d, "")

    def set_restarting(self, exit_code: int = 0, *, oom_killed: bool = False,
                       at: str | None = None) -> None:
        """The process exited and the restart policy will start it again."""
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise InvalidArgumentError(f"exit_code must be an integer, not {exit_code!r}")
        _state.apply(self._id, "restart", self._d, self._now(at), exit_code=exit_code,
                     oom_killed=oom_killed)

    def set_stopped(self, exit_code: int, *, oom_killed: bool = False, error: str = "",
                    at: str | None = None) -> None:
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise InvalidArgumentError(f"exit_code must be an integer, not {exit_code!r}")
        _state.apply(self._id, "stop", self._d, self._now(at), exit_code=exit_code,
                     oom_killed=oom_killed, error=error)

    def set_removal_in_progress(self) -> None:
        _state.apply(self._id, "remove", self._d, "")

    def reset_removal_in_progress(self) -> None:
        if not self._d.get("RemovalInProgress"):
            raise InvalidStateError(self._id, "reset removal of", self.status, self.status,
                                    "removal is not in progress")
        self._d["RemovalInProgress"] = False
        self._d["Status"] = _state.derive_status(self._d)

    def set_dead(self) -> None:
        _state.apply(self._id, "die", self._d, "")

    def set_health(self, status: str, *, failing_streak: int | None = None,
                   probe: Mapping[str, Any] | None = None, max_log: int = 5) -> None:
        """Record a health-check result; ``probe`` is a Docker ``Health.Log`` entry."""
        if status not in _state.HEALTH_STATUSES:
            raise InvalidArgumentError(
                f"health status must be one of {', '.join(_state.HEALTH_STATUSES)}, not {status!r}"
            )
        _state.check_transition(self._id, "health", self._d, target=status)
        h = self._d.get("Health")
        if not isinstance(h, dict):
            h = {"Status": "starting", "FailingStreak": 0, "Log": []}
        if failing_streak is None:
            failing_streak = int(h.get("FailingStreak") or 0) + 1 if status == "unhealthy" else 0
        h["Status"] = status
        h["FailingStreak"] = failing_streak
        log = list(h.get("Log") or [])
        if probe is not None:
            log.append(dict(probe))
        h["Log"] = log[-max_log:] if max_log > 0 else []
        self._d["Health"] = h


class Config(_View):
    hostname = _prop("Hostname")
    user = _prop("User")
    image = _prop("Image")
    cmd = _prop("Cmd")
    entrypoint = _prop("Entrypoint")
    env = _prop("Env")
    working_dir = _prop("WorkingDir")
    exposed_ports = _prop("ExposedPorts")
    tty = _prop("Tty")
    open_stdin = _prop("OpenStdin")
    stop_signal = _prop("StopSignal")

    @property
    def labels(self) -> dict[str, str]:
        labels = self._d.get("Labels")
        if labels is None:
            labels = self._d["Labels"] = {}
        return labels

    @labels.setter
    def labels(self, value: Mapping[str, str]) -> None:
        self._d["Labels"] = validate_labels(value)


class HostConfig(_View):
    restart_policy = _prop("RestartPolicy")
    network_mode = _prop("NetworkMode")
    binds = _prop("Binds")
    port_bindings = _prop("PortBindings")
    auto_remove = _prop("AutoRemove")
    privileged = _prop("Privileged")


class NetworkSettings(_View):
    networks = _prop("Networks")
    ports = _prop("Ports")


class _Record:
    """Common behaviour of container and exec records."""

    __slots__ = ("_d", "_raw", "revision", "_auto_name")
    _d: dict[str, Any]
    _raw: bytes
    KIND: str = ""
    ID_FIELD: str = "Id"

    def __init__(self, data: dict[str, Any]) -> None:
        self._d = data
        #: the change-log revision of the commit that produced this object, when
        #: it came back from a write (not persisted; ``None`` after a plain read)
        self.revision: str | None = None
        self._auto_name = False  # the name was generated: the store may pick another

    @classmethod
    def _from_valid_bytes(cls, raw: bytes) -> Any:
        """A record that parses ``raw`` (already validated) on first use.

        Still a private copy: the bytes are immutable and each object parses
        its own document.  Used by the local view, whose lookups would
        otherwise spend most of their time parsing JSON nobody reads.
        """
        rec = cls.__new__(cls)
        rec._raw = raw  # revision and _auto_name stay unset: __getattr__ gives their defaults
        return rec

    @classmethod
    def _all_from_valid_bytes(cls, raws: Iterable[bytes]) -> list[Any]:
        """``_from_valid_bytes`` of each of ``raws`` (a list's worth, with less call overhead)."""
        new = cls.__new__
        out = []
        for raw in raws:
            rec = new(cls)
            rec._raw = raw
            out.append(rec)
        return out

    if not TYPE_CHECKING:  # hidden from mypy, so attribute typos stay type errors

        def __getattr__(self, name: str) -> Any:
            # only reached when a slot is unset: the document of a lazily parsed record
            if name == "_d":
                doc = orjson.loads(object.__getattribute__(self, "_raw"))
                self._d = doc
                return doc
            if name == "revision":
                return None
            if name == "_auto_name":
                return False
            raise AttributeError(name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build a record from an inspect-shaped mapping (deep-copied, validated)."""
        try:
            doc = orjson.loads(orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATETIME
                                            | orjson.OPT_PASSTHROUGH_DATACLASS))
        except TypeError as exc:
            raise InvalidArgumentError(f"record is not plain JSON data: {exc}") from None
        if doc != data:
            # orjson writes UUIDs, enums, NaN, tuples... as something else: not the
            # JSON the caller gave, so refuse rather than store a surprise
            raise InvalidArgumentError("record is not plain JSON data (dicts, lists, str, int, float, bool, None)")
        if not isinstance(doc, dict):
            raise InvalidArgumentError("record must be a JSON object")
        meta = doc.setdefault(META, {})
        if not isinstance(meta, dict):
            raise InvalidArgumentError(f"{META} must be an object")
        meta.setdefault("Schema", SCHEMA_VERSION)
        meta.setdefault("Kind", cls.KIND)
        meta.setdefault("Version", 0)
        rec = cls(doc)
        rec.validate_for_write()
        return rec

    def validate_for_write(self) -> None:
        """``validate()`` plus: the metadata block is the current schema's."""
        self.validate()
        if self._d[META]["Schema"] != SCHEMA_VERSION:
            raise InvalidArgumentError(f"{META}.Schema must be {SCHEMA_VERSION}")

    def validate(self) -> None:
        validate_id(self._d.get(self.ID_FIELD), f"{self.KIND} ID")
        meta = self._d.get(META)
        # (the codec upgrades older schemas before this runs; from_dict and commits
        # check for the current schema themselves)
        if not isinstance(meta, dict) or type(meta.get("Schema")) is not int:
            raise InvalidArgumentError(f"{META}.Schema must be an integer")
        if meta.get("Kind") != self.KIND:
            raise InvalidArgumentError(f"{META}.Kind must be {self.KIND!r}")
        version = meta.get("Version")
        if type(version) is not int or version < 0:
            raise InvalidArgumentError(f"{META}.Version must be a non-negative integer")

    @property
    def id(self) -> str:
        return self._d[self.ID_FIELD]  # type: ignore[no-any-return]

    @property
    def version(self) -> int:
        """Committed version: 0 before the first commit, then +1 per commit."""
        return int(self._d[META]["Version"])

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the record's document, exactly as it is stored."""
        copied: dict[str, Any] = orjson.loads(orjson.dumps(self._d))
        return copied

    def copy(self) -> Any:
        dup = type(self)(self.to_dict())
        dup.revision = self.revision
        dup._auto_name = self._auto_name
        return dup

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._d == self._d

    __hash__ = None  # type: ignore[assignment]


class Container(_Record):
    """A container record (``docker inspect`` shape)."""

    __slots__ = ()
    KIND = "container"
    ID_FIELD = "Id"

    @classmethod
    def new(
        cls,
        image: str,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        cmd: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Sequence[str] | None = None,
        working_dir: str = "",
        user: str = "",
        hostname: str | None = None,
        tty: bool = False,
        open_stdin: bool = False,
        exposed_ports: Iterable[str] | None = None,
        restart_policy: str = "no",
        network_mode: str = "bridge",
        networks: Mapping[str, Mapping[str, Any]] | None = None,
        binds: Sequence[str] | None = None,
        port_bindings: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
        auto_remove: bool = False,
        mounts: Sequence[Mapping[str, Any]] | None = None,
        image_id: str = "",
        id: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> Container:
        """A fresh, uncommitted container in state ``created`` (version 0).

        Generates a 64-hex ID and, without ``name``, a Docker-style random
        name.  Raises InvalidArgumentError for a bad image, name, ID or label.
        """
        if not isinstance(image, str) or not image or any(c.isspace() for c in image):
            raise InvalidArgumentError(f"invalid image reference {image!r}")
        cid = validate_id(id, "container ID") if id is not None else generate_id()
        bare = normalize_name(name) if name is not None else generate_name(rng)
        labels_d = validate_labels(labels)
        cmd_l = _str_list(cmd, "cmd")
        ep_l = _str_list(entrypoint, "entrypoint")
        ports: dict[str, Any] = {p: {} for p in _str_list(exposed_ports, "exposed_ports")}
        binds_l = _str_list(binds, "binds")
        pb = {k: [dict(b) for b in v] for k, v in (port_bindings or {}).items()}
        for p in pb:
            ports.setdefault(p, {})
        nets: dict[str, Any] = {}
        for net_name, settings in (networks or {network_mode: {}}).items():
            entry = {"NetworkID": "", "EndpointID": "", "IPAddress": "", "Aliases": None}
            entry.update(settings)
            nets[net_name] = entry
        created = now_string(clock)
        doc: dict[str, Any] = {
            "Id": cid,
            "Created": created,
            "Path": (ep_l + cmd_l)[0] if (ep_l + cmd_l) else "",
            "Args": (ep_l + cmd_l)[1:],
            "State": _state.new_state(),
            "Image": image_id,
            "Name": "/" + bare,
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": {
                "Binds": binds_l or None,
                "NetworkMode": network_mode,
                "PortBindings": pb,
                "RestartPolicy": {"Name": restart_policy, "MaximumRetryCount": 0},
                "AutoRemove": auto_remove,
                "Privileged": False,
            },
            "Mounts": [dict(m) for m in (mounts or [])],
            "Config": {
                "Hostname": hostname if hostname is not None else cid[:12],
                "User": user,
                "Tty": tty,
                "OpenStdin": open_stdin,
                "ExposedPorts": ports or None,
                "Env": _str_list(env, "env") or None,
                "Cmd": cmd_l or None,
                "Image": image,
                "WorkingDir": working_dir,
                "Entrypoint": ep_l or None,
                "Labels": labels_d,
            },
            "NetworkSettings": {
                "Networks": nets,
                "Ports": {p: list(b) for p, b in pb.items()},
            },
            META: {"Schema": SCHEMA_VERSION, "Kind": "container", "Version": 0},
        }
        rec = cls(doc)
        rec.validate()
        rec._auto_name = name is None
        return rec

    def validate(self) -> None:
        """Check the shapes the store, its indexes and its filters rely on.

        Raises InvalidArgumentError; the codec turns that into CorruptRecordError
        for data read from Redis, so one malformed record can never break ``ps``.
        """
        super().validate()
        d = self._d
        normalize_name(d.get("Name"))
        _check(d, _TOP_FIELDS, "")
        state = d["State"]
        _check(state, _STATE_FIELDS, "State")
        health = state.get("Health")
        if health is not None:
            _expect(health, "Status", str, where="State.Health")
        cfg = d["Config"]
        _check(cfg, _CONFIG_FIELDS, "Config")
        validate_labels(cfg.get("Labels"))
        hc = d.get("HostConfig")
        if hc is not None:
            _port_map(hc, "PortBindings", "HostConfig")
        ns = _expect(d, "NetworkSettings", dict, optional=True)
        if ns is not None:
            nets = _expect(ns, "Networks", dict, optional=True, where="NetworkSettings")
            for net, settings in (nets or {}).items():
                if not isinstance(settings, dict) or not isinstance(settings.get("NetworkID", ""), str):
                    raise InvalidArgumentError(f"NetworkSettings.Networks[{net!r}] must be an endpoint object")
            _port_map(ns, "Ports", "NetworkSettings")
        mounts = d.get("Mounts")
        if mounts is not None and not all(isinstance(m, dict) for m in mounts):
            raise InvalidArgumentError("Mounts must be a list of objects")
        ids = d.get("ExecIDs")
        if ids is not None and (not isinstance(ids, list) or not all(
                isinstance(x, str) and ID_RE.fullmatch(x) for x in ids)):
            raise InvalidArgumentError("ExecIDs must be null or a list of exec IDs")

    # identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The name without Docker's leading slash (``Name`` in the document has it)."""
        n: str = self._d["Name"]
        return n[1:] if n.startswith("/") else n

    @name.setter
    def name(self, value: str) -> None:
        self._d["Name"] = "/" + normalize_name(value)

    @property
    def created(self) -> str:
        return self._d["Created"]  # type: ignore[no-any-return]

    @property
    def image(self) -> str:
        """``Image``: the image ID (see ``config.image`` for the reference the user gave)."""
        return str(self._d.get("Image") or "")

    @image.setter
    def image(self, value: str) -> None:
        self._d["Image"] = value

    path = _prop("Path")
    args = _prop("Args")
    driver = _prop("Driver")
    platform = _prop("Platform")
    mounts = _prop("Mounts")

    @property
    def restart_count(self) -> int:
        return int(self._d.get("RestartCount") or 0)

    @restart_count.setter
    def restart_count(self, value: int) -> None:
        self._d["RestartCount"] = int(value)

    @property
    def exec_ids(self) -> list[str]:
        """``ExecIDs`` (``null`` in the document when empty, as Docker prints it)."""
        return list(self._d.get("ExecIDs") or [])

    # nested parts -------------------------------------------------------------------
    @property
    def state(self) -> State:
        return State(self._d["State"], self._d["Id"])

    @property
    def config(self) -> Config:
        return Config(self._d["Config"])

    @property
    def host_config(self) -> HostConfig:
        hc = self._d.get("HostConfig")
        if not isinstance(hc, dict):
            hc = self._d["HostConfig"] = {}
        return HostConfig(hc)

    @property
    def network_settings(self) -> NetworkSettings:
        ns = self._d.get("NetworkSettings")
        if not isinstance(ns, dict):
            ns = self._d["NetworkSettings"] = {"Networks": {}, "Ports": {}}
        return NetworkSettings(ns)

    @property
    def labels(self) -> dict[str, str]:
        """Shortcut for ``config.labels`` (the live dict: edits change the record)."""
        return self.config.labels

    @property
    def status(self) -> str:
        return _state.derive_status(self._d["State"])

    def __repr__(self) -> str:
        return (f"Container(id={self.id[:12]!r}, name={self.name!r}, "
                f"status={self.status!r}, version={self.version})")


class ProcessConfig(_View):
    tty = _prop("tty")
    entrypoint = _prop("entrypoint")
    arguments = _prop("arguments")
    privileged = _prop("privileged")
    user = _prop("user")


class ExecConfig(_Record):
    """An exec instance (``docker exec inspect`` shape)."""

    __slots__ = ()
    KIND = "exec"
    ID_FIELD = "ID"

    @classmethod
    def new(
        cls,
        container: str,
        cmd: Sequence[str],
        *,
        tty: bool = False,
        user: str = "",
        privileged: bool = False,
        env: Sequence[str] | None = None,
        working_dir: str = "",
        attach_stdin: bool = False,
        attach_stdout: bool = True,
        attach_stderr: bool = True,
        detach_keys: str = "",
        id: str | None = None,
    ) -> ExecConfig:
        """A fresh exec for ``container`` (an ID, name or prefix the store resolves)."""
        if not isinstance(container, str) or not container:
            raise InvalidArgumentError("container reference must be a non-empty string")
        cmd_l = _str_list(cmd, "cmd")
        if not cmd_l:
            raise InvalidArgumentError("No exec command specified")
        xid = validate_id(id, "exec ID") if id is not None else generate_id()
        doc: dict[str, Any] = {
            "ID": xid,
            "Running": False,
            "ExitCode": None,
            "ProcessConfig": {
                "tty": tty,
                "entrypoint": cmd_l[0],
                "arguments": cmd_l[1:],
                "privileged": privileged,
                "user": user,
            },
            "OpenStdin": attach_stdin,
            "OpenStderr": attach_stderr,
            "OpenStdout": attach_stdout,
            "CanRemove": False,
            "ContainerID": container,
            "DetachKeys": detach_keys,
            "Pid": 0,
            "Env": _str_list(env, "env") or None,
            "WorkingDir": working_dir,
            META: {"Schema": SCHEMA_VERSION, "Kind": "exec", "Version": 0},
        }
        return cls(doc)

    def validate(self) -> None:
        super().validate()
        validate_id(self._d.get("ContainerID"), "exec ContainerID")
        if not isinstance(self._d.get("ProcessConfig"), dict):
            raise InvalidArgumentError("ProcessConfig must be an object")

    @property
    def container_id(self) -> str:
        return str(self._d.get("ContainerID") or "")

    running = property(lambda self: bool(self._d.get("Running")))
    pid = property(lambda self: int(self._d.get("Pid") or 0))
    open_stdin = _prop("OpenStdin")
    open_stdout = _prop("OpenStdout")
    open_stderr = _prop("OpenStderr")
    detach_keys = _prop("DetachKeys")

    @property
    def exit_code(self) -> int | None:
        v = self._d.get("ExitCode")
        return None if v is None else int(v)

    @property
    def can_remove(self) -> bool:
        return bool(self._d.get("CanRemove"))

    @can_remove.setter
    def can_remove(self, value: bool) -> None:
        self._d["CanRemove"] = bool(value)

    @property
    def process_config(self) -> ProcessConfig:
        return ProcessConfig(self._d["ProcessConfig"])

    @property
    def status(self) -> str:
        if self._d.get("Running"):
            return "running"
        return "created" if self._d.get("ExitCode") is None else "exited"

    def set_running(self, pid: int) -> None:
        """The exec's process started.  An exec runs once (moby: "has already run")."""
        if self.status != "created":
            hint = "exec is already running" if self.running else "exec has already run"
            raise InvalidStateError(self.id, "start", self.status, "running", hint, kind="exec")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise InvalidArgumentError(f"pid must be a positive integer, not {pid!r}")
        self._d.update(Running=True, Pid=pid)

    def set_exited(self, exit_code: int) -> None:
        if not self.running:
            raise InvalidStateError(self.id, "finish", self.status, "exited",
                                    "exec is not running", kind="exec")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise InvalidArgumentError(f"exit_code must be an integer, not {exit_code!r}")
        self._d.update(Running=False, Pid=0, ExitCode=exit_code)

    def __repr__(self) -> str:
        return (f"ExecConfig(id={self.id[:12]!r}, container={self.container_id[:12]!r}, "
                f"status={self.status!r}, version={self.version})")
