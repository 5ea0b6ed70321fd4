"""The codec (pure): encode/decode, corruption handling, schema upgrades."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from statestore import (
    Container,
    CorruptRecordError,
    ExecConfig,
    InvalidArgumentError,
    SchemaVersionError,
    _codec,
    _filters,
    _indexes,
)

ID_A = "a" * 64
ID_B = "b" * 64
CKEY = "ss:{t}:c:" + ID_A
XKEY = "ss:{t}:x:" + ID_B


def _container() -> Container:
    c = Container.new("nginx:1.27", name="web", id=ID_A, labels={"app": "web", "ünï": "cödé ✓"},
                      cmd=["nginx"], exposed_ports=["80/tcp"])
    c.state.set_running(pid=12, at="2024-01-01T00:00:00.000000000Z")
    return c


def _exec() -> ExecConfig:
    return ExecConfig.new(ID_A, ["sh", "-c", "true"], id=ID_B)


def _bytes(doc: Any) -> bytes:
    return orjson.dumps(doc)


# --- round trip ------------------------------------------------------------------------------


def test_container_round_trip() -> None:
    c = _container()
    raw = _codec.encode(c)
    assert isinstance(raw, bytes)
    assert raw == orjson.dumps(c.to_dict())
    back = _codec.decode("container", CKEY, raw)
    assert isinstance(back, Container)
    assert back == c and back is not c
    assert back.to_dict() == c.to_dict()
    assert back.status == "running" and back.labels["ünï"] == "cödé ✓"


def test_decode_accepts_str() -> None:
    c = _container()
    back = _codec.decode("container", CKEY, _codec.encode(c).decode())
    assert back == c


def test_exec_round_trip() -> None:
    x = _exec()
    back = _codec.decode("exec", XKEY, _codec.encode(x))
    assert isinstance(back, ExecConfig)
    assert back == x


def test_decode_returns_fresh_objects() -> None:
    raw = _codec.encode(_container())
    a = _codec.decode("container", CKEY, raw)
    b = _codec.decode("container", CKEY, raw)
    a.labels["x"] = "y"
    assert "x" not in b.labels


def test_encode_keeps_key_order() -> None:
    raw = _codec.encode(_container())
    keys = list(orjson.loads(raw))
    assert keys[:3] == ["Id", "Created", "Path"]
    assert keys[-1] == "StateStore"


def test_encode_refuses_oversize_records() -> None:
    c = _container()
    size = len(_codec.encode(c))
    assert _codec.encode(c, max_bytes=size) == _codec.encode(c)
    with pytest.raises(InvalidArgumentError, match="record cap"):
        _codec.encode(c, max_bytes=size - 1)


def test_default_cap_is_one_mebibyte() -> None:
    c = _container()
    c.config.env = [f"E{i}={'y' * 60_000}" for i in range(20)]  # about 1.2 MB
    with pytest.raises(InvalidArgumentError):
        _codec.encode(c)
    c.config.env = [f"E{i}={'y' * 60_000}" for i in range(15)]  # about 0.9 MB
    assert len(_codec.encode(c)) < 1 << 20
    assert _codec.DEFAULT_MAX_RECORD_BYTES == 1 << 20


# --- corruption ------------------------------------------------------------------------------


def _assert_corrupt(kind: str, key: str, raw: bytes | str, match: str | None = None, **kw: Any) -> CorruptRecordError:
    with pytest.raises(CorruptRecordError, match=match) as ei:
        _codec.decode(kind, key, raw, **kw)
    assert ei.value.key == key
    assert key in str(ei.value)
    return ei.value


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b"{'a': 1}", b'{"a":1}{', b"[1,]",
                                 b'{"Id": "\\ud800"}', b"\x00"])
def test_garbage_is_corrupt(raw: bytes) -> None:
    _assert_corrupt("container", CKEY, raw, "invalid JSON")


@pytest.mark.parametrize("value", [[], [1, 2], 1, 1.5, "s", None, True])
def test_non_objects_are_corrupt(value: Any) -> None:
    err = _assert_corrupt("container", CKEY, _bytes(value), "expected a JSON object")
    assert err.reason.startswith("expected a JSON object")


def test_oversize_values_are_refused_before_parsing() -> None:
    raw = _codec.encode(_container())
    assert _codec.decode("container", CKEY, raw, max_bytes=len(raw)).id == ID_A
    _assert_corrupt("container", CKEY, raw, "record cap", max_bytes=len(raw) - 1)
    # even garbage is refused for its size, not its content
    _assert_corrupt("container", CKEY, b"x" * 100, "over the 10-byte record cap", max_bytes=10)


def test_nesting_deeper_than_the_parser_limit_is_corrupt() -> None:
    _assert_corrupt("container", CKEY, b"[" * 5000 + b"]" * 5000)
    deep = b'{"a":' * 3000 + b"1" + b"}" * 3000
    _assert_corrupt("container", CKEY, deep)


def test_wrong_kind_is_corrupt() -> None:
    raw = _codec.encode(_container())
    _assert_corrupt("exec", "ss:{t}:x:" + ID_A, raw, "does not describe a exec")
    raw_x = _codec.encode(_exec())
    _assert_corrupt("container", "ss:{t}:c:" + ID_B, raw_x, "does not describe a container")


def test_id_must_match_the_key() -> None:
    raw = _codec.encode(_container())
    _assert_corrupt("container", "ss:{t}:c:" + ID_B, raw, "does not match the key")
    _assert_corrupt("exec", "ss:{t}:x:" + ID_A, _codec.encode(_exec()), "does not match the key")


@pytest.mark.parametrize("rid", [None, 5, "", "abc", "A" * 64, ["x"]])
def test_malformed_id_is_corrupt(rid: Any) -> None:
    doc = _container().to_dict()
    doc["Id"] = rid
    _assert_corrupt("container", CKEY, _bytes(doc), "does not match the key")


@pytest.mark.parametrize(
    "meta",
    [[], "x", 1, {"Schema": "1"}, {"Schema": None}, {"Kind": "container", "Version": 0}, {"Schema": 1.5}],
)
def test_malformed_statestore_block_is_corrupt(meta: Any) -> None:
    doc = _container().to_dict()
    doc["StateStore"] = meta
    _assert_corrupt("container", CKEY, _bytes(doc))


@pytest.mark.parametrize("version", [None, "1", 1.0, True, [1]])
def test_non_integer_version_is_corrupt(version: Any) -> None:
    doc = _container().to_dict()
    doc["StateStore"]["Version"] = version
    _assert_corrupt("container", CKEY, _bytes(doc), "does not describe")


# regression: the fast path compared Schema with '==', so Schema true and Schema 1.0 were taken for schema 1
@pytest.mark.parametrize("schema", [True, 1.0])
def test_non_integer_schema_is_corrupt(schema: Any) -> None:
    doc = _container().to_dict()
    doc["StateStore"]["Schema"] = schema
    _assert_corrupt("container", CKEY, _bytes(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(Name="/bad name"),
        lambda d: d.pop("Name"),
        lambda d: d.update(State="running"),
        lambda d: d.update(Config=None),
        lambda d: d["Config"].update(Labels={"a": 1}),
        lambda d: d["Config"].update(Image=5),
        lambda d: d.update(Created=None),
        lambda d: d.update(NetworkSettings={"Networks": ["x"]}),
        lambda d: d.update(ExecIDs=[1]),
    ],
)
def test_container_shape_errors_are_corrupt_not_invalid_argument(mutate: Any) -> None:
    doc = _container().to_dict()
    mutate(doc)
    err = _assert_corrupt("container", CKEY, _bytes(doc))
    assert not isinstance(err, SchemaVersionError)


# regression: decode validated only containers; an exec whose ContainerID is not an ID or whose ProcessConfig
# is not an object decoded without error
@pytest.mark.parametrize("mutate", [lambda d: d.update(ContainerID="web"), lambda d: d.update(ProcessConfig=5)])
def test_exec_shape_errors_are_corrupt(mutate: Any) -> None:
    doc = _exec().to_dict()
    mutate(doc)
    _assert_corrupt("exec", XKEY, _bytes(doc))


# --- schema upgrades ---------------------------------------------------------------------------


def _bare_inspect() -> dict[str, Any]:
    doc = _container().to_dict()
    del doc["StateStore"]
    return doc


def test_schema_0_bare_inspect_document_upgrades_to_1() -> None:
    raw = _bytes(_bare_inspect())
    c = _codec.decode("container", CKEY, raw)
    assert c.to_dict()["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 0}
    assert c.version == 0
    assert c.name == "web" and c.status == "running"
    # the stored bytes are not touched by reading; re-encoding writes schema 1
    assert b"StateStore" not in raw
    again = _codec.decode("container", CKEY, _codec.encode(c))
    assert again == c


def test_explicit_schema_0_block_upgrades_too() -> None:
    doc = _container().to_dict()
    doc["StateStore"] = {"Schema": 0, "Kind": "container", "Version": 5}
    c = _codec.decode("container", CKEY, _bytes(doc))
    assert c.to_dict()["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 0}


def test_schema_0_exec_upgrades() -> None:
    doc = _exec().to_dict()
    del doc["StateStore"]
    x = _codec.decode("exec", XKEY, _bytes(doc))
    assert x.to_dict()["StateStore"] == {"Schema": 1, "Kind": "exec", "Version": 0}


def test_schema_0_container_read_as_exec_is_corrupt() -> None:
    _assert_corrupt("exec", "ss:{t}:x:" + ID_A, _bytes(_bare_inspect()), "does not match the key")


@pytest.mark.parametrize("schema", [2, 3, 1000])
def test_newer_schema_raises_schema_version_error(schema: int) -> None:
    doc = _container().to_dict()
    doc["StateStore"]["Schema"] = schema
    with pytest.raises(SchemaVersionError) as ei:
        _codec.decode("container", CKEY, _bytes(doc))
    err = ei.value
    assert isinstance(err, CorruptRecordError)
    assert (err.found, err.supported, err.key) == (schema, 1, CKEY)
    assert "upgrade statestore" in str(err)


@pytest.mark.parametrize("schema", [-1, -100])
def test_negative_schema_has_no_upgrade_path(schema: int) -> None:
    doc = _container().to_dict()
    doc["StateStore"]["Schema"] = schema
    _assert_corrupt("container", CKEY, _bytes(doc), f"no upgrade path from schema {schema}")


def test_upgrade_chain_runs_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register a 1 -> 2 and a 2 -> 3 step and pretend the current schema is 3.

    ``_codec`` imports SCHEMA_VERSION into its own namespace and reads it at call
    time, and UPGRADES is a plain module-level dict, so both can be patched.
    """
    calls: list[tuple[int, str]] = []

    def one_to_two(doc: dict[str, Any], kind: str) -> dict[str, Any]:
        calls.append((1, kind))
        doc["StateStore"]["Schema"] = 2
        doc["Labels2"] = dict(doc["Config"]["Labels"])
        return doc

    def two_to_three(doc: dict[str, Any], kind: str) -> dict[str, Any]:
        calls.append((2, kind))
        assert doc["StateStore"]["Schema"] == 2 and "Labels2" in doc  # runs after step 1
        doc["StateStore"]["Schema"] = 3
        doc["Upgraded"] = True
        return doc

    monkeypatch.setattr(_codec, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(_codec.UPGRADES, 1, one_to_two)
    monkeypatch.setitem(_codec.UPGRADES, 2, two_to_three)

    # from a bare schema-0 document: 0 -> 1 -> 2 -> 3
    c = _codec.decode("container", CKEY, _bytes(_bare_inspect()))
    d = c.to_dict()
    assert calls == [(1, "container"), (2, "container")]
    assert d["StateStore"] == {"Schema": 3, "Kind": "container", "Version": 0}
    assert d["Labels2"] == {"app": "web", "ünï": "cödé ✓"} and d["Upgraded"] is True

    # from schema 2: only the last step
    calls.clear()
    doc = _container().to_dict()
    doc["StateStore"]["Schema"] = 2
    doc["Labels2"] = {}
    doc["StateStore"]["Version"] = 4
    c = _codec.decode("container", CKEY, _bytes(doc))
    assert calls == [(2, "container")]
    assert c.version == 4 and c.to_dict()["Upgraded"] is True

    # current schema: no step at all
    calls.clear()
    doc["StateStore"]["Schema"] = 3
    _codec.decode("container", CKEY, _bytes(doc))
    assert calls == []

    # still newer than current
    doc["StateStore"]["Schema"] = 4
    with pytest.raises(SchemaVersionError):
        _codec.decode("container", CKEY, _bytes(doc))


def test_a_missing_step_in_the_chain_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(_codec.UPGRADES, 1, lambda doc, kind: doc)  # no 2 -> 3 step registered
    doc = _container().to_dict()
    _assert_corrupt("container", CKEY, _bytes(doc), "no upgrade path from schema 2")


def test_upgrade_result_is_still_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    def breaks_the_name(doc: dict[str, Any], kind: str) -> dict[str, Any]:
        doc["StateStore"]["Schema"] = 2
        doc["Name"] = "/not a name"
        return doc

    monkeypatch.setattr(_codec, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(_codec.UPGRADES, 1, breaks_the_name)
    _assert_corrupt("container", CKEY, _codec.encode(_container()), "Invalid container name")


def _docker_inspect() -> dict[str, Any]:
    """A ``docker inspect`` document as Docker 27 prints it (abridged only in string values)."""
    return {
        "Id": ID_A,
        "Created": "2024-06-01T09:30:00.123456789Z",
        "Path": "/docker-entrypoint.sh",
        "Args": ["nginx", "-g", "daemon off;"],
        "State": {
            "Status": "running", "Running": True, "Paused": False, "Restarting": False, "OOMKilled": False,
            "Dead": False, "Pid": 4242, "ExitCode": 0, "Error": "",
            "StartedAt": "2024-06-01T09:30:01.5Z", "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": [
                {"Start": "2024-06-01T09:31:00Z", "End": "2024-06-01T09:31:00.1Z", "ExitCode": 0, "Output": "ok"}]},
        },
        "Image": "sha256:" + "c" * 64,
        "ResolvConfPath": "/var/lib/docker/containers/x/resolv.conf",
        "HostnamePath": "/var/lib/docker/containers/x/hostname",
        "HostsPath": "/var/lib/docker/containers/x/hosts",
        "LogPath": "/var/lib/docker/containers/x/x-json.log",
        "Name": "/web",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "docker-default",
        "ExecIDs": None,
        "HostConfig": {
            "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
            "NetworkMode": "bridge",
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
            "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "Dns": [], "ExtraHosts": None,
            "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
            "Tmpfs": None, "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0,
            "Memory": 0, "NanoCpus": 0, "Ulimits": None, "MaskedPaths": ["/proc/asound"],
        },
        "GraphDriver": {"Data": {"MergedDir": "/var/lib/docker/overlay2/x/merged"}, "Name": "overlay2"},
        "Mounts": [{"Type": "volume", "Name": "data", "Source": "/var/lib/docker/volumes/data/_data",
                    "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}],
        "Config": {
            "Hostname": "aaaaaaaaaaaa", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
            "AttachStderr": True, "ExposedPorts": {"80/tcp": {}}, "Tty": False, "OpenStdin": False,
            "StdinOnce": False, "Env": ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=1.27.0"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]},
            "Image": "nginx:1.27", "Volumes": None, "WorkingDir": "", "Entrypoint": ["/docker-entrypoint.sh"],
            "OnBuild": None, "Labels": {"maintainer": "NGINX Docker Maintainers"}, "StopSignal": "SIGQUIT",
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "d" * 64, "SandboxKey": "/var/run/docker/netns/d", "HairpinMode": False,
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
                      "443/tcp": None},
            "SecondaryIPAddresses": None, "EndpointID": "e" * 64, "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2",
            "Networks": {"bridge": {
                "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "02:42:ac:11:00:02",
                "DriverOpts": None, "NetworkID": "f" * 64, "EndpointID": "e" * 64, "Gateway": "172.17.0.1",
                "IPAddress": "172.17.0.2", "IPPrefixLen": 16, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DNSNames": None}},
        },
    }


def test_a_real_docker_inspect_document_imports_as_schema_0() -> None:
    raw = _bytes(_docker_inspect())
    c = _codec.decode("container", CKEY, raw)
    d = c.to_dict()
    assert d["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 0}
    assert {k: v for k, v in d.items() if k != "StateStore"} == _docker_inspect()  # nothing else touched
    assert (c.name, c.status, c.state.pid, c.config.image) == ("web", "running", 4242, "nginx:1.27")
    h = c.state.health
    assert h is not None and h.status == "healthy"
    entries = _indexes.container_entries(d)
    assert entries["network"] == {f"bridge\x00{ID_A}", f"{'f' * 64}\x00{ID_A}"}
    for filters in ({"expose": "80"}, {"ancestor": "nginx:1.27"}, {"ancestor": "cccc"}, {"network": "fff"},
                    {"volume": "data"}, {"health": "healthy"}, {"label": "maintainer"}, {"status": "running"},
                    {"name": "web"}):
        assert _filters.matches(_filters.make_query(filters), d), filters


# regression: the write path accepted documents nested up to orjson's 254-level write limit while decode refuses
# more than _codec.MAX_DEPTH (200) levels, so a record nested 201-254 deep was stored and then unreadable
def test_every_storable_record_can_be_read_back_whatever_its_depth() -> None:
    doc = _container().to_dict()
    deep: Any = 1
    for _ in range(_codec.MAX_DEPTH + 20):
        deep = [deep]
    doc["Annotations"] = deep
    try:
        rec = Container.from_dict(doc)
        raw = _codec.encode(rec)
    except InvalidArgumentError:
        return  # refusing it on the way in is fine
    assert _codec.decode("container", CKEY, raw) == rec


def test_records_within_the_depth_limit_round_trip() -> None:
    doc = _container().to_dict()
    deep: Any = 1
    for _ in range(_codec.MAX_DEPTH - 10):
        deep = {"k": deep}
    doc["Annotations"] = deep
    rec = Container.from_dict(doc)
    assert _codec.decode("container", CKEY, _codec.encode(rec)) == rec
