"""The ``statestore`` CLI, run as a real subprocess against the suite's private redis-server.

Every test runs ``python -m statestore --redis-url ... --namespace <its own> COMMAND ...`` and
checks what a user sees: exit codes, stdout (Docker-like tables, JSON), and one-line errors on
stderr without a traceback.  Times in the fixture are set far enough in the past (minutes, hours,
days) that the human durations in the output are stable for the seconds a test takes.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from statestore import Container, ExecConfig, Store
from tests.redisproc import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("ps", "inspect", "events", "namespaces", "locks", "fsck", "daemon", "demo")
PS_HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
LOCKS_HEADER = ["CONTAINER ID", "NAME", "REPLICA", "HOST", "PID", "TOKEN", "AGE", "TTL LEFT"]
PS_JSON_FIELDS = {"ID", "Names", "Image", "Command", "CreatedAt", "State", "Status", "Ports", "Labels",
                  "Networks", "Version"}
EVENT_JSON_FIELDS = {"namespace", "type", "kind", "id", "name", "container", "version", "status", "seq",
                     "revision", "labels"}
LOCK_JSON_FIELDS = {"container", "token", "replica", "host", "pid", "acquired_ms", "age", "ttl_left", "wedged"}


# --- running the CLI ----------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statestore", *argv], cwd=ROOT, env=env or cli_env(), capture_output=True,
        text=True, encoding="utf-8", timeout=timeout, stdin=subprocess.DEVNULL,
    )


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def base_args(redis_proc: RedisProcess, namespace: str) -> list[str]:
    return ["--redis-url", redis_proc.url, "--namespace", namespace]


@pytest.fixture
def cli(base_args: list[str]) -> Cli:
    """``cli("ps", "-a")`` runs the CLI on the test's namespace."""

    def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(*base_args, *argv, **kw)

    return run


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def one_line_error(res: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The run failed with ``code`` and exactly one ``Error: ...`` line on stderr; returns that line."""
    assert res.returncode == code, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: "), res.stderr
    return lines[0]


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A Docker-style table (columns separated by 3+ spaces, aligned) as header titles and row dicts.

    Cells are cut at the header titles' offsets, so empty cells (PORTS) are kept as "".
    """
    lines = text.splitlines()
    assert lines, "no table header"
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    titles = [t for _, t in spans]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (start, title) in enumerate(spans):
            end = spans[i + 1][0] if i + 1 < len(spans) else None
            row[title] = line[start:end].strip()
        rows.append(row)
    return titles, rows


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


# --- a fleet of containers in every status, with times far enough in the past to print stably ----
NOW = datetime.now(UTC)


def rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def clock_at(dt: datetime) -> Callable[[], int]:
    ns = int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    return lambda: ns


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


def make_fleet(store: Store) -> dict[str, Any]:
    """web/db/cache/flappy are up (running, paused, healthy, restarting); job created; old, crash exited;
    gone dead.  Created times go from 5 days ago (web) to 9 hours ago (flappy), so ``ps`` lists newest first:
    flappy, crash, old, job, cache, db, web (gone is 2 hours old and the newest)."""
    c = store.containers
    three_h = rfc3339(ago(hours=3))

    def new(name: str, created: datetime, image: str = "busybox", **kw: Any) -> Container:
        return c.create(Container.new(image, name=name, clock=clock_at(created), **kw))

    new("web", ago(days=5), "nginx:1.27", labels={"app": "shop", "tier": "front"},
        cmd=["nginx", "-g", "daemon off;"], port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})
    c.update("web", lambda x: x.state.set_running(pid=101, at=three_h))
    new("db", ago(days=4), "postgres:16", labels={"app": "shop", "tier": "data"}, cmd=["postgres"])
    c.update("db", lambda x: x.state.set_running(pid=102, at=three_h))
    c.update("db", lambda x: x.state.set_paused())
    new("cache", ago(days=3), "redis:7", labels={"app": "cache"}, exposed_ports=["6379/tcp"])
    c.update("cache", lambda x: x.state.set_running(pid=103, at=three_h))
    c.update("cache", lambda x: x.state.set_health("healthy"))
    new("job", ago(days=2), cmd=["sh", "-c", "echo a rather long command line"])
    new("old", ago(hours=24), "alpine")
    c.update("old", lambda x: x.state.set_running(pid=104, at=rfc3339(ago(hours=20))))
    c.update("old", lambda x: x.state.set_stopped(0, at=rfc3339(ago(minutes=5, seconds=20))))
    new("crash", ago(hours=10), "alpine", labels={"app": "batch"})
    c.update("crash", lambda x: x.state.set_running(pid=105, at=rfc3339(ago(hours=9))))
    c.update("crash", lambda x: x.state.set_stopped(3, at=rfc3339(ago(hours=2))))
    new("flappy", ago(hours=9), "alpine")
    c.update("flappy", lambda x: x.state.set_running(pid=106, at=rfc3339(ago(hours=6))))
    c.update("flappy", lambda x: x.state.set_restarting(1, at=rfc3339(ago(minutes=5, seconds=20))))
    new("gone", ago(hours=2), "alpine")
    c.update("gone", lambda x: x.state.set_dead())
    exec_ = store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"]))
    return {"exec": exec_, **{x.name: x for x in c.list(all=True)}}


