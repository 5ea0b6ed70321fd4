"""The Docker Engine API's wording and shapes, without I/O (see docs/engine-api.md).

What moby answers and how it words it: the version rules, query parameters
(booleans, filters, signals, times), the ``docker ps`` and ``docker inspect``
shapes of a record, the error statuses and texts, and the ``docker events``
messages a change-log entry stands for.  ``server`` is the aiohttp side.
"""

from __future__ import annotations

import hashlib
import re
import signal as _signal
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from .. import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    Container,
    Event,
    ExecConfig,
    InvalidArgumentError,
    InvalidStateError,
    LockLostError,
    LockTimeoutError,
    NameInUseError,
    NotFoundError,
    StateStoreError,
    StorePermissionError,
    StoreUnavailableError,
)
from .._events import labels_match, ref_matches
from .._wording import command_raw, parse_time, parse_time_arg, status_text

API_VERSION: Final = "1.50"
MIN_API_VERSION: Final = "1.24"
OSTYPE: Final = "linux"
#: moby's container name rule (daemon/names: validContainerNamePattern)
NAME_RE: Final = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_FALSE: Final = frozenset({"", "0", "no", "false", "none"})
_VERSION_RE: Final = re.compile(r"^[0-9]+\.[0-9]+$")
_TIME_RE: Final = re.compile(r"^-?[0-9]+(\.[0-9]{1,9})?$")
MAX_SEQ: Final = 2**64 - 1


class ApiError(Exception):
    """An answer other than 2xx: ``status`` and moby's ``message`` (None: no body, as 304)."""

    def __init__(self, status: int, message: str | None) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


# --- versions and parameters -------------------------------------------------------------------


def version_key(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor)


