"""docker-compose.yml and Dockerfile: the compose file is valid against the Compose Specification's
JSON schema, means what statestore needs (services, commands, health checks, volumes...), and every
statestore command it runs parses with the CLI.

Docker is not available where the suite runs, so this checks what can be checked without it. The file
is read with PyYAML and validated with ``jsonschema`` against ``tests/data/compose-spec.json``, a copy of
the specification's schema (tests/data/README.md names its source and licence). PyYAML reads YAML 1.1,
Docker Compose reads YAML 1.2, so ``load_compose`` also refuses the plain scalars the two read
differently (``yes``/``on``, base-60 numbers such as an unquoted ``22:22``, ``0755``) and duplicate
keys (PyYAML keeps the last, Compose refuses the file).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
REDIS_FLAGS = {"--appendonly": "yes", "--appendfsync": "everysec", "--notify-keyspace-events": "KEA"}
STATESTORE_SERVICES = {"replica1": "daemon", "replica2": "daemon", "replica3": "daemon", "events": "events",
                       "demo": "demo"}


# --- reading and validating ------------------------------------------------------------------------
class ComposeFileError(ValueError):
    pass


# plain scalars that YAML 1.1 (PyYAML) resolves to a bool or a number and YAML 1.2 (Compose) does not, or
# to another number: booleans other than true/false, base-60 and underscore numbers, octals
_YAML11_ONLY = re.compile(r"""(?x)
    y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|True|TRUE|False|FALSE
  | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
  | [-+]?[0-9.][0-9.]*_[0-9_.]*
  | [-+]?0[0-7_]+ | [-+]?0b[01_]+
""")


def _check_nodes(node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode):
                raise ComposeFileError(f"line {line}: a mapping key that is not a scalar")
            if key.value in seen:
                raise ComposeFileError(f"line {line}: duplicate key {key.value!r}")
            seen.add(key.value)
            _check_nodes(key)
            _check_nodes(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_nodes(item)
    elif isinstance(node, yaml.ScalarNode) and node.style is None and _YAML11_ONLY.fullmatch(node.value):
        raise ComposeFileError(f"line {node.start_mark.line + 1}: {node.value!r} means one thing in YAML 1.1 "
                               "and another in YAML 1.2: quote it")


def load_compose(text: str) -> Any:
    """The document, read with PyYAML; ComposeFileError for what YAML 1.1 and 1.2 read differently."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is not None:
        _check_nodes(node)
    return yaml.safe_load(text)


