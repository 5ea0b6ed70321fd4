"""``docker ps`` filters: parsing, index planning and matching (pure).

Rules follow moby's ``daemon/list.go``:

* accepted keys: id, name, label, status, exited, ancestor, before, since,
  health, network, volume, publish, expose, is-task; anything else is an
  InvalidArgumentError;
* values of one key are ORed, different keys ANDed;
* ``id`` and ``name`` match exactly or as an unanchored regular expression
  (Go's ``Args.Match``); a name is tried with and without its ``/``; an
  invalid expression only matches exactly;
* ``label`` values are ``key`` or ``key=value``, and *all* must hold;
* ``status`` is one of created, restarting, running, removing, paused, exited,
  dead, and forces ``all``; a limit also forces ``all``;
* ``exited`` needs a non-running container that has started, with that code;
* ``before``/``since`` take a container reference (resolved by the store);
* ``health`` is starting, healthy, unhealthy or none;
* ``network`` is a network name or a NetworkID prefix;
* ``publish``/``expose`` are ``port``, ``port/proto``, or ``start-end[/proto]``;
* ``is-task`` is true or false (a swarm task carries ``com.docker.swarm.task.id``).

The planner turns the indexed keys (label, status, name is not indexed for
regex, ancestor, network; the default "running only") into clauses of
``Range``s over sorted sets; the store reads the smallest clause's members
and then matches every candidate against the whole query in memory, so an
index only has to return a superset.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from . import _indexes as ix
from ._errors import InvalidArgumentError
from ._state import HEALTH_STATUSES, STATUSES, ZERO_TIME, derive_status

ACCEPTED: Final = (
    "ancestor", "before", "exited", "expose", "health", "id", "is-task", "label",
    "isolation", "name", "network", "publish", "since", "status", "volume",
)
_ACCEPTED: Final = frozenset(ACCEPTED)
RUNNING_STATUSES: Final = ("running", "paused", "restarting")
#: keys whose plan clauses select exactly the matching containers (the default
#: "running only" too): a back end that intersects every clause needs no record
EXACT_KEYS: Final = frozenset({"label", "status"})
TASK_LABEL: Final = "com.docker.swarm.task.id"
_PORT_RE: Final = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/(tcp|udp|sctp))?")
_INT_RE: Final = re.compile(r"-?[0-9]{1,10}")
_HEX_RE: Final = re.compile(r"^[0-9a-f]+$")


def parse_filter_args(args: Iterable[str]) -> dict[str, list[str]]:
    """``["label=app=web", "status=running"]`` -> ``{"label": ["app=web"], ...}``."""
    out: dict[str, list[str]] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"bad format of filter (expected name=value): {arg!r}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


class Query(NamedTuple):
    """A validated ``docker ps`` query (immutable; a tuple, built on every list, cheaply)."""

    filters: dict[str, tuple[str, ...]]
    all: bool = False
    limit: int | None = None
    # port sets, parsed once
    publish: frozenset[str] = frozenset()
    expose: frozenset[str] = frozenset()
    exited: frozenset[int] = frozenset()

    def values(self, key: str) -> tuple[str, ...]:
        return self.filters.get(key, ())


_NONE: frozenset[str] = frozenset()
_NONE_INT: frozenset[int] = frozenset()


def _ports(key: str, values: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for v in values:
        m = _PORT_RE.fullmatch(v)
        if ":" in v or not m:
            raise InvalidArgumentError(f"invalid filter '{key}={v}': expected port[-port][/proto]")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        proto = m.group(3) or "tcp"
        if not (0 < lo <= hi <= 65535):
            raise InvalidArgumentError(f"invalid filter '{key}={v}': port out of range")
        out.update(f"{p}/{proto}" for p in range(lo, hi + 1))
    return frozenset(out)


def make_query(
    filters: Mapping[str, Iterable[str] | str] | None = None,
    all: bool = False,
    limit: int | None = None,
) -> Query:
    """Validate ``filters`` (InvalidArgumentError on anything docker would refuse)."""
    norm: dict[str, tuple[str, ...]] = {}
    exited: set[int] = set()
    if filters is not None and type(filters) is not dict and not isinstance(filters, Mapping):
        raise InvalidArgumentError("filters must be a mapping of filter name to values")
    for key, values in (filters or {}).items():
        if key not in _ACCEPTED:
            raise InvalidArgumentError(f"invalid filter '{key}'")
        if isinstance(values, str):
            vals: tuple[Any, ...] = (values,)
        elif isinstance(values, Iterable) and not isinstance(values, bytes | Mapping):
            vals = tuple(values)
        else:
            raise InvalidArgumentError(f"filter {key!r}: values must be a string or a list of strings")
        if not all_str(vals):
            raise InvalidArgumentError(f"filter {key!r}: values must be strings")
        for v in vals:
            if not v.isascii():
                try:
                    v.encode()
                except UnicodeEncodeError:  # a lone surrogate: it could not be sent as an index range
                    raise InvalidArgumentError(f"invalid filter {key}={v!r}: not valid Unicode text") from None
        if not vals:
            continue
        norm[key] = vals
        # each key's values, checked once (only the keys present are looked at)
        if key in _NON_EMPTY:
            for v in vals:
                if not v or "\x00" in v:
                    raise InvalidArgumentError(f"invalid filter '{key}={v}'")
        elif key == "status":
            for v in vals:
                if v not in STATUSES:
                    raise InvalidArgumentError(f"invalid filter 'status={v}'")
        elif key == "health":
            for v in vals:
                if v not in (*HEALTH_STATUSES, "none"):
                    raise InvalidArgumentError(f"Unrecognised filter value for health: {v}")
        elif key == "is-task":
            for v in vals:
                if v not in ("true", "false"):
                    raise InvalidArgumentError(f"invalid filter 'is-task={v}'")
        elif key == "exited":
            for v in vals:
                if not _INT_RE.fullmatch(v):
                    raise InvalidArgumentError(f"invalid filter 'exited={v}'")
                exited.add(int(v))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidArgumentError(f"limit must be a non-negative integer, not {limit!r}")
    if limit == 0:
        limit = None
    return Query(  # positional: this runs on every list
        norm,
        bool(all) or "status" in norm or limit is not None,
        limit,
        _ports("publish", norm["publish"]) if "publish" in norm else _NONE,
        _ports("expose", norm["expose"]) if "expose" in norm else _NONE,
        frozenset(exited) if exited else _NONE_INT,
    )


#: keys whose values must be non-empty and free of NUL (they become index ranges or references)
_NON_EMPTY: Final = frozenset({"before", "since", "label", "ancestor", "network", "volume", "id", "name"})


def all_str(values: Iterable[Any]) -> bool:
    return all(isinstance(v, str) for v in values)


# --- planning ----------------------------------------------------------------------

Clause = tuple[ix.Range, ...]
"""Ranges ORed together; a plan is a list of clauses ANDed together."""

#: the clause of a plain ``docker ps`` (no ``all``, no status filter), built once
RUNNING_CLAUSE: Final[Clause] = tuple(ix.exact("status", s) for s in RUNNING_STATUSES)


def plan(query: Query) -> list[Clause]:
    """Index clauses that together contain every match (each one alone is a superset).

    An empty list means no index helps: every container is a candidate.
    """
    clauses: list[Clause] = []
    f = query.filters
    if "status" in f:
        clauses.append(tuple(ix.exact("status", s) for s in sorted(set(f["status"]))))
    elif not query.all:
        clauses.append(RUNNING_CLAUSE)
    for lbl in f.get("label", ()):
        # every label must hold, so each one is its own clause
        k, sep, v = lbl.partition("=")
        clauses.append((ix.exact("label", k, v),) if sep else (ix.exact("label", k),))
    if "ancestor" in f:
        rngs: list[ix.Range] = []
        for a in f["ancestor"]:
            rngs.append(ix.exact("image", a))
            if not _has_tag(a):
                rngs.append(ix.exact("image", a + ":latest"))
            elif a.endswith(":latest"):  # "busybox:latest" is the image "busybox" names
                rngs.append(ix.exact("image", a[: -len(":latest")]))
            if _HEX_RE.fullmatch(a):
                rngs.append(ix.prefix("image", "sha256:" + a))
                rngs.append(ix.prefix("image", a))  # an Image ID stored without "sha256:"
            elif a.startswith("sha256:"):
                rngs.append(ix.prefix("image", a))
        clauses.append(tuple(rngs))
    if "network" in f:
        # a prefix range covers the exact name and NetworkID prefixes at once
        clauses.append(tuple(ix.prefix("network", n) for n in f["network"]))
    if "exited" in f and "status" not in f:
        # moby accepts any started, non-running container: exited, dead or being removed
        clauses.append(tuple(ix.exact("status", s) for s in ("dead", "exited", "removing")))
    return clauses


def _has_tag(ref: str) -> bool:
    if "@" in ref:
        return True
    last = ref.rsplit("/", 1)[-1]
    return ":" in last


def scan_field(query: Query) -> str | None:
    """For a query with no index clause, an index whose members alone can filter (id/name)."""
    if "name" in query.filters:
        return "name"
    if "id" in query.filters:
        return "id"
    return None


def member_matches(query: Query, field_name: str, member: str) -> bool:
    """Match an ``id`` or ``name`` index member against the query's id/name filter."""
    if field_name == "id":
        return _match_any(query.values("id"), (member,))
    name = member.rsplit(ix.SEP, 1)[0]
    return _match_any(query.values("name"), (name, "/" + name))


