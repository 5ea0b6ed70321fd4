"""Sentinel and Cluster URLs: parsing is pure; bad URLs are typed errors and touch nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InvalidArgumentError, Store
from statestore._urls import is_multi_host, parse_multi_host


def test_sentinel_url_with_several_hosts_service_and_db() -> None:
    u = parse_multi_host("redis+sentinel://app:s%40cret@h1:26379,h2:26380,h3/mymaster/2?socket_timeout=0.5")
    assert u.kind == "sentinel" and not u.ssl
    assert u.hosts == (("h1", 26379), ("h2", 26380), ("h3", 26379))
    assert (u.service, u.db, u.username, u.password) == ("mymaster", 2, "app", "s@cret")
    assert u.options == {"socket_timeout": 0.5}
    assert u.sentinel_options == {"socket_timeout": 0.5}


def test_sentinel_credentials_and_tls_options() -> None:
    u = parse_multi_host("rediss+sentinel://:pw@[::1]:5000/m?sentinel_password=spw&sentinel_username=sen"
                         "&ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    assert u.ssl and u.hosts == (("::1", 5000),)
    assert u.username is None and u.password == "pw" and u.db == 0
    assert u.options == {"ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required"}
    assert u.sentinel_options == {"ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required",
                                  "password": "spw", "username": "sen"}


def test_cluster_url() -> None:
    u = parse_multi_host("redis+cluster://n1:7000,n2")
    assert u.kind == "cluster" and u.hosts == (("n1", 7000), ("n2", 6379)) and u.service == ""
    assert parse_multi_host("rediss+cluster://n1:7000/0").ssl
    assert is_multi_host("REDIS+CLUSTER://x") and is_multi_host("redis+sentinel://x/m")
    assert not is_multi_host("redis://x") and not is_multi_host("nonsense")


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://h1:26379", "service"),
    ("redis+sentinel://h1/m/x", "database"),
    ("redis+sentinel://h1/m/0/extra", "expected /service"),
    ("redis+sentinel://h1:notaport/m", "bad port"),
    ("redis+sentinel://h1:70000/m", "out of range"),
    ("redis+sentinel://h1,,h2/m", "empty host"),
    ("redis+sentinel://h1/m?socket_timeout=-1", "positive"),
    ("redis+sentinel://h1/m?socket_timeout=abc", "number"),
    ("redis+sentinel://h1/m?bogus=1", "unknown option"),
    ("redis+sentinel://h1/m?ssl_ca_certs=/x", "rediss+"),
    ("rediss+sentinel://h1/m?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ("redis+cluster://h1/3", "database 0"),
    ("redis+cluster://h1?sentinel_password=x", "unknown option"),
    ("redis+cluster://:7000", "empty host"),
])
def test_malformed_urls_are_invalid_argument_errors(url: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError, match=why):
        parse_multi_host(url)
    with pytest.raises(InvalidArgumentError):
        Store.from_url(url, namespace="u")  # refused before any connection is made


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_string_parses_or_raises_invalid_argument(tail: str) -> None:
    for scheme in ("redis+sentinel://", "rediss+cluster://"):
        try:
            u = parse_multi_host(scheme + tail)
        except InvalidArgumentError:
            continue
        assert u.hosts and all(h and 0 < p < 65536 for h, p in u.hosts)
        assert u.kind in ("sentinel", "cluster")