@functools.cache
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: Any) -> list[str]:
    """What the Compose Specification's schema finds wrong with ``doc``, one line per error."""
    errors = sorted(compose_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_compose(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


@pytest.mark.parametrize(("path", "value", "error"), [
    # unknown keys (the schema allows only x- extensions besides its own)
    ("servics", {"web": {"image": "x"}}, "(top): 'servics' does not match any of the regexes: '^x-'"),
    ("services/redis/imagee", "redis:7", "services/redis: 'imagee' does not match any of the regexes: '^x-'"),
    # wrong types
    ("services/redis/healthcheck/interval", 2, "services/redis/healthcheck/interval: 2 is not of type 'string'"),
    ("services/replica1/stop_grace_period", 30, "services/replica1/stop_grace_period: 30 is not of type 'string'"),
    ("services/replica1/init", 1, "services/replica1/init: 1 is not of type 'boolean', 'string'"),
    ("services/replica1/depends_on", "redis", "services/replica1/depends_on: 'redis' is not "),
    ("services/demo/profiles", "demo", "services/demo/profiles: 'demo' is not of type 'array'"),
    ("services/operator/environment", ["A=1", "A=1"], "services/operator/environment: ['A=1', 'A=1'] is not "),
    ("volumes", ["redis-data"], "volumes: ['redis-data'] is not of type 'object'"),
])
def test_schema_refuses_a_broken_compose_file(path: str, value: Any, error: str) -> None:
    doc = load_compose(COMPOSE.read_text())
    *parents, last = path.split("/")
    target = doc
    for p in parents:
        target = target[p]
    target[last] = value
    errors = schema_errors(doc)
    assert any(e.startswith(error) for e in errors), errors


def test_schema_refuses_a_broken_compose_text() -> None:
    """The same, from the text: a misspelt top-level key appended to the real file."""
    assert schema_errors(load_compose(COMPOSE.read_text() + "\nvolume:\n  extra: {}\n")) == [
        "(top): 'volume' does not match any of the regexes: '^x-'"]


@pytest.mark.parametrize("text", [
    "a: yes\n", "a: off\n", "a: 0755\n", "ports:\n  - 22:22\n", "a: 1_000\n", "a: 1\na: 2\n",
    "services:\n  web:\n    init: True\n", "services:\n  web: {}\n  web: {}\n",
])
def test_loader_refuses_what_yaml_1_1_and_1_2_read_differently(text: str) -> None:
    with pytest.raises(ComposeFileError):
        load_compose(text)


def test_loader_reads_quoted_and_unambiguous_scalars() -> None:
    text = 'a: "yes"\nb: "8080:80"\nc: true\nd: 2s\ne: 30\nf: redis://redis:6379/0\ng: [x, "0755", 0.5]\n'
    assert load_compose(text) == {"a": "yes", "b": "8080:80", "c": True, "d": "2s", "e": 30,
                                  "f": "redis://redis:6379/0", "g": ["x", "0755", 0.5]}


# --- what the compose file means for statestore -------------------------------------------------------
def command_argv(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(x) for x in cmd]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def parse_cli(argv: list[str], env: dict[str, str] | None = None,
              monkeypatch: pytest.MonkeyPatch | None = None) -> argparse.Namespace:
    """``statestore ARGS`` through the real CLI parser; argparse's exit becomes a test failure."""
    from statestore.cli import build_parser

    if monkeypatch is not None:
        for k in ("STATESTORE_REDIS_URL", "STATESTORE_NAMESPACE"):
            monkeypatch.delenv(k, raising=False)
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"statestore {shlex.join(argv)} does not parse (exit {exc.code})")


def effective_url(args: argparse.Namespace, env: dict[str, str]) -> str:
    """The Redis URL the CLI will use: the flag, else $STATESTORE_REDIS_URL, else the built-in default
    (the parser may resolve the environment itself or leave it to ``main``)."""
    from statestore.cli import DEFAULT_URL

    return str(args.redis_url or env.get("STATESTORE_REDIS_URL") or DEFAULT_URL)


def test_top_level_and_services(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"}
    assert set(compose["services"]) == {"redis", "replica1", "replica2", "replica3", "events", "operator", "demo"}
    for name, svc in compose["services"].items():
        assert isinstance(svc, dict), name
        assert "image" in svc or "build" in svc, f"{name} has neither image nor build"
        if "build" in svc:
            context = svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"]
            dockerfile = "Dockerfile" if isinstance(svc["build"], str) else svc["build"].get("dockerfile",
                                                                                                "Dockerfile")
            assert (ROOT / context / dockerfile).is_file(), f"{name}: no {context}/{dockerfile}"
        if "restart" in svc:
            assert svc["restart"] in ("no", "always", "on-failure", "unless-stopped"), name


def test_statestore_services_share_one_image(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    images = {svcs[n].get("image") for n in (*STATESTORE_SERVICES, "operator")}
    assert len(images) == 1 and None not in images
    # every service with that image can build it, so none of them tries to pull a local tag
    assert all(svcs[n].get("build") == "." for n in (*STATESTORE_SERVICES, "operator"))


def test_depends_on_names_existing_services_without_cycles(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    for name, svc in svcs.items():
        for dep, condition in depends_on(svc).items():
            assert dep in svcs, f"{name} depends on unknown service {dep}"
            assert dep != name
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep} to be healthy, but it has no healthcheck"
    state: dict[str, int] = {}

    def visit(n: str) -> None:
        assert state.get(n) != 1, f"depends_on cycle through {n}"
        if state.get(n) == 2:
            return
        state[n] = 1
        for d in depends_on(svcs[n]):
            visit(d)
        state[n] = 2

    for n in svcs:
        visit(n)
    for n in (*STATESTORE_SERVICES, "operator"):
        assert depends_on(svcs[n]).get("redis") == "service_healthy", n


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in compose["services"].items():
        for v in svc.get("volumes") or []:
            source = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared


def test_redis_has_aof_and_keyspace_events(compose: dict[str, Any]) -> None:
    redis_svc = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7(\.\d+)*(-[a-z0-9.]+)?", redis_svc["image"]), redis_svc["image"]
    argv = command_argv(redis_svc)
    assert argv[0] == "redis-server"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags.items() >= REDIS_FLAGS.items(), flags
    assert any(str(v).split(":")[1] == "/data" for v in redis_svc["volumes"]), "the AOF lives in /data"
    test = redis_svc["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "redis-cli" in " ".join(test)


def test_every_statestore_command_parses(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    svcs = compose["services"]
    seen = {}
    for name, svc in svcs.items():
        argv = command_argv(svc)
        if not argv or argv[0] != "statestore":
            continue
        args = parse_cli(argv[1:], environment(svc), monkeypatch)
        seen[name] = args
        url = urlparse(effective_url(args, environment(svc)))
        assert url.scheme == "redis" and url.hostname in svcs, f"{name}: {url.geturl()} is not a service"
        assert url.hostname == "redis"
        if name != "demo":  # the demo makes a fresh namespace of its own
            assert args.namespace == "prod", name
    assert {n: a.command for n, a in seen.items()} == STATESTORE_SERVICES
    replica_ids = [seen[n].replica_id for n in ("replica1", "replica2", "replica3")]
    assert replica_ids == ["r1", "r2", "r3"]
    assert seen["events"].format == "json"


def test_operator_shell_reaches_the_same_namespace(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    op = compose["services"]["operator"]
    assert command_argv(op) == ["sleep", "infinity"]
    env = environment(op)
    args = parse_cli(["ps", "-a"], env, monkeypatch)  # docker compose exec operator statestore ps -a
    assert (args.command, args.all) == ("ps", True)
    assert (effective_url(args, env), args.namespace) == ("redis://redis:6379/0", "prod")
    replica = parse_cli(command_argv(compose["services"]["replica1"])[1:], {}, monkeypatch)
    assert effective_url(args, env) == effective_url(replica, {})


def test_commands_in_the_comments_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usage notes at the top of the file run statestore commands that exist."""
    found = 0
    for line in COMPOSE.read_text().splitlines():
        m = re.match(r"#\s+docker compose exec operator statestore (.*?)\s*(#.*)?$", line)
        if m:
            parse_cli(shlex.split(m[1]), {"STATESTORE_REDIS_URL": "redis://redis:6379/0"}, monkeypatch)
            found += 1
    assert found >= 2


def test_demo_runs_only_on_request(compose: dict[str, Any]) -> None:
    """``docker compose up`` starts everything but the demo (a profile); ``run --rm demo`` starts it."""
    svcs = compose["services"]
    assert svcs["demo"]["profiles"] == ["demo"]
    assert all("profiles" not in svc for name, svc in svcs.items() if name != "demo")
    assert "restart" not in svcs["demo"]


def test_init_and_grace_period_for_signals(compose: dict[str, Any]) -> None:
    """statestore is PID 1's child under init, so SIGTERM reaches it; replicas get time to drain."""
    for n in (*STATESTORE_SERVICES, "operator"):
        assert compose["services"][n].get("init") is True, n
    for n in ("replica1", "replica2", "replica3"):
        grace = compose["services"][n].get("stop_grace_period", "10s")
        assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) >= 10, n


# --- the Dockerfile --------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_installs_statestore_and_redis_cli() -> None:
    ins = dockerfile_instructions()
    assert ins[0][0] == "FROM"
    m = re.fullmatch(r"python:3\.(\d+)(-[a-z0-9.-]+)?", ins[0][1])
    assert m and int(m[1]) >= 11, ins[0][1]
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert re.search(r"pip install [^&]*\.\[embedded\]", runs)
    assert "redis-tools" in runs  # redis-cli for the operator shell
    for op, rest in ins:
        if op == "COPY":
            *sources, _dest = rest.split()
            for s in sources:
                assert (ROOT / s).exists(), f"COPY source {s} does not exist"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "embedded" in pyproject["project"]["optional-dependencies"]
    assert pyproject["project"]["scripts"]["statestore"] == "statestore.cli:main"
    copied = " ".join(rest for op, rest in ins if op == "COPY")
    assert "pyproject.toml" in copied and "statestore" in copied
    readme = pyproject["project"].get("readme")
    assert readme is None or readme in copied, "pip install . needs the readme pyproject.toml names"


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
