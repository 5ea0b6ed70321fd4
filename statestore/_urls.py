"""Redis URLs with several hosts: Sentinel and Cluster (pure parsing, no I/O).

``redis://``, ``rediss://`` and ``unix://`` are redis-py's own.  statestore adds::

    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]
    redis+cluster://[user:password@]host[:port][,host[:port]...][/][?options]

and their TLS forms ``rediss+sentinel://`` and ``rediss+cluster://``.  The
credentials are those of the data nodes (the master and replicas, or the
cluster nodes); Sentinels take theirs from ``sentinel_username`` /
``sentinel_password``.  A Sentinel port defaults to 26379, a cluster node's
to 6379.  Options: ``socket_timeout``, ``socket_connect_timeout`` (seconds),
``sentinel_username``, ``sentinel_password`` (Sentinel only), ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (none, optional,
required).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from ._errors import InvalidArgumentError

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
_FLOAT_OPTS = ("socket_timeout", "socket_connect_timeout")
_STR_OPTS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_SENTINEL_OPTS = ("sentinel_username", "sentinel_password")
_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True)
class MultiHostURL:
    """A parsed Sentinel or Cluster URL."""

    kind: str  # "sentinel" or "cluster"
    hosts: tuple[tuple[str, int], ...]
    ssl: bool
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: connection options for the data nodes (redis-py keyword arguments)
    options: dict[str, Any] = field(default_factory=dict)
    #: connection options for the Sentinels
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def is_multi_host(url: str) -> bool:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES


def _hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: empty host in the host list")
        if part.startswith("["):  # [IPv6]:port
            host, _, rest = part[1:].partition("]")
            port_s = rest[1:] if rest.startswith(":") else ""
        elif part.count(":") == 1:
            host, port_s = part.split(":")
        else:
            host, port_s = part, ""
        if not host:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: empty host in {part!r}")
        try:
            port = int(port_s) if port_s else default_port
        except ValueError:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: bad port in {part!r}") from None
        if not 0 < port < 65536:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: port {port} out of range")
        out.append((host, port))
    return tuple(out)


def parse_multi_host(url: str) -> MultiHostURL:
    """Parse a ``redis+sentinel://`` or ``redis+cluster://`` URL; InvalidArgumentError if malformed."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidArgumentError(f"invalid Redis URL {url!r}")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme in SENTINEL_SCHEMES:
        kind, ssl, default_port = "sentinel", SENTINEL_SCHEMES[scheme], 26379
    elif scheme in CLUSTER_SCHEMES:
        kind, ssl, default_port = "cluster", CLUSTER_SCHEMES[scheme], 6379
    else:
        raise InvalidArgumentError(f"invalid Redis URL {url!r}: not a Sentinel or Cluster URL")
    # urlsplit cannot take several hosts; split the authority off by hand
    authority, sep, tail = rest.partition("/")
    path, _, query = ("/" + tail if sep else "").partition("?")
    if not sep and "?" in authority:
        authority, _, query = authority.partition("?")
    username = password = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    hosts = _hosts(authority, default_port, url)
    segments = [unquote(p) for p in path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not segments:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: the Sentinel service (master) name is missing")
        service = segments[0]
        if len(segments) > 2:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: expected /service[/db]")
        if len(segments) == 2:
            try:
                db = int(segments[1])
            except ValueError:
                raise InvalidArgumentError(f"invalid Redis URL {url!r}: bad database {segments[1]!r}") from None
            if db < 0:
                raise InvalidArgumentError(f"invalid Redis URL {url!r}: bad database {db}")
    elif segments and segments != ["0"]:
        raise InvalidArgumentError(f"invalid Redis URL {url!r}: a Redis Cluster has only database 0")
    options: dict[str, Any] = {}
    sentinel_options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key in _FLOAT_OPTS:
            try:
                seconds = float(value)
            except ValueError:
                raise InvalidArgumentError(f"invalid Redis URL {url!r}: {key} must be a number") from None
            if not seconds > 0:
                raise InvalidArgumentError(f"invalid Redis URL {url!r}: {key} must be positive")
            options[key] = seconds
            sentinel_options[key] = seconds
        elif key in _STR_OPTS:
            options[key] = value
            sentinel_options[key] = value
        elif key == "ssl_cert_reqs":
            if value not in _CERT_REQS:
                raise InvalidArgumentError(f"invalid Redis URL {url!r}: ssl_cert_reqs must be one of {_CERT_REQS}")
            options[key] = value
            sentinel_options[key] = value
        elif key in _SENTINEL_OPTS and kind == "sentinel":
            sentinel_options[key.removeprefix("sentinel_")] = value
        else:
            raise InvalidArgumentError(f"invalid Redis URL {url!r}: unknown option {key!r}")
    if ssl:
        options["ssl"] = True
        sentinel_options["ssl"] = True
    elif any(k.startswith("ssl_") for k in options):
        raise InvalidArgumentError(f"invalid Redis URL {url!r}: ssl_* options need the rediss+ scheme")
    return MultiHostURL(kind, hosts, ssl, service, db, username, password, options, sentinel_options)


__all__ = ["MultiHostURL", "is_multi_host", "parse_multi_host"]