# --- matching -----------------------------------------------------------------------

_regex_cache: dict[str, re.Pattern[str] | None] = {}


def _regex(pattern: str) -> re.Pattern[str] | None:
    if pattern in _regex_cache:
        return _regex_cache[pattern]
    if len(_regex_cache) >= 1024:
        _regex_cache.clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. FutureWarning for Go-only syntax like [[:alpha:]]
            compiled: re.Pattern[str] | None = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        compiled = None
    _regex_cache[pattern] = compiled
    return compiled


def _match_any(patterns: Iterable[str], sources: Iterable[str]) -> bool:
    srcs = tuple(sources)
    for p in patterns:
        if p in srcs:
            return True
        rx = _regex(p)
        if rx is not None and any(rx.search(s) for s in srcs):
            return True
    return False


def exposed_ports(doc: dict[str, Any]) -> set[str]:
    cfg = doc.get("Config") or {}
    out = set((cfg.get("ExposedPorts") or {}).keys())
    out.update(((doc.get("NetworkSettings") or {}).get("Ports") or {}).keys())
    out.update(((doc.get("HostConfig") or {}).get("PortBindings") or {}).keys())
    return out


def published_ports(doc: dict[str, Any]) -> set[str]:
    """Container ports that are published to the host (moby matches ``publish`` on these)."""
    out: set[str] = set()
    for ports in (((doc.get("HostConfig") or {}).get("PortBindings") or {}),
                  ((doc.get("NetworkSettings") or {}).get("Ports") or {})):
        for key, bindings in ports.items():
            if bindings:
                out.add(key if "/" in key else f"{key}/tcp")
    return out