def check_version(v: str | None) -> None:
    """Refuse a client API version outside [MIN_API_VERSION, API_VERSION] as moby words it."""
    if v is None:
        return
    if not _VERSION_RE.fullmatch(v):
        raise bad_request(f"invalid API version {v!r}")
    if version_key(v) < version_key(MIN_API_VERSION):
        raise bad_request(f"client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                          "please upgrade your client to a newer version")
    if version_key(v) > version_key(API_VERSION):
        raise bad_request(f"client version {v} is too new. Maximum supported API version is {API_VERSION}")


def boolean(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """moby's ``httputils.BoolValue``: "", 0, no, false, none (any case) are false; absent is ``default``."""
    if name not in query:
        return default
    return query[name].strip().lower() not in _FALSE


def integer(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    if name not in query or query[name] == "":
        return default
    try:
        return int(query[name])
    except ValueError:
        raise bad_request(f"invalid value for {name}: {query[name]!r}: expected an integer") from None


def filters(text: str | None) -> dict[str, list[str]]:
    """The ``filters`` parameter: moby's map form ``{"name":{"web":true}}`` or the SDK's list
    form ``{"label":["a=b"]}``; empty when absent."""
    if not text:
        return {}
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"invalid filters: {exc}") from None
    if not isinstance(raw, dict):
        raise bad_request("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            vals = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            vals = value
        elif isinstance(value, str):
            vals = [value]
        else:
            raise bad_request(f"invalid filter {key!r}: expected a list or a map of values")
        if not all(isinstance(v, str) for v in vals):
            raise bad_request(f"invalid filter {key!r}: values must be strings")
        if vals:
            out[str(key)] = list(vals)
    return out


def signal_number(text: str | None, default: str = "SIGKILL") -> int:
    """A signal by name (``SIGHUP``, ``HUP``, any case) or number, as ``docker kill -s`` takes it."""
    s = (text or default).strip()
    if s.isdigit():
        n = int(s)
        if 0 < n < 65:
            return n
    else:
        name = s.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            return int(_signal.Signals[name])
        except KeyError:
            pass
    raise bad_request(f"Invalid signal: {text}")


def event_time(text: str, name: str) -> int:
    """``since``/``until`` of ``/events``: unix seconds with an optional fraction; nanoseconds."""
    t = text.strip()
    if not _TIME_RE.fullmatch(t):
        raise bad_request(f"invalid value for {name}: {text!r}: expected unix seconds (sec[.nanos])")
    sec, _, frac = t.partition(".")
    ns = int(sec) * 10**9
    return ns + (int(frac.ljust(9, "0")) if frac else 0) * (-1 if sec.startswith("-") else 1)


def prune_until(text: str, now: datetime) -> int:
    """A prune ``until`` filter as moby's ``timetypes.GetTimestamp`` reads it: a duration before now
    (``1h``), RFC 3339 (or its shorter forms), or unix seconds; nanoseconds."""
    try:
        return parse_time_arg(text, now)
    except InvalidArgumentError as exc:
        raise bad_request(f"invalid value for until: {exc}") from None


def image_id(image: str) -> str:
    """A stable made-up image ID for an image reference (there are no images here)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise bad_request(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


# --- errors ------------------------------------------------------------------------------------------


def from_store_error(exc: StateStoreError) -> ApiError:
    """The status moby gives the same failure; its text where the store's is moby's already."""
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc))
    if isinstance(exc, NameInUseError | AlreadyExistsError):
        return ApiError(409, str(exc))
    if isinstance(exc, AmbiguousReferenceError):
        return ApiError(404, str(exc))  # moby: errdefs.NotFound for an ambiguous prefix too
    if isinstance(exc, LockTimeoutError):
        return ApiError(409, f"container {exc.container_id[:12]} is busy: another action holds it "
                             f"({exc}); try again later")
    if isinstance(exc, LockLostError):
        return ApiError(409, f"{exc}: the action was not recorded")
    if isinstance(exc, InvalidStateError):
        return ApiError(409, str(exc))
    if isinstance(exc, InvalidArgumentError):
        return ApiError(400, str(exc))
    if isinstance(exc, StorePermissionError):
        return ApiError(500, f"the state store refused access: {exc}")
    if isinstance(exc, StoreUnavailableError):
        return ApiError(503, f"the state store is unavailable: {exc}")
    return ApiError(500, str(exc))


# --- shapes --------------------------------------------------------------------------------------------


def epoch(text: str) -> int:
    """An RFC 3339 time as unix seconds (0 for the zero time)."""
    t = parse_time(text)
    return int(t.timestamp()) if t else 0


def ports(c: Container) -> list[dict[str, Any]]:
    """``Ports`` of a ContainerSummary: one entry per binding, or per exposed port without one."""
    out: list[dict[str, Any]] = []
    bound = c.network_settings.ports or {}
    exposed = c.config.exposed_ports or {}
    for key in sorted(set(bound) | set(exposed)):
        port, _, proto = key.partition("/")
        try:
            private = int(port)
        except ValueError:
            continue
        bindings = bound.get(key) or []
        if not bindings:
            out.append({"PrivatePort": private, "Type": proto or "tcp"})
        for b in bindings:
            entry: dict[str, Any] = {"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": private,
                                     "Type": proto or "tcp"}
            if str(b.get("HostPort", "")).isdigit():
                entry["PublicPort"] = int(b["HostPort"])
            out.append(entry)
    return out


def summary_fixed(c: Container) -> dict[str, Any]:
    """The parts of a ContainerSummary that depend only on the record's version (all but ``Status``,
    whose durations move with the clock): what a replica may cache per version."""
    d = c._d
    networks = (d.get("NetworkSettings") or {}).get("Networks") or {}
    return {
        "Id": c.id, "Names": ["/" + c.name], "Image": c.config.image, "ImageID": d.get("Image") or "",
        "Command": command_raw(c), "Created": epoch(c.created), "Ports": ports(c), "Labels": c.labels,
        "State": c.status, "Status": "",
        "HostConfig": {"NetworkMode": (d.get("HostConfig") or {}).get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": networks}, "Mounts": d.get("Mounts") or [],
    }


def summary(c: Container, now: datetime, size: bool = False, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET /containers/json``'s ContainerSummary of one record (``fixed``: its ``summary_fixed``,
    if the caller has it already)."""
    out = dict(fixed if fixed is not None else summary_fixed(c))
    out["Status"] = status_text(c, now)
    if size:
        out["SizeRw"], out["SizeRootFs"] = 0, 0
    return out


def inspect(c: Container) -> dict[str, Any]:
    """``GET /containers/{id}/json``: the record without statestore's own keys, with the fields
    clients read that a record may lack."""
    doc = c.to_dict()
    doc.pop("StateStore", None)
    state = doc.setdefault("State", {})
    state["Status"] = c.status
    host = doc.setdefault("HostConfig", {})
    host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    doc.setdefault("GraphDriver", {"Name": doc.get("Driver") or "overlay2", "Data": None})
    doc.setdefault("LogPath", "")
    doc.setdefault("HostnamePath", "")
    doc.setdefault("HostsPath", "")
    doc.setdefault("ResolvConfPath", "")
    return doc


def exec_inspect(x: ExecConfig) -> dict[str, Any]:
    doc = x.to_dict()
    doc.pop("StateStore", None)
    return doc


def exec_command(x: ExecConfig | None) -> str:
    if x is None:
        return ""
    pc = x.process_config
    return " ".join([str(pc.entrypoint or ""), *(str(a) for a in pc.arguments or [])]).strip()


# --- events -------------------------------------------------------------------------------------------


def actions_of(ev: Event) -> list[tuple[str, dict[str, str]]]:
    """The ``docker events`` actions one change-log entry stands for, each with its own attributes:
    a create is ``create`` (``exec_create`` for an exec), a delete ``destroy``; an update is what
    its writer named (``action``: ``kill=15,die,stop`` -> kill with signal 15, die, stop); an update
    that names nothing (a health probe, a field edit) is not a Docker event."""
    if ev.type == "create" and not ev.action:
        words = "exec_create" if ev.kind == "exec" else "create"
    elif ev.type == "delete" and not ev.action:
        words = "" if ev.kind == "exec" else "destroy"
    elif ev.type in ("create", "update", "delete"):
        words = ev.action
    else:
        words = ""
    out: list[tuple[str, dict[str, str]]] = []
    for word in words.split(",") if words else ():
        name, _, value = word.partition("=")
        attrs: dict[str, str] = {}
        if name == "kill":
            attrs["signal"] = value or "9"
        elif name in ("die", "exec_die"):
            rec = ev.record
            code = rec.state.exit_code if isinstance(rec, Container) else rec.exit_code if rec is not None else None
            attrs["exitCode"] = str(value or (code if code is not None else 0))
        elif value:
            attrs["value"] = value
        out.append((name, attrs))
    return out


def event_messages(ev: Event, container_of: Callable[[str], Container | None]) -> list[dict[str, Any]]:
    """moby's JSON messages for one change-log entry (``status``, ``id``, ``from`` included)."""
    acts = actions_of(ev)
    if not acts:
        return []
    ms = int(ev.revision.partition("-")[0])
    owner: Container | None
    if ev.kind == "container":
        owner = ev.record if isinstance(ev.record, Container) else None
    else:
        owner = container_of(ev.container_id)
    image = owner.config.image if owner is not None else ""
    attrs: dict[str, str] = dict(owner.labels) if owner is not None else {}
    attrs["image"] = image
    attrs["name"] = owner.name if owner is not None else (ev.name or "")
    out = []
    for name, extra in acts:
        a = dict(attrs)
        a.update(extra)
        action = name
        if ev.kind == "exec":
            x = ev.record if isinstance(ev.record, ExecConfig) else None
            a["execID"] = ev.id
            if name in ("exec_create", "exec_start"):
                action = f"{name}: {exec_command(x)}"
        if name == "rename" and ev.previous is not None:
            a["oldName"] = "/" + ev.previous[0]
        out.append({
            "status": action, "id": ev.container_id, "from": image, "Type": "container", "Action": action,
            "Actor": {"ID": ev.container_id, "Attributes": a}, "scope": "local",
            "time": ms // 1000, "timeNano": ms * 10**6,
        })
    return out


def event_filter(f: Mapping[str, list[str]]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``/events?filters=``: type, event (an exec action by its prefix), container
    (ID, ID prefix or name), image, label (``k`` or ``k=v``), scope."""
    known = {"type", "event", "container", "image", "label", "scope"}
    unknown = set(f) - known
    if unknown:
        raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
    selectors = label_selectors(f.get("label", ()))
    refs = [v.lstrip("/") for v in f.get("container", ())]

    def ok(msg: dict[str, Any]) -> bool:
        attrs = msg["Actor"]["Attributes"]
        if "type" in f and msg["Type"] not in f["type"]:
            return False
        if "scope" in f and msg["scope"] not in f["scope"]:
            return False
        if "event" in f:
            action = msg["Action"]
            base = action.partition(":")[0]
            if action not in f["event"] and base not in f["event"]:
                return False
        if "container" in f and not ref_matches(refs, msg["Actor"]["ID"], attrs.get("name", "")):
            return False
        if "image" in f:
            image = attrs.get("image", "")
            if not any(v == image or v == image.partition(":")[0] for v in f["image"]):
                return False
        return labels_match(selectors, attrs)

    return ok


def label_selectors(values: Iterable[str]) -> list[tuple[str, str | None]]:
    """``label`` filter values (``k`` or ``k=v``) as ``_events.labels_match`` takes them."""
    out: list[tuple[str, str | None]] = []
    for sel in values:
        k, sep, v = sel.partition("=")
        out.append((k, v if sep else None))
    return out


def now() -> datetime:
    return datetime.now(UTC)


__all__ = ["API_VERSION", "MIN_API_VERSION", "ApiError", "actions_of", "bad_request", "boolean", "check_name",
           "check_version", "epoch", "event_filter", "event_messages", "event_time", "exec_inspect", "filters",
           "from_store_error", "image_id", "inspect", "integer", "label_selectors", "now", "ports", "prune_until",
           "signal_number", "summary", "summary_fixed"]