@pytest.fixture
def fleet(store: Store) -> dict[str, Any]:
    return make_fleet(store)


ORDER_ALL = ["gone", "flappy", "crash", "old", "job", "cache", "db", "web"]
UP = ["flappy", "cache", "db", "web"]  # docker ps without -a: running, paused, restarting

EXPECTED_STATUS = {
    "web": "Up 3 hours",
    "db": "Up 3 hours (Paused)",
    "cache": "Up 3 hours (healthy)",
    "job": "Created",
    "old": "Exited (0) 5 minutes ago",
    "crash": "Exited (3) 2 hours ago",
    "flappy": "Restarting (1) 5 minutes ago",
    "gone": "Dead",
}
EXPECTED_CREATED = {"web": "5 days ago", "db": "4 days ago", "cache": "3 days ago", "job": "2 days ago",
                    "old": "24 hours ago", "crash": "10 hours ago", "flappy": "9 hours ago", "gone": "2 hours ago"}


# --- help and usage ---------------------------------------------------------------------------------
def test_help_lists_every_subcommand() -> None:
    out = ok(run_cli("--help"))
    assert out.startswith("usage: statestore")
    for cmd in SUBCOMMANDS:
        assert re.search(rf"^\s+{cmd}\s+\S", out, re.M), f"{cmd} missing from --help:\n{out}"
    assert "--redis-url" in out and "--namespace" in out


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd: str) -> None:
    out = ok(run_cli(cmd, "--help"))
    assert out.startswith(f"usage: statestore {cmd}")


def test_version() -> None:
    from statestore import __version__

    assert ok(run_cli("--version")) == f"statestore version {__version__}\n"


def test_unknown_subcommand_is_an_error_like_docker() -> None:
    res = run_cli("frobnicate")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == ("statestore: unknown command: statestore frobnicate\n\n"
                          "Run 'statestore --help' for more information\n")


@pytest.mark.parametrize(("argv", "code", "first_line"), [
    (["ps", "--bogus"], 125, "unknown flag: --bogus"),
    (["ps", "--bogus=1"], 125, "unknown flag: --bogus"),
    (["ps", "-n", "x"], 125, 'invalid argument "x" for "-n, --last" flag: not a valid int'),
    (["ps", "--format"], 125, "flag needs an argument: --format"),
    (["events", "--format", "yaml"], 125, 'invalid argument "yaml" for "--format" flag: '),
    (["ps", "extra"], 1, "statestore: 'statestore ps' accepts no arguments"),
    (["inspect"], 1, "statestore: 'statestore inspect' requires at least 1 argument"),
    ([], 125, "'statestore' requires a command"),
])
def test_usage_errors_exit_as_docker(argv: list[str], code: int, first_line: str) -> None:
    res = run_cli(*argv)
    assert (res.returncode, res.stdout) == (code, ""), res.stderr
    lines = res.stderr.splitlines()
    assert lines[0].startswith(first_line), res.stderr
    assert lines[1] == "" and lines[2].startswith("Usage:  statestore") and lines[3] == ""
    assert lines[4] == f"Run '{' '.join(['statestore', *argv[:1]])} --help' for more information"
    assert "Traceback" not in res.stderr


# --- ps -------------------------------------------------------------------------------------------
def test_ps_default_lists_up_containers_docker_style(cli: Cli, fleet: dict[str, Any]) -> None:
    titles, rows = parse_table(ok(cli("ps")))
    assert titles == PS_HEADER
    assert [r["NAMES"] for r in rows] == UP
    web = next(r for r in rows if r["NAMES"] == "web")
    assert web == {"CONTAINER ID": fleet["web"].id[:12], "IMAGE": "nginx:1.27", "COMMAND": '"nginx -g daemon off;"',
                   "CREATED": "5 days ago", "STATUS": "Up 3 hours", "PORTS": "0.0.0.0:8080->80/tcp", "NAMES": "web"}
    cache = next(r for r in rows if r["NAMES"] == "cache")
    assert cache["PORTS"] == "6379/tcp"


def test_ps_all_shows_every_status_string(cli: Cli, fleet: dict[str, Any]) -> None:
    titles, rows = parse_table(ok(cli("ps", "-a")))
    assert titles == PS_HEADER
    assert [r["NAMES"] for r in rows] == ORDER_ALL
    assert {r["NAMES"]: r["STATUS"] for r in rows} == EXPECTED_STATUS
    assert {r["NAMES"]: r["CREATED"] for r in rows} == EXPECTED_CREATED
    assert all(re.fullmatch(r"[0-9a-f]{12}", r["CONTAINER ID"]) for r in rows)


