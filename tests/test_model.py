"""Records (pure, no Redis): Container.new, identifiers, names, inspect shape, copies, from_dict."""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from statestore import Container, ExecConfig, InvalidArgumentError, _codec, _model, _names

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HEX64 = re.compile(r"[0-9a-f]{64}")
ZERO_TIME = "0001-01-01T00:00:00Z"
ID_A = "a" * 64
ID_B = "b" * 64


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- IDs ------------------------------------------------------------------------------


def test_new_generates_64_hex_ids_whose_short_form_is_not_a_number() -> None:
    ids = {Container.new("nginx").id for _ in range(300)}
    assert len(ids) == 300
    for cid in ids:
        assert HEX64.fullmatch(cid)
        assert not _is_number(cid[:12])


class _ScriptedRand:
    """A ``rand`` for generate_id that returns prepared byte strings, counting calls."""

    def __init__(self, outputs: list[bytes]) -> None:
        self.outputs: Iterator[bytes] = iter(outputs)
        self.calls: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        return next(self.outputs)


def test_generate_id_retries_until_the_short_id_is_not_numeric() -> None:
    numeric = bytes.fromhex("123456789012") + b"\x00" * 26          # "123456789012..." parses as a number
    exponent = bytes.fromhex("1e0000000000") + b"\xff" * 26         # "1e0000000000" parses as 1.0
    good = bytes.fromhex("abcdef012345") + b"\x11" * 26
    rand = _ScriptedRand([numeric, exponent, good])
    cid = _model.generate_id(rand)
    assert cid == good.hex()
    assert rand.calls == [32, 32, 32]
    assert _is_number(numeric.hex()[:12]) and _is_number(exponent.hex()[:12])


def test_generate_id_takes_the_first_non_numeric_candidate() -> None:
    first = bytes.fromhex("deadbeef0000") + b"\x00" * 26
    rand = _ScriptedRand([first, b"\x22" * 32])
    assert _model.generate_id(rand) == first.hex()
    assert rand.calls == [32]


def test_new_accepts_a_given_id() -> None:
    assert Container.new("nginx", id=ID_A).id == ID_A


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "g" * 64, "a" * 63, "a" * 65, "", " " + "a" * 63, 5, b"a" * 64])
def test_new_rejects_invalid_ids(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="64 lowercase hex"):
        Container.new("nginx", id=bad)


# --- names ----------------------------------------------------------------------------


def test_generated_names_are_valid_docker_names() -> None:
    for seed in range(300):
        c = Container.new("nginx", rng=random.Random(seed))
        assert NAME_RE.match(c.to_dict()["Name"])
        assert c.to_dict()["Name"] == "/" + c.name
        adjective, surname = c.name.split("_")
        assert adjective in _names.ADJECTIVES and surname in _names.SURNAMES


def test_generated_names_are_deterministic_for_a_seeded_rng() -> None:
    a = Container.new("nginx", rng=random.Random(42))
    b = Container.new("nginx", rng=random.Random(42))
    assert a.name == b.name
    assert a.id != b.id


def test_generate_name_retry_appends_a_digit() -> None:
    for seed in range(50):
        n = _names.generate_name(random.Random(seed), retry=1)
        assert NAME_RE.match(n)
        assert n[-1].isdigit()
        assert n[:-1].count("_") == 1


def test_all_word_list_combinations_are_valid_names() -> None:
    for adjective in _names.ADJECTIVES:
        for surname in _names.SURNAMES:
            assert NAME_RE.match(f"{adjective}_{surname}9")


@pytest.mark.parametrize("given", ["web", "/web"])
def test_name_with_or_without_leading_slash(given: str) -> None:
    c = Container.new("nginx", name=given)
    assert c.name == "web"
    assert c.to_dict()["Name"] == "/web"


@pytest.mark.parametrize("good", ["ab", "a1", "9-x", "web_1.prod-2", "A.b_c-D", "x" * 255, "/" + "x" * 255])
def test_valid_names(good: str) -> None:
    c = Container.new("nginx", name=good)
    assert "/" + c.name == ("/" + good).replace("//", "/")


@pytest.mark.parametrize(
    "bad",
    ["", "a", "/", "//web", "-web", "_web", ".web", "we b", "web/x", "web:1", "wéb", "web*", "{web}", "x" * 256,
     "web\x00", 5, b"web"],
)
def test_invalid_names_raise(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="Invalid container name"):
        Container.new("nginx", name=bad)


