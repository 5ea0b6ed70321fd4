"""``docker ps`` against a real Redis: every filter on real data, ordering, limits, selectivity.

One module-wide scenario of nine containers covers every status.  Each query
is checked three ways: the store's answer (index planning + Lua fetch +
in-memory matching), the expected names, and a snapshot's answer (pure
in-memory matching), which must agree with the store.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis

from statestore import Container, InvalidArgumentError, NotFoundError, Store
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess

BASE_NS = 1_800_000_000_000_000_000  # creation times are fixed, one second apart
IMAGE_ID = "sha256:" + "a1" * 32
WEB_NET = "f00d" * 16
DB_NET = "beef" * 16

_module_ns = itertools.count()


def cid(n: int) -> str:
    return f"{n:x}" * 64


def _scenario(store: Store) -> dict[str, Container]:
    tick = itertools.count(1)

    def make(name: str, image: str, n: int, **kw: Any) -> Container:
        at = BASE_NS + next(tick) * 1_000_000_000
        return store.containers.create(Container.new(image, name=name, id=cid(n), clock=lambda: at, **kw))

    def up(name: str, *steps: Any) -> None:
        def apply(c: Container) -> None:
            for step in steps:
                step(c)
        store.containers.update(name, apply)

    run = lambda c: c.state.set_running(pid=1000)  # noqa: E731
    make("web", "nginx:1.27", 1, labels={"app": "web", "tier": "front"}, image_id=IMAGE_ID,
         exposed_ports=["80/tcp"], port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
         networks={"frontnet": {"NetworkID": WEB_NET}},
         mounts=[{"Type": "volume", "Name": "webdata", "Source": "/var/lib/docker/volumes/webdata/_data",
                  "Destination": "/data"}])
    up("web", run)
    make("db", "postgres:16", 2, labels={"app": "db", "tier": "back"},
         networks={"backnet": {"NetworkID": DB_NET}},
         mounts=[{"Type": "bind", "Source": "/srv/pg", "Destination": "/var/lib/postgresql/data"}])
    up("db", run, lambda c: c.state.set_stopped(3))
    make("cache", "redis", 3, exposed_ports=["6379/tcp"])
    make("task", "nginx:1.27", 4, labels={"com.docker.swarm.task.id": "t1", "app": "web"}, image_id=IMAGE_ID)
    up("task", run, lambda c: c.state.set_paused())
    make("healthy", "busybox:latest", 5, labels={"app": "probe"},
         port_bindings={"53/udp": [{"HostIp": "", "HostPort": "5353"}]})
    up("healthy", run, lambda c: c.state.set_health("healthy"))
    make("sick", "busybox", 6)
    up("sick", run, lambda c: c.state.set_health("unhealthy"), lambda c: c.state.set_restarting(1))
    make("done", "alpine:3.20", 7, labels={"expr": "x=y", "ünï": "cödé"})
    up("done", run, lambda c: c.state.set_stopped(0))
    make("dead", "alpine:3.20", 8)
    up("dead", run, lambda c: c.state.set_dead())
    make("removing", "alpine:3.20", 9)
    up("removing", run, lambda c: c.state.set_stopped(0), lambda c: c.state.set_removal_in_progress())
    return {c.name: c for c in store.containers.list(all=True)}


@pytest.fixture(scope="module")
def ps(redis_proc: RedisProcess) -> Iterator[Store]:
    client = redis_proc.client()
    store = Store(client, f"ps-{next(_module_ns)}")
    made = _scenario(store)
    assert {n: c.status for n, c in made.items()} == {
        "web": "running", "db": "exited", "cache": "created", "task": "paused", "healthy": "running",
        "sick": "restarting", "done": "exited", "dead": "dead", "removing": "removing"}
    try:
        yield store
    finally:
        client.close()


NEWEST_FIRST = ["removing", "dead", "done", "sick", "healthy", "task", "cache", "db", "web"]


def names(records: Sequence[Container]) -> list[str]:
    return [c.name for c in records]


def check(store: Store, filters: Mapping[str, Any] | None, all: bool, expected: set[str]) -> list[str]:
    got = store.containers.list(filters, all=all)
    assert set(names(got)) == expected
    assert names(got) == [n for n in NEWEST_FIRST if n in expected]  # newest first
    assert not got.corrupt
    assert names(store.snapshot().list(filters, all=all)) == names(got)  # index path == memory path
    return names(got)


RUNNING = {"web", "task", "healthy", "sick"}
EVERYONE = set(NEWEST_FIRST)

CASES: list[tuple[dict[str, Any], bool, set[str]]] = [
    # label: key, key=value, several (all must hold)
    ({"label": "app"}, True, {"web", "db", "task", "healthy"}),
    ({"label": "app=web"}, True, {"web", "task"}),
    ({"label": ["app=web", "tier=front"]}, True, {"web"}),
    ({"label": ["app", "tier"]}, True, {"web", "db"}),
    ({"label": "tier=nope"}, True, set()),
    ({"label": "nosuch"}, True, set()),
    ({"label": "app"}, False, {"web", "task", "healthy"}),
    ({"label": "expr=x=y"}, True, {"done"}),  # the value may hold '='
    ({"label": "expr=x"}, True, set()),
    ({"label": "expr"}, True, {"done"}),
    ({"label": "ünï=cödé"}, True, {"done"}),
    ({"label": "ap"}, True, set()),  # a key prefix is not a key
    # status (forces all)
    ({"status": "running"}, False, {"web", "healthy"}),
    ({"status": "exited"}, False, {"db", "done"}),
    ({"status": ["created", "dead"]}, False, {"cache", "dead"}),
    ({"status": ["paused", "restarting"]}, False, {"task", "sick"}),
    ({"status": "removing"}, False, {"removing"}),
    # name: exact or unanchored regex, with or without the slash
    ({"name": "web"}, True, {"web"}),
    ({"name": "/cache"}, True, {"cache"}),
    ({"name": "^d"}, True, {"db", "done", "dead"}),
    ({"name": "^/d.a"}, True, {"dead"}),
    ({"name": ["sick", "heal"]}, True, {"sick", "healthy"}),
    ({"name": "["}, True, set()),  # an invalid expression only matches exactly
    ({"name": "^d"}, False, set()),
    # id: exact or regex
    ({"id": cid(3)}, True, {"cache"}),
    ({"id": "^5555"}, True, {"healthy"}),
    ({"id": ["^1", "^2"]}, True, {"web", "db"}),
    # exited (needs a started, non-running container)
    ({"exited": "3"}, True, {"db"}),
    ({"exited": ["3", "9"]}, True, {"db"}),
    ({"exited": "3"}, False, set()),
    # ancestor: reference, untagged means latest, image ID and its prefix
    ({"ancestor": "nginx:1.27"}, True, {"web", "task"}),
    ({"ancestor": "redis"}, True, {"cache"}),
    ({"ancestor": "busybox"}, True, {"healthy", "sick"}),
    ({"ancestor": IMAGE_ID}, True, {"web", "task"}),
    ({"ancestor": "a1a1a1"}, True, {"web", "task"}),
    ({"ancestor": "nginx"}, True, set()),
    # before / since take a reference
    ({"before": "cache"}, True, {"web", "db"}),
    ({"since": "cache"}, True, {"task", "healthy", "sick", "done", "dead", "removing"}),
    ({"since": cid(3)[:8], "before": "done"}, True, {"task", "healthy", "sick"}),
    ({"before": "cache"}, False, {"web"}),
    # health
    ({"health": "healthy"}, True, {"healthy"}),
    ({"health": "unhealthy"}, True, {"sick"}),
    ({"health": "starting"}, True, set()),
    ({"health": "none"}, True, EVERYONE - {"healthy", "sick"}),
    ({"health": ["healthy", "unhealthy"]}, False, {"healthy", "sick"}),
    # network: name or NetworkID prefix
    ({"network": "frontnet"}, True, {"web"}),
    ({"network": WEB_NET[:6]}, True, {"web"}),
    ({"network": DB_NET}, True, {"db"}),
    ({"network": "bridge"}, True, EVERYONE - {"web", "db"}),
    ({"network": "front"}, True, set()),
    # volume: name, destination or source
    ({"volume": "webdata"}, True, {"web"}),
    ({"volume": "/data"}, True, {"web"}),
    ({"volume": "/srv/pg"}, True, {"db"}),
    ({"volume": "nothing"}, True, set()),
    # publish: a container port published to the host (moby matches the container side,
    # so the host port 8080 of web's 8080->80/tcp is not a match)
    ({"publish": "80"}, True, {"web"}),
    ({"publish": "80/tcp"}, True, {"web"}),
    ({"publish": "80/udp"}, True, set()),
    ({"publish": "1-100"}, True, {"web"}),
    ({"publish": "53/udp"}, True, {"healthy"}),
    ({"publish": "53"}, True, set()),
    ({"publish": "8080"}, True, set()),
    ({"publish": "6379"}, True, set()),  # cache exposes 6379 but publishes nothing
    # expose: exposed or published container ports
    ({"expose": "80"}, True, {"web"}),
    ({"expose": "6379/tcp"}, True, {"cache"}),
    ({"expose": "53/udp"}, True, {"healthy"}),
    ({"expose": "1-100"}, True, {"web"}),
    ({"expose": "53"}, True, set()),
    # is-task
    ({"is-task": "true"}, True, {"task"}),
    ({"is-task": "false"}, True, EVERYONE - {"task"}),
    ({"is-task": "false"}, False, RUNNING - {"task"}),
    # different keys are ANDed
    ({"label": "app=web", "status": "running"}, False, {"web"}),
    ({"ancestor": "nginx:1.27", "is-task": "true"}, True, {"task"}),
    ({"network": "bridge", "status": "exited"}, False, {"done"}),
    ({"label": "app", "health": "none", "since": "web"}, True, {"db", "task"}),
]


@pytest.mark.parametrize(("filters", "all", "expected"), CASES,
                         ids=[f"{i}-{'-'.join(f)}{'-all' if a else ''}" for i, (f, a, _) in enumerate(CASES)])
def test_filter(ps: Store, filters: dict[str, Any], all: bool, expected: set[str]) -> None:
    check(ps, filters, all, expected)


def test_default_shows_running_paused_and_restarting_newest_first(ps: Store) -> None:
    assert check(ps, None, False, RUNNING) == ["sick", "healthy", "task", "web"]
    assert check(ps, {}, False, RUNNING) == ["sick", "healthy", "task", "web"]


def test_all_shows_every_status_newest_first(ps: Store) -> None:
    assert check(ps, None, True, EVERYONE) == NEWEST_FIRST


def test_limit_counts_newest_first_and_includes_every_status(ps: Store) -> None:
    assert names(ps.containers.list(limit=3)) == ["removing", "dead", "done"]
    assert names(ps.containers.list(all=True, limit=1)) == ["removing"]
    assert names(ps.containers.list({"label": "app"}, limit=2)) == ["healthy", "task"]
    assert names(ps.containers.list(limit=100)) == NEWEST_FIRST
    assert names(ps.containers.list(limit=0)) == names(ps.containers.list())  # 0 means no limit
    assert names(ps.snapshot().list(limit=3)) == ["removing", "dead", "done"]


def test_list_reports_the_log_revision(ps: Store) -> None:
    last = ps.client.xrevrange(ps.keys.log, count=1)[0][0].decode()
    assert ps.containers.list().revision == last
    assert ps.containers.list({"label": "app"}, all=True).revision == last


@pytest.mark.parametrize("filters", [
    {"colour": "red"},
    {"status": "sleeping"},
    {"health": "ok"},
    {"exited": "zero"},
    {"publish": "80:80"},
    {"publish": "0"},
    {"expose": "70000"},
    {"expose": "90-80"},
    {"is-task": "maybe"},
    {"label": ""},
    {"label": "a\x00b"},
    {"before": ""},
    {"name": "x\x00"},
])
def test_invalid_filters_are_refused_and_change_nothing(
        ps: Store, filters: dict[str, str], client: redis.Redis) -> None:
    before = dump_namespace(client, ps.namespace)
    with pytest.raises(InvalidArgumentError):
        ps.containers.list(filters)
    with pytest.raises(InvalidArgumentError):
        ps.snapshot().list(filters)
    assert dump_namespace(client, ps.namespace) == before


def test_unknown_filter_names_the_filter(ps: Store) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid filter 'colour'"):
        ps.containers.list({"colour": "red"})


@pytest.mark.parametrize("limit", [-1, "3", 1.5, True])
def test_invalid_limit(ps: Store, limit: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        ps.containers.list(limit=limit)


def test_before_and_since_need_an_existing_reference(ps: Store) -> None:
    with pytest.raises(NotFoundError, match="No such container: nosuch"):
        ps.containers.list({"before": "nosuch"})
    with pytest.raises(NotFoundError):
        ps.containers.list({"since": "ffff"})


def test_exited_filter_includes_started_dead_and_removing_containers(ps: Store) -> None:
    # regression: the planner's status=exited clause was not a superset of matches() (moby
    # only asks for !Running && StartedAt set), so list() and Snapshot.list() disagreed
    check(ps, {"exited": "0"}, True, {"done", "dead", "removing"})
    check(ps, {"exited": ["0", "3"]}, True, {"done", "dead", "removing", "db"})
    check(ps, {"exited": "0", "status": "dead"}, True, {"dead"})


# regression test (was a strict xfail before the fix)
def test_ancestor_with_latest_tag_matches_an_untagged_image(ps: Store) -> None:
    check(ps, {"ancestor": "busybox:latest"}, True, {"healthy", "sick"})


@pytest.mark.parametrize("filters", [["label=app"], "label=app", {"label": 5}, {"label": None},
                                     {"label": [5]}, {"label": {"a": "b"}}, {"label": b"app"}])
def test_malformed_filter_arguments_are_invalid_argument(ps: Store, filters: Any) -> None:
    # regression: these raised AttributeError/TypeError from _filters.make_query
    with pytest.raises(InvalidArgumentError):
        ps.containers.list(filters)


# --- selectivity: an index answers, not a scan -------------------------------------------------


@pytest.fixture(scope="module")
def crowded() -> Iterator[tuple[Store, redis.Redis]]:
    """2,000 containers on a private server (its command statistics are ours alone)."""
    server = RedisProcess().start()
    client = server.client()
    store = Store(client, "crowd")
    try:
        for i in range(2000):
            rare = i % 200 == 7  # 10 of them
            labels = {"common": "x", "rare": "yes"} if rare else {"common": "x"}
            c = store.containers.create(Container.new("nginx:1.27", name=f"c{i}", labels=labels))
            if rare and i % 400 == 7:  # 5 of the rare ones run
                store.containers.update(c.id, lambda x: x.state.set_running(pid=9))
        yield store, client
    finally:
        client.close()
        server.cleanup()


def records_read(client: redis.Redis, fn: Any) -> tuple[Any, int]:
    """Run ``fn`` and count the record GETs Redis executed for it (scripts included)."""
    client.config_resetstat()
    result = fn()
    stats = client.info("commandstats")
    assert "cmdstat_scan" not in stats and "cmdstat_keys" not in stats
    return result, int(stats.get("cmdstat_get", {}).get("calls", 0))


def test_a_label_filter_reads_only_the_labelled_records(crowded: tuple[Store, redis.Redis]) -> None:
    store, client = crowded
    # the last query has two clauses: only the smaller (rare) one is read
    for flt in ({"label": "rare"}, {"label": "rare=yes"}, {"label": ["common=x", "rare"]}):
        got, reads = records_read(client, lambda f=flt: store.containers.list(f, all=True))
        assert len(got) == 10
        assert all(c.labels == {"common": "x", "rare": "yes"} for c in got)
        assert 10 <= reads <= 12, f"{flt}: {reads} records read"


def test_default_list_reads_only_running_records(crowded: tuple[Store, redis.Redis]) -> None:
    store, client = crowded
    got, reads = records_read(client, store.containers.list)
    assert {c.name for c in got} == {f"c{i}" for i in (7, 407, 807, 1207, 1607)}
    assert 5 <= reads <= 7, reads


def test_name_and_id_filters_read_only_matching_records(crowded: tuple[Store, redis.Redis]) -> None:
    store, client = crowded
    got, reads = records_read(client, lambda: store.containers.list({"name": "^c1999$"}, all=True))
    assert names(got) == ["c1999"]
    assert reads <= 2, reads
    target = got[0].id
    got, reads = records_read(client, lambda: store.containers.list({"id": target[:16]}, all=True))
    assert [c.id for c in got] == [target]
    assert reads <= 2, reads


def test_an_unselective_query_reads_everything_once(crowded: tuple[Store, redis.Redis]) -> None:
    # the contrast that shows the counter works: 2,000 records, one GET each
    store, client = crowded
    got, reads = records_read(client, lambda: store.containers.list({"label": "common"}, all=True))
    assert len(got) == 2000
    assert reads == 2000