def test_ps_removing_status(cli: Cli, store: Store) -> None:
    store.containers.create(Container.new("alpine", name="bye"))
    store.containers.update("bye", lambda c: c.state.set_removal_in_progress())
    _, rows = parse_table(ok(cli("ps", "-a")))
    assert [(r["NAMES"], r["STATUS"]) for r in rows] == [("bye", "Removal In Progress")]


def test_ps_running_for_seconds_reads_like_docker(cli: Cli, store: Store) -> None:
    store.containers.create(Container.new("alpine", name="fresh"))
    store.containers.update("fresh", lambda c: c.state.set_running(pid=7))
    _, rows = parse_table(ok(cli("ps")))
    assert re.fullmatch(r"Up (Less than a second|1 second|\d+ seconds)", rows[0]["STATUS"]), rows
    assert re.fullmatch(r"(Less than a second|1 second|\d+ seconds) ago", rows[0]["CREATED"]), rows


def test_ps_health_starting_reads_like_docker(cli: Cli, store: Store) -> None:
    store.containers.create(Container.new("alpine", name="probe"))
    store.containers.update("probe", lambda c: c.state.set_running(pid=7, at=rfc3339(ago(hours=3))))
    store.containers.update("probe", lambda c: c.state.set_health("starting"))
    _, rows = parse_table(ok(cli("ps")))
    assert rows[0]["STATUS"] == "Up 3 hours (health: starting)"


def test_ps_empty_namespace_prints_only_the_header(cli: Cli) -> None:
    res = cli("ps", "-a")
    # docker's tabwriter: columns padded to at least 10 characters
    assert ok(res) == "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
    assert ok(cli("ps", "-q")) == ""
    assert ok(cli("ps", "--format", "json")) == ""


def test_ps_hints_at_a_namespace_that_holds_nothing(redis_proc: RedisProcess, namespace: str,
                                                    store: Store) -> None:
    store.containers.create(Container.new("alpine", name="here"))
    res = run_cli("--redis-url", redis_proc.url, "--namespace", namespace + "-typo", "ps", "-a")
    assert ok(res).splitlines()[1:] == []
    (hint,) = res.stderr.splitlines()
    assert hint.startswith(f"Hint: namespace '{namespace}-typo' holds no containers; "
                           "namespaces with containers here: "), hint
    assert namespace in hint and "statestore namespaces" in hint
    # a namespace with containers, none running: no hint
    res = run_cli("--redis-url", redis_proc.url, "--namespace", namespace, "ps")
    assert ok(res).count("\n") == 1 and res.stderr == ""


def test_namespaces_lists_each_with_its_counts(redis_proc: RedisProcess, namespace: str, store: Store,
                                              client: redis.Redis) -> None:
    store.containers.create(Container.new("alpine", name="one"))
    store.containers.update("one", lambda c: c.state.set_running(pid=1))
    store.containers.create(Container.new("alpine", name="two"))
    store.execs.create(ExecConfig.new("one", ["date"]))
    other = Store(client, namespace=namespace + "-b")
    other.containers.create(Container.new("alpine", name="three"))
    other.containers.delete("three")  # only its change log is left: an existing, empty namespace
    base = ["--redis-url", redis_proc.url]
    titles, rows = parse_table(ok(run_cli(*base, "namespaces")))
    assert titles == ["NAMESPACE", "CONTAINERS", "EXECS"]
    mine = {r["NAMESPACE"]: (r["CONTAINERS"], r["EXECS"]) for r in rows}
    assert mine[namespace] == ("2", "1") and mine[namespace + "-b"] == ("0", "0")
    assert [r["NAMESPACE"] for r in rows] == sorted(r["NAMESPACE"] for r in rows)
    docs = {d["namespace"]: d for d in json_lines(ok(run_cli(*base, "namespaces", "--format", "json")))}
    assert docs[namespace] == {"namespace": namespace, "containers": 2, "execs": 1}
    assert namespace in ok(run_cli(*base, "namespaces", "-q")).splitlines()


def test_ps_go_template_formats(cli: Cli, fleet: dict[str, Any]) -> None:
    out = ok(cli("ps", "-a", "--format", r"{{.ID}}\t{{.Names}}"))
    assert out.splitlines() == [f"{fleet[n].id[:12]}\t{n}" for n in ORDER_ALL]
    out = ok(cli("ps", "--format", '{{.Names}} {{.State}} {{.Label "app"}}', "--filter", "name=web"))
    assert out == "web running shop\n"
    titles, rows = parse_table(ok(cli("ps", "-a", "--format", r"table {{.Names}}\t{{.Status}}\t{{.Labels}}")))
    assert titles == ["NAMES", "STATUS", "LABELS"]
    assert {r["NAMES"]: r["STATUS"] for r in rows} == EXPECTED_STATUS
    assert ok(cli("ps", "-a", "--format", "table")) == ok(cli("ps", "-a"))
    res = cli("ps", "-q", "--format", "{{.Names}}")  # -q wins, with docker's warning
    assert ok(res) == ok(cli("ps", "-q"))
    assert res.stderr == "WARNING: Ignoring custom format, because both --format and --quiet are set.\n"


