"""docker-compose.yml and Dockerfile: structure, and every statestore command they run parses with the CLI.

Docker is not available where the suite runs, so this checks what can be checked without it. PyYAML
is not a test dependency: the compose file keeps to a small block-YAML subset (mappings, lists of
scalars, quoted or plain scalars, comments) that ``parse_yaml_subset`` below reads. The parser is
strict: anything outside the subset (flow collections, anchors, tags, block scalars, tabs, YAML 1.1
booleans such as ``yes``, unquoted ``8080:80``) is an error, so it cannot silently read the file
differently from Docker Compose. When PyYAML happens to be installed, the two readings are compared.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
REDIS_FLAGS = {"--appendonly": "yes", "--appendfsync": "everysec", "--notify-keyspace-events": "KEA"}
STATESTORE_SERVICES = {"replica1": "daemon", "replica2": "daemon", "replica3": "daemon", "events": "events",
                       "demo": "demo"}


# --- a strict reader for the YAML subset the compose file uses ---------------------------------------
class YamlSubsetError(ValueError):
    pass


_PLAIN_REJECT_START = tuple("[]{}&*!|>%@`,?'\"")
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n", "True", "False", "TRUE", "FALSE", "Yes", "No", "On", "Off"}


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and (i == 0 or line[i - 1] in " -:"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i]
    return line


def _scalar(text: str, lineno: int) -> Any:
    if text.startswith('"'):
        if not re.fullmatch(r'"[^"\\]*"', text):
            raise YamlSubsetError(f"line {lineno}: unsupported double-quoted scalar {text!r}")
        return text[1:-1]
    if text.startswith("'"):
        if not re.fullmatch(r"'(?:[^']|'')*'", text):
            raise YamlSubsetError(f"line {lineno}: unsupported single-quoted scalar {text!r}")
        return text[1:-1].replace("''", "'")
    if text.startswith(_PLAIN_REJECT_START) or text.startswith("- ") or ": " in text or text.endswith(":"):
        raise YamlSubsetError(f"line {lineno}: unsupported plain scalar {text!r}")
    if text in _YAML11_BOOLS:
        raise YamlSubsetError(f"line {lineno}: {text!r} is a boolean in YAML 1.1 and a string in 1.2: quote it")
    if re.fullmatch(r"[0-9]+(:[0-9]+)+", text):
        raise YamlSubsetError(f"line {lineno}: {text!r} is a base-60 number in YAML 1.1: quote it")
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]*\.[0-9]+", text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    return text


def parse_yaml_subset(text: str) -> Any:
    """Block mappings and sequences of scalars, by indentation; raises YamlSubsetError on anything else."""
    lines: list[tuple[int, int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise YamlSubsetError(f"line {lineno}: tab character")
        if raw.startswith(("---", "...", "%")):
            raise YamlSubsetError(f"line {lineno}: document markers and directives are not supported")
        body = _strip_comment(raw).rstrip()
        if body.strip():
            lines.append((lineno, len(body) - len(body.lstrip(" ")), body.strip()))
    if not lines:
        return None
    if lines[0][1] != 0:
        raise YamlSubsetError(f"line {lines[0][0]}: the document must start at column 0")
    value, i = _block(lines, 0, 0)
    if i != len(lines):
        raise YamlSubsetError(f"line {lines[i][0]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][2] == "-" or lines[i][2].startswith("- "):
        seq: list[Any] = []
        while i < len(lines) and lines[i][1] == indent:
            lineno, _, content = lines[i]
            if not (content == "-" or content.startswith("- ")):
                raise YamlSubsetError(f"line {lineno}: a mapping key inside a list")
            item = content[1:].strip()
            if not item or re.match(r"""^(?:[^'"\s][^:]*|"[^"]*"|'[^']*'):(\s|$)""", item):
                raise YamlSubsetError(f"line {lineno}: only scalars are supported as list items")
            seq.append(_scalar(item, lineno))
            i += 1
        return seq, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][1] == indent:
        lineno, _, content = lines[i]
        m = re.fullmatch(r"""([A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"\\]*"|'[^']*'):(?: +(.*))?""", content)
        if m is None:
            raise YamlSubsetError(f"line {lineno}: expected 'key:' or 'key: value', got {content!r}")
        key = m[1].strip("'\"") if m[1][0] in "'\"" else m[1]
        if key in mapping:
            raise YamlSubsetError(f"line {lineno}: duplicate key {key!r}")
        i += 1
        if m[2] is not None:
            mapping[key] = _scalar(m[2], lineno)
        elif i < len(lines) and lines[i][1] > indent:
            mapping[key], i = _block(lines, i, lines[i][1])
        elif i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("-"):
            raise YamlSubsetError(f"line {lines[i][0]}: indent a key's list items under the key")
        else:
            mapping[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise YamlSubsetError(f"line {lines[i][0]}: unexpected indentation")
    return mapping, i


def test_subset_parser_reads_what_it_supports() -> None:
    text = """# comment
a: 1
b: "x: y # not a comment"
c:
  - one
  - 'it''s'
  - "quoted"   # a comment
d:
  e: true
  f:
  g: 2s
h: redis://redis:6379/0
"""
    assert parse_yaml_subset(text) == {"a": 1, "b": "x: y # not a comment", "c": ["one", "it's", "quoted"],
                                       "d": {"e": True, "f": None, "g": "2s"}, "h": "redis://redis:6379/0"}


@pytest.mark.parametrize("text", [
    "a: [1, 2]\n", "a: {}\n", "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a:\n\tb: 1\n",
    "a: yes\n", "ports:\n  - 8080:80\n", "a: 1\na: 2\n", "a:\n  b: 1\n c: 2\n", "a:\n- 1\n", "- a: 1\n",
    "a: b: c\n", "---\na: 1\n", "  a: 1\n",
])
def test_subset_parser_rejects_everything_else(text: str) -> None:
    with pytest.raises(YamlSubsetError):
        parse_yaml_subset(text)


# --- the compose file ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = parse_yaml_subset(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


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