def matches(
    query: Query,
    doc: dict[str, Any],
    before: str | None = None,
    since: str | None = None,
) -> bool:
    """Whether a container document passes every filter.

    ``before``/``since`` are the ``Created`` times of the resolved reference
    containers (the caller resolves the references).
    """
    state = doc.get("State") or {}
    status = derive_status(state)
    f = query.filters
    if not query.all and status not in RUNNING_STATUSES:
        return False
    if "status" in f and status not in f["status"]:
        return False
    if "id" in f and not _match_any(f["id"], (doc["Id"],)):
        return False
    if "name" in f:
        name = doc.get("Name") or ""
        bare = name[1:] if name.startswith("/") else name
        if not _match_any(f["name"], (bare, "/" + bare)):
            return False
    if "label" in f:
        labels = (doc.get("Config") or {}).get("Labels") or {}
        for lbl in f["label"]:
            k, sep, v = lbl.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
    if query.exited:
        started = state.get("StartedAt") or ZERO_TIME
        if state.get("Running") or started == ZERO_TIME or state.get("ExitCode") not in query.exited:
            return False
    if "ancestor" in f:
        image = (doc.get("Config") or {}).get("Image") or ""
        image_id = doc.get("Image") or ""
        if not any(_ancestor_match(a, image, image_id) for a in f["ancestor"]):
            return False
    if "health" in f:
        h = state.get("Health")
        hs = h.get("Status") if isinstance(h, dict) else "none"
        if hs not in f["health"]:
            return False
    if "network" in f:
        nets = (doc.get("NetworkSettings") or {}).get("Networks") or {}
        if not any(
            n in nets or any(
                isinstance(s, dict) and str(s.get("NetworkID") or "").startswith(n)
                for s in nets.values()
            )
            for n in f["network"]
        ):
            return False
    if "volume" in f:
        mounts = doc.get("Mounts") or []
        if not any(
            isinstance(m, dict) and v in (m.get("Name"), m.get("Destination"), m.get("Source"))
            for v in f["volume"] for m in mounts
        ):
            return False
    if query.publish and not (query.publish & published_ports(doc)):
        return False
    if query.expose and not (query.expose & exposed_ports(doc)):
        return False
    if "is-task" in f:
        managed = TASK_LABEL in ((doc.get("Config") or {}).get("Labels") or {})
        if ("true" in f["is-task"]) != managed and ("false" in f["is-task"]) == managed:
            return False
    if "isolation" in f:
        iso = (doc.get("HostConfig") or {}).get("Isolation") or "default"
        if iso not in f["isolation"]:
            return False
    created = doc.get("Created") or ""
    if before is not None and not created < before:
        return False
    if since is not None and not created > since:
        return False
    return True


def _ancestor_match(a: str, image: str, image_id: str) -> bool:
    if a == image or (not _has_tag(a) and image == a + ":latest"):
        return True
    if a.endswith(":latest") and not _has_tag(image) and image + ":latest" == a:
        return True
    if image_id:
        if a.startswith("sha256:"):
            return image_id.startswith(a)
        if _HEX_RE.fullmatch(a):
            return image_id.startswith("sha256:" + a) or image_id.startswith(a)
    return False


def sort_key(doc: dict[str, Any]) -> tuple[str, str]:
    """Newest first when used with ``reverse=True`` (ties broken by ID)."""
    return (str(doc.get("Created") or ""), str(doc.get("Id") or ""))