def test_ps_unknown_placeholder_is_a_template_error(cli: Cli, fleet: dict[str, Any]) -> None:
    line = one_line_error(cli("ps", "--format", "{{.Foo}}"))
    assert line == ('Error: failed to execute template: template: :1:2: executing "" at <.Foo>: '
                    "can't evaluate field Foo in type *formatter.ContainerContext")
    line = one_line_error(cli("ps", "--format", "{{.Names"))
    assert line == "Error: failed to parse template: template: :1: unclosed action"


def test_ps_latest(cli: Cli, fleet: dict[str, Any]) -> None:
    assert ok(cli("ps", "-l", "--format", "{{.Names}}")) == "gone\n"  # the newest, whatever its state
    assert ok(cli("ps", "--latest", "-q")) == fleet["gone"].id[:12] + "\n"


def test_inspect_format(cli: Cli, fleet: dict[str, Any]) -> None:
    assert ok(cli("inspect", "--format", "{{.State.Status}}", "web", "job")) == "running\ncreated\n"
    out = ok(cli("inspect", "-f", "{{.Name}} {{json .Config.Labels}} {{.State.Pid}} {{.Nope}}", "web"))
    assert out == '/web {"app":"shop","tier":"front"} ' + str(fleet["web"].state.pid) + " <no value>\n"
    res = cli("inspect", "-f", "{{.Id}}", "web", "nosuch")
    assert res.returncode == 1 and res.stdout == fleet["web"].id + "\n"
    assert res.stderr == "Error: No such container: nosuch\n"


def test_ps_quiet(cli: Cli, fleet: dict[str, Any]) -> None:
    assert ok(cli("ps", "-q")).splitlines() == [fleet[n].id[:12] for n in UP]
    assert ok(cli("ps", "-aq")).splitlines() == [fleet[n].id[:12] for n in ORDER_ALL]
    assert ok(cli("ps", "-a", "-q", "--no-trunc")).splitlines() == [fleet[n].id for n in ORDER_ALL]


def test_ps_last_n_includes_every_state(cli: Cli, fleet: dict[str, Any]) -> None:
    _, rows = parse_table(ok(cli("ps", "-n", "3")))
    assert [r["NAMES"] for r in rows] == ORDER_ALL[:3]
    assert ok(cli("ps", "--last", "1", "-q")).splitlines() == [fleet["gone"].id[:12]]
    # 0 and negative numbers mean no limit, as in docker (then the default running-only rule applies)
    assert ok(cli("ps", "-n", "0", "-q")).splitlines() == [fleet[n].id[:12] for n in UP]
    assert ok(cli("ps", "-n", "-1", "-q")).splitlines() == [fleet[n].id[:12] for n in UP]


@pytest.mark.parametrize(("argv", "expected"), [
    (["--filter", "label=app=shop"], ["db", "web"]),                          # running only without -a
    (["--filter", "label=app"], ["cache", "db", "web"]),
    (["-a", "--filter", "label=app"], ["cache", "crash", "db", "web"]),
    (["--filter", "label=app", "--filter", "label=tier=data"], ["db"]),       # every label must hold
    (["--filter", "status=exited"], ["crash", "old"]),                        # status implies -a
    (["--filter", "status=created", "--filter", "status=dead"], ["gone", "job"]),  # one filter's values: OR
    (["--filter", "status=exited", "--filter", "label=app=batch"], ["crash"]),     # different filters: AND
    (["--filter", "name=web"], ["web"]),
    (["-a", "--filter", "name=^/?(db|job)$"], ["db", "job"]),
    (["--filter", "name=^/?(db|job)$", "--filter", "status=created"], ["job"]),
    (["-a", "--filter", "exited=3"], ["crash"]),
    (["-a", "--filter", "exited=0", "--filter", "exited=3"], ["crash", "old"]),
    (["--filter", "ancestor=alpine"], ["flappy"]),                            # restarting counts as up
    (["-a", "-f", "ancestor=alpine", "-f", "label=app=batch"], ["crash"]),
    (["--filter", "health=healthy"], ["cache"]),
    (["--filter", "publish=80"], ["web"]),
    (["--filter", "expose=6379/tcp"], ["cache"]),
    (["-a", "--filter", "since=job"], ["crash", "gone", "flappy", "old"]),
    (["-a", "--filter", "before=db"], ["web"]),
])
def test_ps_filters(cli: Cli, fleet: dict[str, Any], argv: list[str], expected: list[str]) -> None:
    _, rows = parse_table(ok(cli("ps", *argv)))
    assert sorted(r["NAMES"] for r in rows) == sorted(expected)


