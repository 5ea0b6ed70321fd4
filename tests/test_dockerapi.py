"""The Engine API's pure rules (statestore.daemon.dockerapi), without Redis or HTTP: parameters, versions,
shapes, error statuses and the docker events messages of change-log entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from statestore import (
    AmbiguousReferenceError,
    Container,
    Event,
    ExecConfig,
    InvalidArgumentError,
    InvalidStateError,
    LockTimeoutError,
    NameInUseError,
    NotFoundError,
    StoreUnavailableError,
)
from statestore.daemon import dockerapi as d
from statestore.daemon.dockerapi import ApiError


def raises(status: int, fn: object, *args: object) -> ApiError:
    with pytest.raises(ApiError) as ei:
        fn(*args)  # type: ignore[operator]
    assert ei.value.status == status
    return ei.value


def test_booleans_are_parsed_as_moby_does() -> None:
    for false in ("", "0", "no", "FALSE", "None", " false "):
        assert d.boolean({"all": false}, "all", default=True) is False
    for true in ("1", "true", "yes", "x", "2"):
        assert d.boolean({"all": true}, "all") is True
    assert d.boolean({}, "all") is False and d.boolean({}, "all", default=True) is True


def test_filters_take_the_map_and_the_list_forms() -> None:
    assert d.filters('{"name":{"web":true,"db":false}}') == {"name": ["web"]}
    assert d.filters('{"label":["a=b","c"]}') == {"label": ["a=b", "c"]}
    assert d.filters('{"status":"running"}') == {"status": ["running"]}
    assert d.filters(None) == {} and d.filters("") == {} and d.filters('{"name":{}}') == {}
    for bad in ("{bad", "[1]", '{"name":1}', '{"label":[1]}'):
        raises(400, d.filters, bad)


def test_versions_signals_times_and_integers() -> None:
    d.check_version(None)
    d.check_version("1.24")
    d.check_version("1.50")
    assert "client version 1.23 is too old. Minimum supported API version is 1.24" in raises(
        400, d.check_version, "1.23").message  # type: ignore[operator]
    raises(400, d.check_version, "1.51")
    assert d.signal_number("SIGHUP") == 1 and d.signal_number("hup") == 1 and d.signal_number("9") == 9
    assert d.signal_number(None, "SIGTERM") == 15 and d.signal_number("", "SIGKILL") == 9
    for bad in ("SIGNOPE", "0", "99", "-1"):
        assert raises(400, d.signal_number, bad).message == f"Invalid signal: {bad}"
    assert d.event_time("1733300000", "since") == 1733300000 * 10**9
    assert d.event_time("1733300000.5", "since") == 1733300000 * 10**9 + 500_000_000
    assert d.event_time("1733300000.000000001", "until") == 1733300000 * 10**9 + 1
    for bad in ("10m", "2024-01-01", "1.1234567891", ""):
        raises(400, d.event_time, bad, "since")
    assert d.integer({"limit": "3"}, "limit") == 3 and d.integer({}, "limit", 7) == 7
    raises(400, d.integer, {"limit": "x"}, "limit")


def test_names_and_image_ids() -> None:
    assert d.check_name("web-1.a_b") == "web-1.a_b" and d.check_name("/web") == "/web"
    for bad in ("a", "-web", "bad name", "web!", ""):
        assert "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" in str(raises(400, d.check_name, bad).message)
    assert d.image_id("busybox") == d.image_id("busybox") != d.image_id("busybox:1.36")
    assert d.image_id("busybox").startswith("sha256:") and len(d.image_id("x")) == 7 + 64


def test_store_errors_get_mobys_statuses() -> None:
    cid = "a" * 64
    cases = [
        (NotFoundError("container", "web"), 404, "No such container: web"),
        (NameInUseError("web", cid), 409, None),
        (AmbiguousReferenceError("container", "ab"), 404, None),
        (InvalidArgumentError("bad"), 400, "bad"),
        (InvalidStateError(cid, "start", "paused", "running"), 409, None),
        (StoreUnavailableError("down"), 503, None),
    ]
    for exc, status, text in cases:
        got = d.from_store_error(exc)
        assert got.status == status and (text is None or got.message == text)
    busy = d.from_store_error(LockTimeoutError(cid, 1.0, {"replica": "r1", "pid": 7, "host": "h", "token": 3}))
    assert busy.status == 409 and "is busy" in str(busy.message) and "held by replica r1" in str(busy.message)


def test_a_summary_is_what_docker_ps_reads() -> None:
    c = Container.new("nginx:1.27", name="web", labels={"a": "b"}, cmd=["nginx", "-g", "daemon off;"],
                      exposed_ports=["443/tcp"], port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                      image_id=d.image_id("nginx:1.27"))
    c.state.set_running(pid=3)
    now = datetime.now(UTC) + timedelta(seconds=5)
    s = d.summary(c, now)
    assert s["Id"] == c.id and s["Names"] == ["/web"] and s["Image"] == "nginx:1.27"
    assert s["ImageID"] == d.image_id("nginx:1.27") and s["Command"] == "nginx -g daemon off;"
    assert s["State"] == "running" and s["Status"] == "Up 5 seconds" and s["Labels"] == {"a": "b"}
    assert isinstance(s["Created"], int) and abs(s["Created"] - now.timestamp() + 5) < 2
    assert s["Ports"] == [{"PrivatePort": 443, "Type": "tcp"},
                          {"IP": "0.0.0.0", "PrivatePort": 80, "Type": "tcp", "PublicPort": 8080}]
    assert "SizeRw" not in s and d.summary(c, now, size=True)["SizeRw"] == 0
    fixed = d.summary_fixed(c)
    assert d.summary(c, now, fixed=fixed) == s and fixed["Status"] == "" and fixed["State"] == "running"
    later = d.summary(c, now + timedelta(minutes=3), fixed=fixed)
    assert later["Status"] == "Up 3 minutes" and fixed["Status"] == ""  # the cached part is not changed
    orjson.dumps(s)  # plain JSON


def test_inspect_drops_statestores_own_keys_and_adds_what_clients_read() -> None:
    c = Container.new("busybox", name="web")
    doc = d.inspect(c)
    assert "StateStore" not in doc and doc["State"]["Status"] == "created"
    assert doc["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert "StateStore" in c.to_dict()  # the record itself is untouched
    x = ExecConfig.new(c.id, ["sh", "-c", "true"])
    assert "StateStore" not in d.exec_inspect(x) and d.exec_command(x) == "sh -c true"


def _event(etype: str, record: Container | ExecConfig, action: str = "", previous: tuple[str, dict[str, str]]
           | None = None, kind: str = "container", container_id: str = "") -> Event:
    rid = record.id
    return Event(etype, kind, rid, record.name if isinstance(record, Container) else "",
                 container_id or rid, 1, "", "1733300000123-0", 5, record, b"", previous, action)


def test_change_log_entries_become_mobys_event_messages() -> None:
    c = Container.new("busybox", name="web", labels={"team": "blue"})
    c.state.set_running(pid=4)
    c.state.set_stopped(0)
    (create,) = d.event_messages(_event("create", c), lambda _: None)
    assert create == {
        "status": "create", "id": c.id, "from": "busybox", "Type": "container", "Action": "create",
        "Actor": {"ID": c.id, "Attributes": {"team": "blue", "image": "busybox", "name": "web"}},
        "scope": "local", "time": 1733300000, "timeNano": 1733300000123 * 10**6}
    stop = d.event_messages(_event("update", c, "kill=15,die,stop"), lambda _: None)
    assert [(m["Action"], m["Actor"]["Attributes"].get("signal"), m["Actor"]["Attributes"].get("exitCode"))
            for m in stop] == [("kill", "15", None), ("die", None, "0"), ("stop", None, None)]
    assert d.event_messages(_event("update", c), lambda _: None) == []  # no action: no Docker event
    (destroy,) = d.event_messages(_event("delete", c), lambda _: None)
    assert destroy["Action"] == "destroy"
    (ren,) = d.event_messages(_event("update", c, "rename", ("old", {})), lambda _: None)
    assert ren["Actor"]["Attributes"]["oldName"] == "/old"
    x = ExecConfig.new(c.id, ["sh", "-c", "echo hi"])
    made = d.event_messages(_event("create", x, kind="exec", container_id=c.id), lambda cid: c)
    assert [m["Action"] for m in made] == ["exec_create: sh -c echo hi"]
    assert made[0]["Actor"]["ID"] == c.id and made[0]["Actor"]["Attributes"]["execID"] == x.id
    assert made[0]["Actor"]["Attributes"]["name"] == "web"
    x._d["ExitCode"] = 3
    (died,) = d.event_messages(_event("update", x, "exec_die", kind="exec", container_id=c.id), lambda cid: None)
    assert died["Action"] == "exec_die" and died["Actor"]["Attributes"]["exitCode"] == "3"
    assert d.event_messages(_event("delete", x, kind="exec", container_id=c.id), lambda cid: c) == []


def test_event_filters() -> None:
    c = Container.new("busybox:1.36", name="web", labels={"team": "blue"})
    msgs = d.event_messages(_event("update", c, "kill=9,die"), lambda _: None)
    x = ExecConfig.new(c.id, ["true"])
    msgs += d.event_messages(_event("create", x, kind="exec", container_id=c.id), lambda _: c)

    def pick(f: dict[str, list[str]]) -> list[str]:
        ok = d.event_filter(f)
        return [m["Action"] for m in msgs if ok(m)]

    assert pick({}) == ["kill", "die", "exec_create: true"]
    assert pick({"event": ["die", "exec_create"]}) == ["die", "exec_create: true"]
    assert pick({"container": ["web"]}) == pick({"container": [c.id[:6]]}) == pick({})
    assert pick({"container": ["nope"]}) == [] and pick({"container": ["we"]}) == pick({})  # prefixes, as moby
    assert pick({"image": ["busybox"]}) == pick({"image": ["busybox:1.36"]}) == pick({})
    assert pick({"label": ["team=blue"]}) == pick({}) and pick({"label": ["team=red"]}) == []
    assert pick({"type": ["network"]}) == [] and pick({"scope": ["local"]}) == pick({})
    raises(400, d.event_filter, {"bogus": ["x"]})


def test_prune_until_reads_durations_times_and_unix_seconds() -> None:
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert d.prune_until("1h", now) == int(now.timestamp() - 3600) * 10**9
    assert d.prune_until("1733300000", now) == 1733300000 * 10**9
    assert d.prune_until("2026-12-06T11:00:00Z", now) == int(now.timestamp() - 3600) * 10**9
    raises(400, d.prune_until, "soon", now)