def test_a_255_character_name_is_accepted() -> None:
    # regression: validate() counted the stored leading '/', so a 255-character name was refused
    c = Container.new("nginx", name="x" * 255)
    assert len(c.name) == 255
    assert Container.new("nginx", name="/" + "x" * 255).name == "x" * 255
    c.name = "y" * 255
    c.validate()
    with pytest.raises(InvalidArgumentError):
        Container.new("nginx", name="x" * 256)


def test_name_setter_normalizes_and_validates() -> None:
    c = Container.new("nginx", name="web")
    c.name = "/api"
    assert c.name == "api" and c.to_dict()["Name"] == "/api"
    with pytest.raises(InvalidArgumentError):
        c.name = "bad name"
    assert c.name == "api"


def test_name_with_trailing_newline_is_rejected() -> None:
    # regression: NAME_RE ends in '$', which also matches before a trailing newline (match -> fullmatch)
    with pytest.raises(InvalidArgumentError):
        Container.new("nginx", name="web\n")


def test_id_with_trailing_newline_is_rejected() -> None:
    # regression: ID_RE ends in '$', which also matches before a trailing newline
    with pytest.raises(InvalidArgumentError):
        _model.validate_id(ID_A + "\n")


# --- images, labels, lists ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "ng inx", "nginx\t", "nginx\n", " nginx", None, 5, ["nginx"]])
def test_invalid_images_raise(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid image reference"):
        Container.new(bad)


@pytest.mark.parametrize(
    "bad",
    [
        ["a=b"],
        "a=b",
        {"a": 1},
        {1: "a"},
        {"a": None},
        {"": "x"},
        {"a\x00": "x"},
        {"a": "x\x00"},
        {"big": "x" * (64 * 1024)},
    ],
)
def test_invalid_labels_raise(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Container.new("nginx", labels=bad)


def test_labels_at_the_size_cap_are_accepted() -> None:
    value = "x" * (64 * 1024 - 1)
    c = Container.new("nginx", labels={"k": value})
    assert c.labels == {"k": value}


@pytest.mark.parametrize("field", ["cmd", "entrypoint", "env", "binds", "exposed_ports"])
@pytest.mark.parametrize("bad", ["ls -l", [1], ["ok", None], 5])
def test_string_list_arguments_are_validated(field: str, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="list of strings"):
        Container.new("nginx", **{field: bad})


def test_label_setter_validates() -> None:
    c = Container.new("nginx")
    c.config.labels = {"a": "1"}
    assert c.labels == {"a": "1"}
    with pytest.raises(InvalidArgumentError):
        c.config.labels = {"a": 1}  # type: ignore[dict-item]
    assert c.labels == {"a": "1"}


# --- inspect shape ------------------------------------------------------------------------


def _full() -> Container:
    return Container.new(
        "nginx:1.27",
        name="web",
        labels={"app": "web", "tier": "front"},
        cmd=["nginx", "-g", "daemon off;"],
        entrypoint=["/docker-entrypoint.sh"],
        env=["A=1"],
        working_dir="/srv",
        user="www",
        tty=True,
        open_stdin=True,
        exposed_ports=["443/tcp"],
        restart_policy="always",
        network_mode="appnet",
        networks={"appnet": {"NetworkID": "f" * 64, "IPAddress": "10.0.0.2"}},
        binds=["/data:/data"],
        port_bindings={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
        mounts=[{"Type": "volume", "Name": "data", "Source": "/var/lib/v", "Destination": "/data"}],
        image_id="sha256:" + "c" * 64,
        id=ID_A,
        clock=lambda: 1_700_000_000_123_456_789,
    )


def test_inspect_field_names_and_nesting() -> None:
    d = _full().to_dict()
    assert d["Id"] == ID_A
    assert d["Created"] == "2023-11-14T22:13:20.123456789Z"
    assert d["Name"] == "/web"
    assert d["Path"] == "/docker-entrypoint.sh"
    assert d["Args"] == ["nginx", "-g", "daemon off;"]
    assert d["Image"] == "sha256:" + "c" * 64
    assert d["RestartCount"] == 0
    assert d["ExecIDs"] is None
    assert d["State"] == {
        "Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
        "RemovalInProgress": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
        "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME,
    }
    cfg = d["Config"]
    assert cfg["Image"] == "nginx:1.27"
    assert cfg["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert cfg["Entrypoint"] == ["/docker-entrypoint.sh"]
    assert cfg["Labels"] == {"app": "web", "tier": "front"}
    assert cfg["Env"] == ["A=1"]
    assert cfg["WorkingDir"] == "/srv" and cfg["User"] == "www"
    assert cfg["Tty"] is True and cfg["OpenStdin"] is True
    assert cfg["Hostname"] == ID_A[:12]
    assert cfg["ExposedPorts"] == {"443/tcp": {}, "80/tcp": {}}
    hc = d["HostConfig"]
    assert hc["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert hc["NetworkMode"] == "appnet"
    assert hc["Binds"] == ["/data:/data"]
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert hc["AutoRemove"] is False
    ns = d["NetworkSettings"]
    assert ns["Networks"] == {
        "appnet": {"NetworkID": "f" * 64, "EndpointID": "", "IPAddress": "10.0.0.2", "Aliases": None}
    }
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert d["Mounts"] == [{"Type": "volume", "Name": "data", "Source": "/var/lib/v", "Destination": "/data"}]
    assert d["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 0}


def test_minimal_container_defaults() -> None:
    c = Container.new("busybox", name="b1")
    d = c.to_dict()
    assert d["Path"] == "" and d["Args"] == []
    assert d["Config"]["Cmd"] is None and d["Config"]["Entrypoint"] is None and d["Config"]["Env"] is None
    assert d["Config"]["Labels"] == {}
    assert d["Config"]["ExposedPorts"] is None
    assert d["HostConfig"]["Binds"] is None
    assert d["NetworkSettings"]["Networks"] == {
        "bridge": {"NetworkID": "", "EndpointID": "", "IPAddress": "", "Aliases": None}
    }
    assert d["Mounts"] == []
    assert c.version == 0
    assert c.status == "created"


def test_snake_case_attributes() -> None:
    c = _full()
    assert c.id == ID_A
    assert c.name == "web"
    assert c.created == "2023-11-14T22:13:20.123456789Z"
    assert c.image == "sha256:" + "c" * 64
    assert c.path == "/docker-entrypoint.sh"
    assert c.args == ["nginx", "-g", "daemon off;"]
    assert c.driver == "overlay2" and c.platform == "linux"
    assert c.restart_count == 0
    assert c.exec_ids == []
    assert c.version == 0
    assert c.status == "created"
    assert c.labels == {"app": "web", "tier": "front"}
    assert c.mounts[0]["Destination"] == "/data"
    assert c.config.image == "nginx:1.27"
    assert c.config.cmd == ["nginx", "-g", "daemon off;"]
    assert c.config.entrypoint == ["/docker-entrypoint.sh"]
    assert c.config.env == ["A=1"]
    assert c.config.working_dir == "/srv"
    assert c.config.user == "www"
    assert c.config.hostname == ID_A[:12]
    assert c.config.tty is True and c.config.open_stdin is True
    assert c.config.exposed_ports == {"443/tcp": {}, "80/tcp": {}}
    assert c.host_config.restart_policy == {"Name": "always", "MaximumRetryCount": 0}
    assert c.host_config.network_mode == "appnet"
    assert c.host_config.binds == ["/data:/data"]
    assert c.host_config.auto_remove is False
    assert c.network_settings.networks["appnet"]["NetworkID"] == "f" * 64
    assert c.network_settings.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    s = c.state
    assert (s.status, s.running, s.paused, s.restarting, s.dead, s.oom_killed) == (
        "created", False, False, False, False, False)
    assert (s.pid, s.exit_code, s.error, s.started_at, s.finished_at) == (0, 0, "", ZERO_TIME, ZERO_TIME)
    assert s.health is None
    assert "web" in repr(c) and ID_A[:12] in repr(c)


def test_attribute_setters_write_the_document() -> None:
    c = Container.new("nginx", name="web")
    c.restart_count = 3
    c.image = "sha256:" + "d" * 64
    c.config.user = "nobody"
    c.host_config.auto_remove = True
    d = c.to_dict()
    assert d["RestartCount"] == 3
    assert d["Image"] == "sha256:" + "d" * 64
    assert d["Config"]["User"] == "nobody"
    assert d["HostConfig"]["AutoRemove"] is True


def test_version_comes_from_the_statestore_block() -> None:
    d = Container.new("nginx").to_dict()
    d["StateStore"]["Version"] = 7
    assert Container.from_dict(d).version == 7


# --- copies -------------------------------------------------------------------------------


def test_copy_is_independent() -> None:
    c = _full()
    dup = c.copy()
    assert dup == c and dup is not c
    dup.labels["new"] = "x"
    dup.state.set_running(pid=10)
    dup.network_settings.networks["appnet"]["IPAddress"] = "1.1.1.1"
    dup.name = "other"
    assert "new" not in c.labels
    assert c.status == "created"
    assert c.network_settings.networks["appnet"]["IPAddress"] == "10.0.0.2"
    assert c.name == "web"
    assert dup != c


def test_to_dict_is_a_deep_copy() -> None:
    c = _full()
    d = c.to_dict()
    d["Config"]["Labels"]["app"] = "changed"
    d["State"]["Running"] = True
    d["Mounts"].append({"Name": "x"})
    d["StateStore"]["Version"] = 99
    d["Name"] = "/zzz"
    assert c.labels["app"] == "web"
    assert c.state.running is False
    assert len(c.mounts) == 1
    assert c.version == 0
    assert c.name == "web"


def test_view_to_dict_is_a_deep_copy_but_views_are_live() -> None:
    c = _full()
    cfg = c.config.to_dict()
    cfg["Labels"]["app"] = "changed"
    assert c.labels["app"] == "web"
    # attribute views share the record's document
    c.state.set_running(pid=5, at="2024-01-01T00:00:00.000000000Z")
    assert c.status == "running"
    assert c.to_dict()["State"]["Pid"] == 5
    c.labels["live"] = "yes"
    assert c.to_dict()["Config"]["Labels"]["live"] == "yes"


def test_from_dict_deep_copies_its_input() -> None:
    src = _full().to_dict()
    c = Container.from_dict(src)
    src["Config"]["Labels"]["app"] = "changed"
    src["State"]["Running"] = True
    assert c.labels["app"] == "web"
    assert c.state.running is False
    out = c.to_dict()
    assert out == _full().to_dict()


def test_from_dict_round_trip_and_defaults() -> None:
    c = _full()
    assert Container.from_dict(c.to_dict()) == c
    d = c.to_dict()
    del d["StateStore"]
    again = Container.from_dict(d)
    assert again.to_dict()["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 0}


def test_from_dict_keeps_unknown_fields() -> None:
    d = _full().to_dict()
    d["GraphDriver"] = {"Name": "overlay2", "Data": {"MergedDir": "/x"}}
    d["Config"]["Healthcheck"] = {"Test": ["CMD", "true"]}
    c = Container.from_dict(d)
    assert c.to_dict()["GraphDriver"] == {"Name": "overlay2", "Data": {"MergedDir": "/x"}}
    assert c.to_dict()["Config"]["Healthcheck"] == {"Test": ["CMD", "true"]}


def _non_json_values() -> list[Any]:
    sock = socket.socket()
    sock.close()
    return [sock, lambda: 1, {1, 2}, frozenset(), object(), b"bytes", 2**70, 1j]


@pytest.mark.parametrize("value", _non_json_values(), ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("where", ["top", "nested"])
def test_from_dict_refuses_non_json_values(value: Any, where: str) -> None:
    d = Container.new("nginx").to_dict()
    if where == "top":
        d["Runtime"] = value
    else:
        d["Config"]["Labels"] = {"ok": "x"}
        d["HostConfig"]["Extra"] = [{"deep": value}]
    with pytest.raises(InvalidArgumentError, match="not plain JSON"):
        Container.from_dict(d)


def test_from_dict_refuses_non_string_keys() -> None:
    d: dict[Any, Any] = Container.new("nginx").to_dict()
    d[1] = "x"
    with pytest.raises(InvalidArgumentError):
        Container.from_dict(d)


@dataclasses.dataclass
class _Point:
    x: int


# regression test (was a strict xfail before the fix)
@pytest.mark.parametrize(
    "value",
    [datetime.datetime(2020, 1, 1), uuid.UUID(int=1), _Point(1), math.nan],
    ids=["datetime", "uuid", "dataclass", "nan"],
)
def test_from_dict_refuses_values_that_are_only_convertible_to_json(value: Any) -> None:
    d = Container.new("nginx").to_dict()
    d["Extra"] = value
    with pytest.raises(InvalidArgumentError):
        Container.from_dict(d)


@pytest.mark.parametrize("bad", [[], "x", 5, None])
def test_from_dict_requires_an_object(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Container.from_dict(bad)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("Id"),
        lambda d: d.update(Id="xyz"),
        lambda d: d.pop("Name"),
        lambda d: d.update(Name="/bad name"),
        lambda d: d.update(State=[]),
        lambda d: d.update(Config="x"),
        lambda d: d["Config"].update(Labels={"a": 1}),
        lambda d: d["Config"].update(Image=None),
        lambda d: d.update(Created=5),
        lambda d: d.update(NetworkSettings=[1]),
        lambda d: d["NetworkSettings"].update(Networks=[1]),
        lambda d: d.update(ExecIDs="x"),
        lambda d: d.update(ExecIDs=["nope"]),
        lambda d: d.update(StateStore=[]),
    ],
)
def test_from_dict_validates_the_document(mutate: Any) -> None:
    d = Container.new("nginx").to_dict()
    mutate(d)
    with pytest.raises(InvalidArgumentError):
        Container.from_dict(d)


def test_from_dict_accepts_exec_ids() -> None:
    d = Container.new("nginx").to_dict()
    d["ExecIDs"] = [ID_B]
    assert Container.from_dict(d).exec_ids == [ID_B]


# regression: from_dict did not check the StateStore block, so a record it accepted (Kind 'exec', Schema 99,
# Version "7") encoded to bytes the codec refused to read back
@pytest.mark.parametrize("meta", [{"Kind": "exec"}, {"Schema": 99}, {"Version": "7"}], ids=["kind", "schema", "ver"])
def test_from_dict_records_can_be_read_back(meta: dict[str, Any]) -> None:
    d = Container.new("nginx").to_dict()
    d["StateStore"] = meta
    try:
        rec = Container.from_dict(d)
    except InvalidArgumentError:
        return  # refusing it is fine too
    key = "ss:{t}:c:" + rec.id
    back = _codec.decode("container", key, _codec.encode(rec))
    assert back.version == rec.version


# --- exec records --------------------------------------------------------------------------


def test_exec_new_shape() -> None:
    x = ExecConfig.new("web", ["sh", "-c", "echo hi"], tty=True, user="root", env=["A=1"], id=ID_B)
    d = x.to_dict()
    assert d["ID"] == ID_B
    assert d["Running"] is False and d["ExitCode"] is None and d["Pid"] == 0
    assert d["ProcessConfig"] == {"tty": True, "entrypoint": "sh", "arguments": ["-c", "echo hi"],
                                  "privileged": False, "user": "root"}
    assert d["ContainerID"] == "web"
    assert d["Env"] == ["A=1"]
    assert d["StateStore"] == {"Schema": 1, "Kind": "exec", "Version": 0}
    assert x.status == "created" and x.exit_code is None and x.container_id == "web"
    assert x.process_config.entrypoint == "sh" and x.process_config.arguments == ["-c", "echo hi"]


@pytest.mark.parametrize("container,cmd", [("", ["ls"]), (None, ["ls"]), ("web", []), ("web", "ls"), ("web", [1])])
def test_exec_new_validates(container: Any, cmd: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        ExecConfig.new(container, cmd)


def test_exec_from_dict_requires_container_id() -> None:
    d = ExecConfig.new("web", ["ls"]).to_dict()
    with pytest.raises(InvalidArgumentError, match="ContainerID"):
        ExecConfig.from_dict(d)
    d["ContainerID"] = ID_A
    x = ExecConfig.from_dict(d)
    assert x.container_id == ID_A
    assert orjson.loads(orjson.dumps(x.to_dict())) == d


def test_exec_copy_is_independent() -> None:
    x = ExecConfig.new(ID_A, ["ls"])
    dup = x.copy()
    dup.set_running(pid=4)
    assert x.running is False and dup.running is True


def test_format_time_is_rfc3339_nanoseconds_and_sorts() -> None:
    assert _model.format_time(0) == "1970-01-01T00:00:00.000000000Z"
    assert _model.format_time(1) == "1970-01-01T00:00:00.000000001Z"
    times = [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_000_000_000, 4_102_444_800_000_000_000]
    strings = [_model.format_time(t) for t in times]
    assert strings == sorted(strings)