def test_ps_no_trunc(cli: Cli, fleet: dict[str, Any]) -> None:
    _, short = parse_table(ok(cli("ps", "-a", "-f", "name=job")))
    assert short[0]["COMMAND"] == '"sh -c echo a rather…"'  # 19 characters and an ellipsis, as docker
    assert short[0]["CONTAINER ID"] == fleet["job"].id[:12]
    _, full = parse_table(ok(cli("ps", "-a", "--no-trunc", "-f", "name=job")))
    assert full[0]["COMMAND"] == '"sh -c echo a rather long command line"'
    assert full[0]["CONTAINER ID"] == fleet["job"].id


def test_ps_format_json_lines(cli: Cli, fleet: dict[str, Any]) -> None:
    docs = json_lines(ok(cli("ps", "-a", "--format", "json")))
    assert [d["Names"] for d in docs] == ORDER_ALL
    for d in docs:
        assert set(d) == PS_JSON_FIELDS
        rec = fleet[d["Names"]]
        assert d["ID"] == rec.id  # full ID, like --no-trunc
        assert d["State"] == rec.status
        assert d["Status"] == EXPECTED_STATUS[d["Names"]]
        assert d["CreatedAt"] == rec.created
        assert d["Version"] == rec.version
    web = docs[-1]
    assert web["Image"] == "nginx:1.27"
    assert web["Command"] == "nginx -g daemon off;"
    assert web["Ports"] == "0.0.0.0:8080->80/tcp"
    assert web["Labels"] == "app=shop,tier=front"
    assert web["Networks"] == "bridge"
    assert web["Version"] == 3  # create, start, exec create


def test_ps_warns_about_a_corrupt_record_and_lists_the_rest(cli: Cli, store: Store, client: redis.Redis) -> None:
    a = store.containers.create(Container.new("alpine", name="fine"))
    b = store.containers.create(Container.new("alpine", name="broken"))
    client.set(store.keys.container(b.id), b"{not json")
    res = cli("ps", "-a", "-q", "--no-trunc")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [a.id]
    assert b.id in res.stderr and "Traceback" not in res.stderr


def test_ps_corrupt_record_is_one_warning_line(cli: Cli, store: Store, client: redis.Redis) -> None:
    b = store.containers.create(Container.new("alpine", name="broken"))
    client.set(store.keys.container(b.id), b"{not json")
    res = cli("ps", "-a")
    assert res.returncode == 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: ") and b.id in lines[0], res.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["ps", "--filter", "foo=bar"], "Error: invalid filter 'foo'"),
    (["ps", "--filter", "status=up"], "Error: invalid filter 'status=up'"),
    (["ps", "--filter", "novalue"], "Error: bad format of filter (expected name=value): 'novalue'"),
    (["ps", "--filter", "since=nosuch"], "Error: No such container: nosuch"),
    (["events", "--filter", "foo=bar"], "Error: invalid filter 'foo' (use type, event, container, label)"),
    (["events", "--filter", "type=network"], None),
    (["events", "--since", "yesterday"], None),
    (["inspect", "--type", "exec", "a b"], "Error: invalid exec reference 'a b'"),
    (["inspect", "a b"], "Error: invalid container reference 'a b'"),
])
def test_bad_input_is_one_error_line(cli: Cli, argv: list[str], message: str | None) -> None:
    line = one_line_error(cli(*argv, timeout=30))
    if message is not None:
        assert line == message


def test_bad_namespace_and_url_are_one_error_line(redis_proc: RedisProcess) -> None:
    line = one_line_error(run_cli("--redis-url", redis_proc.url, "--namespace", "bad ns", "ps"))
    assert "invalid namespace 'bad ns'" in line
    line = one_line_error(run_cli("--redis-url", "http://127.0.0.1:1/", "ps"))
    assert "invalid Redis URL" in line


# --- unreachable Redis ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_url() -> str:
    """A port nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("argv", [["ps"], ["ps", "-a", "--format", "json"], ["inspect", "web"], ["locks"],
                                  ["events", "--filter", "container=web"], ["events"],
                                  ["events", "--since", "0-0", "--format", "json"]])
def test_unreachable_redis_is_one_error_line(dead_url: str, argv: list[str]) -> None:
    started = time.monotonic()
    line = one_line_error(run_cli("--redis-url", dead_url, *argv, timeout=30))
    assert "unavailable" in line.lower() or "connect" in line.lower(), line
    assert time.monotonic() - started < 20


def test_environment_variables_select_redis_and_namespace(redis_proc: RedisProcess, namespace: str,
                                                          store: Store) -> None:
    c = store.containers.create(Container.new("alpine", name="envy"))
    env = cli_env(STATESTORE_REDIS_URL=redis_proc.url, STATESTORE_NAMESPACE=namespace)
    assert ok(run_cli("ps", "-aq", env=env)).splitlines() == [c.id[:12]]
    # flags win over the environment
    line = one_line_error(run_cli("--redis-url", "redis://127.0.0.1:1/0", "ps", env=env))
    assert "unavailable" in line.lower()


# --- inspect ----------------------------------------------------------------------------------------
def test_inspect_prints_a_json_array_of_records(cli: Cli, store: Store, fleet: dict[str, Any]) -> None:
    web, db = fleet["web"], fleet["db"]
    docs = orjson.loads(ok(cli("inspect", "web", db.id[:10], web.id)))
    assert docs == [store.containers.get("web").to_dict(), store.containers.get("db").to_dict(),
                    store.containers.get("web").to_dict()]
    assert docs[0]["Name"] == "/web" and docs[0]["State"]["Status"] == "running"
    assert docs[0]["ExecIDs"] == [fleet["exec"].id]


def test_inspect_output_is_indented_like_docker(cli: Cli, fleet: dict[str, Any]) -> None:
    out = ok(cli("inspect", "job"))
    assert out.startswith("[\n  {\n")
    assert out.endswith("}\n]\n")


def test_inspect_missing_ref_exits_1_but_prints_the_others(cli: Cli, store: Store, fleet: dict[str, Any]) -> None:
    res = cli("inspect", "web", "nosuch", "job")
    assert res.returncode == 1
    assert res.stderr == "Error: No such container: nosuch\n"
    assert [d["Name"] for d in orjson.loads(res.stdout)] == ["/web", "/job"]


def test_inspect_only_missing_refs_prints_an_empty_array(cli: Cli, fleet: dict[str, Any]) -> None:
    res = cli("inspect", "nosuch", "other")
    assert res.returncode == 1
    assert orjson.loads(res.stdout) == []
    assert res.stderr.splitlines() == ["Error: No such container: nosuch", "Error: No such container: other"]


def test_inspect_exec_refs(cli: Cli, store: Store, fleet: dict[str, Any]) -> None:
    x = fleet["exec"]
    expected = store.execs.get(x.id).to_dict()
    assert orjson.loads(ok(cli("inspect", x.id))) == [expected]
    assert orjson.loads(ok(cli("inspect", "--type", "exec", x.id[:12]))) == [expected]
    res = cli("inspect", "--type", "exec", "web")
    assert (res.returncode, res.stderr) == (1, "Error: No such exec instance: web\n")
    res = cli("inspect", "--type", "container", x.id)
    assert (res.returncode, res.stderr) == (1, f"Error: No such container: {x.id}\n")
    docs = orjson.loads(ok(cli("inspect", "web", x.id)))
    assert [d.get("Name", d.get("ID")) for d in docs] == ["/web", x.id]


def test_inspect_ambiguous_prefix_is_an_error(cli: Cli, store: Store) -> None:
    for i in range(2):
        store.containers.create(Container.new("alpine", id=f"ab{i}" + "0" * 61))
    res = cli("inspect", "ab")
    assert res.returncode == 1
    assert res.stderr == "Error: multiple IDs found with provided prefix: ab\n"


# --- events -------------------------------------------------------------------------------------------
class EventsProc:
    """``statestore events ...`` running in the background; its stdout lines are collected by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "statestore", *argv], cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_lines(self, n: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"waited for {n} lines, got {len(self.lines)}: {self.lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"events exited ({self.proc.poll()}) after {self.lines}")
            self.lines.append(line)
        return self.lines

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> tuple[int, str]:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        assert self.proc.stderr is not None
        return rc, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def events_proc(base_args: list[str]) -> Iterator[Callable[..., EventsProc]]:
    started: list[EventsProc] = []

    def start(*argv: str) -> EventsProc:
        p = EventsProc([*base_args, "events", *argv])
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def all_events(store: Store) -> list[Any]:
    with store.watch(since="0-0") as w:
        return w.poll(0)


def wait_for_xread_client(client: redis.Redis, before: set[int], timeout: float = 20) -> None:
    """Wait until a new connection has issued XREAD (the events command is following the log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {int(c["id"]) for c in client.client_list() if c.get("cmd") == "xread"}
        if now - before:
            return
        time.sleep(0.05)
    raise AssertionError("the events command never started reading the change log")


def xread_clients(client: redis.Redis) -> set[int]:
    return {int(c["id"]) for c in client.client_list() if c.get("cmd") == "xread"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_events_json_follows_commits_in_order_and_exits_cleanly(
    events_proc: Callable[..., EventsProc], store: Store, namespace: str, sig: int
) -> None:
    c = store.containers.create(Container.new("alpine", name="web", labels={"app": "shop"}))
    store.containers.update("web", lambda x: x.state.set_running(pid=1))
    p = events_proc("--since", "0-0", "--format", "json")
    p.wait_lines(2)                                  # the backlog, and the signal handlers are in place
    store.execs.create(ExecConfig.new("web", ["true"]))
    store.containers.update("web", lambda x: x.labels.update(tier="front"))
    store.containers.rename("web", "www")
    store.containers.delete("www")
    expected = all_events(store)
    assert len(expected) == 8  # create, start, exec create + container update, label, rename, delete x2
    p.wait_lines(len(expected))
    rc, err = p.stop(sig)
    assert rc == 0, err
    assert "Traceback" not in err and err == ""
    got = [orjson.loads(line) for line in p.lines]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert set(g) == EVENT_JSON_FIELDS
        assert (g["type"], g["kind"], g["id"], g["name"], g["container"], g["version"], g["status"],
                g["revision"], g["seq"], g["labels"]) == (
            e.type, e.kind, e.id, e.name, e.container_id, e.version, e.status, e.revision, e.seq, e.labels)
        assert g["namespace"] == namespace
    assert [g["seq"] for g in got] == list(range(got[0]["seq"], got[0]["seq"] + len(got)))
    assert [(g["type"], g["kind"]) for g in got][-2:] == [("delete", "exec"), ("delete", "container")]
    assert got[0]["id"] == c.id and got[-1]["name"] == "www"


def test_events_from_now_prints_only_new_commits(
    events_proc: Callable[..., EventsProc], store: Store, client: redis.Redis
) -> None:
    store.containers.create(Container.new("alpine", name="before"))
    before = xread_clients(client)
    p = events_proc("--format", "json")
    wait_for_xread_client(client, before)
    after = store.containers.create(Container.new("alpine", name="after"))
    lines = p.wait_lines(1)
    rc, err = p.stop(signal.SIGINT)
    assert (rc, err) == (0, "")
    assert [orjson.loads(line)["id"] for line in lines] == [after.id]


def test_events_text_format(events_proc: Callable[..., EventsProc], store: Store, fleet: dict[str, Any]) -> None:
    expected = all_events(store)
    p = events_proc("--since", "0-0")
    lines = p.wait_lines(len(expected))
    rc, err = p.stop(signal.SIGTERM)
    assert (rc, err) == (0, "")
    assert len(lines) == len(expected)
    pattern = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (container|exec) (create|update|delete) "
                         r"([0-9a-f]{64}) \((.*)\)")
    for line, e in zip(lines, expected, strict=True):
        m = pattern.fullmatch(line)
        assert m, line
        assert (m[2], m[3], m[4]) == (e.kind, e.type, e.id)
        assert f"revision={e.revision}" in m[5] and f"version={e.version}" in m[5]
        if e.kind == "container":
            assert m[5].startswith(f"name={e.name}, ")
        else:
            assert m[5].startswith(f"container={e.container_id[:12]}, ")
    exec_line = next(line for line in lines if " exec create " in line)
    assert f"container={fleet['web'].id[:12]}" in exec_line
    web_create = next(line for line in lines if f"create {fleet['web'].id}" in line)
    assert "app=shop" in web_create and "tier=front" in web_create


@pytest.mark.parametrize(("filters", "want"), [
    (["type=container"], lambda e, f: e.kind == "container"),
    (["type=exec"], lambda e, f: e.kind == "exec"),
    (["event=update"], lambda e, f: e.type == "update"),
    (["event=create", "type=exec"], lambda e, f: e.type == "create" and e.kind == "exec"),
    (["container=web"], lambda e, f: e.container_id == f["web"].id),
    # "db" is also hex: as in docker, it matches any container whose ID starts with it (a random ID does,
    # once in a while), so the expectation says so too
    (["container=web", "container=db"],
     lambda e, f: e.container_id in (f["web"].id, f["db"].id) or e.container_id.startswith("db")),
    (["label=tier=data"], lambda e, f: e.labels.get("tier") == "data"),
])
def test_events_filters(events_proc: Callable[..., EventsProc], store: Store, fleet: dict[str, Any],
                        filters: list[str], want: Callable[[Any, dict[str, Any]], bool]) -> None:
    expected = [e for e in all_events(store) if want(e, fleet)]
    assert expected
    argv = [a for f in filters for a in ("--filter", f)]
    p = events_proc("--since", "0-0", "--format", "json", *argv)
    p.wait_lines(len(expected))
    time.sleep(0.5)  # nothing more comes
    rc, err = p.stop(signal.SIGINT)
    assert (rc, err) == (0, "")
    assert [orjson.loads(line)["revision"] for line in p.lines] == [e.revision for e in expected]


def test_events_since_a_revision(events_proc: Callable[..., EventsProc], store: Store) -> None:
    store.containers.create(Container.new("alpine", name="aa"))
    mark = store.containers.create(Container.new("alpine", name="bb")).revision
    c = store.containers.create(Container.new("alpine", name="cc"))
    p = events_proc("--since", mark, "--format", "json")
    lines = p.wait_lines(1)
    time.sleep(0.3)
    rc, err = p.stop()
    assert (rc, err) == (0, "")
    assert [orjson.loads(line)["id"] for line in p.lines] == [c.id]
    assert lines


def test_events_container_filter_accepts_a_name_that_does_not_exist_yet(cli: Cli, store: Store) -> None:
    res = cli("events", "--filter", "container=nosuch", "--until", "1s", timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


# --- locks --------------------------------------------------------------------------------------------
def test_locks_empty(cli: Cli) -> None:
    titles, rows = parse_table(ok(cli("locks")))
    assert titles == LOCKS_HEADER and rows == []
    assert ok(cli("locks", "--format", "json")) == ""


def test_locks_warn_about_a_lock_key_they_cannot_read(cli: Cli, client: redis.Redis, store: Store) -> None:
    client.set(store.keys.lock("e" * 64), b"garbage", px=30_000)
    res = cli("locks")
    titles, rows = parse_table(res.stdout)
    assert (res.returncode, titles, rows) == (0, LOCKS_HEADER, [])
    assert res.stderr == "Warning: 1 lock key(s) unreadable or just released; run statestore fsck\n"


def test_locks_show_a_held_lock(cli: Cli, client: redis.Redis, namespace: str, fleet: dict[str, Any]) -> None:
    holder = Store(client, namespace=namespace, replica_id="replica-test")
    try:
        with holder.lock("web", ttl=30.0) as lease:
            titles, rows = parse_table(ok(cli("locks")))
            docs = json_lines(ok(cli("locks", "--format", "json")))
    finally:
        holder.close()
    assert titles == LOCKS_HEADER
    assert len(rows) == 1
    row = rows[0]
    assert (row["CONTAINER ID"], row["NAME"], row["REPLICA"], row["HOST"], row["PID"], row["TOKEN"]) == (
        fleet["web"].id[:12], "web", "replica-test", socket.gethostname(), str(os.getpid()), str(lease.token))
    assert re.fullmatch(r"\d+\.\ds", row["AGE"]) and float(row["AGE"][:-1]) < 30
    assert re.fullmatch(r"\d+\.\ds", row["TTL LEFT"]) and 0 < float(row["TTL LEFT"][:-1]) <= 30
    assert not row["TTL LEFT"].endswith("WEDGED")
    assert len(docs) == 1
    d = docs[0]
    assert set(d) == LOCK_JSON_FIELDS
    assert (d["container"], d["token"], d["replica"], d["host"], d["pid"], d["wedged"]) == (
        fleet["web"].id, lease.token, "replica-test", socket.gethostname(), os.getpid(), False)
    assert 0 <= d["age"] < 30 and 0 < d["ttl_left"] <= 30
    assert ok(cli("locks", "--format", "json")) == ""  # released


def test_locks_mark_a_wedged_lock(cli: Cli, client: redis.Redis, store: Store, fleet: dict[str, Any]) -> None:
    """A lock acquired long ago (written by hand, as schema.md describes) is reported as wedged."""
    secs, _ = client.time()
    acquired = (secs - 120) * 1000
    cid = fleet["db"].id
    value = (f'{{"token":77,"acquired_ms":{acquired},"replica":"stuck-r2","host":"h2","pid":4242,'
             f'"ttl_ms":10000}}')
    client.set(store.keys.lock(cid), value, px=10_000)
    titles, rows = parse_table(ok(cli("locks")))
    assert titles == LOCKS_HEADER
    assert len(rows) == 1
    row = rows[0]
    assert (row["CONTAINER ID"], row["NAME"], row["REPLICA"], row["HOST"], row["PID"], row["TOKEN"]) == (
        cid[:12], "db", "stuck-r2", "h2", "4242", "77")
    assert row["TTL LEFT"].endswith("WEDGED")
    assert 119 <= float(row["AGE"][:-1]) < 140
    (d,) = json_lines(ok(cli("locks", "--format", "json")))
    assert (d["container"], d["token"], d["replica"], d["wedged"], d["acquired_ms"]) == (
        cid, 77, "stuck-r2", True, acquired)


# --- fsck ------------------------------------------------------------------------------------------------
def test_fsck_exit_codes(cli: Cli, client: redis.Redis, store: Store, fleet: dict[str, Any]) -> None:
    ok(cli("fsck"))
    assert orjson.loads(ok(cli("fsck", "--format", "json")))["clean"] is True
    client.delete(store.keys.name("web"))  # invariant 1: the record has no name key
    res = cli("fsck")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert store.keys.name("web") in res.stdout
    res = cli("fsck", "--format", "json")
    assert res.returncode == 1
    assert orjson.loads(res.stdout)["clean"] is False
    ok(cli("fsck", "--repair"))  # everything found was repaired: exit 0
    ok(cli("fsck"))
    assert client.get(store.keys.name("web")) == fleet["web"].id.encode()


def test_fsck_repair_exits_1_when_something_is_left(cli: Cli, client: redis.Redis, store: Store,
                                                    fleet: dict[str, Any]) -> None:
    key = store.keys.container(fleet["old"].id)
    client.set(key, b"{broken")  # a corrupt record is reported, never repaired or deleted
    res = cli("fsck", "--repair")
    assert res.returncode == 1 and key in res.stdout and "Traceback" not in res.stderr
    assert client.get(key) == b"{broken"


def test_fsck_unreachable_redis(dead_url: str) -> None:
    one_line_error(run_cli("--redis-url", dead_url, "fsck", timeout=30))
