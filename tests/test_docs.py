"""The code examples of the Markdown docs (README.md, docs/*.md), run against a private redis-server.

Every fenced block carries a marker on the line before it (the convention is in
tests/doc_blocks.py); a block without one fails ``test_every_fenced_block_is_classified``, so a
new example is either run here or skipped with a reason written next to it.

How a block runs:

* Each runnable block starts on an emptied server (``FLUSHALL``).  A block marked ``fixture``
  first gets its doc's fixture (``DOC_FIXTURE``), ``fixture NAME`` the one named (``FIXTURES``):
  the state the doc's examples talk about, created through the public API, with the IDs the doc
  shows, so commands that name an ID work as written.
* Text substitution: ``127.0.0.1:6379`` (in URLs, and in ``redis-cli`` prompts) becomes the
  private server's address and ``127.0.0.1:6390`` a free port nothing listens on (both read as
  the doc shows them again in what an example prints).  In a ``fixture`` block the revisions the
  doc shows for the fixture's commits (``DOC_REVISIONS``) become the ones the fixture made, so a
  command that names a saved revision works as written.
* ``after previous``: the previous runnable block of the doc runs first (after the fixture),
  for an example that builds on the one before it.
* ``until killed``: an example that listens (subscribes, or blocks reading) runs in the background;
  once the server shows it listening, the fixture is applied, and when it has printed as many
  lines as the ``output`` block after it shows (or after a minute), it is killed and what it
  printed is compared.
* ``python`` blocks run in a subprocess of this interpreter, as written; a ``fixture`` block (a
  fragment) also gets ``from statestore import *`` and ``store``, a ``Store`` on the fixture's
  namespace.
* ``shell`` blocks run in bash, in a scratch directory holding links to the repository's
  ``tools`` and to the interpreter's virtualenv as ``.venv``, with that virtualenv's ``bin``
  first on ``$PATH`` (so ``statestore`` is the CLI under test), ``$STATESTORE_REDIS_URL`` set to
  the private server and ``redis-cli`` a wrapper that adds ``-p <its port>``.  A transcript
  (``output follows``) runs its ``$`` commands one after another in one bash, stderr merged
  into stdout as a terminal shows it, and each command's output is compared with the lines the
  doc shows under it.  An ``output`` block is compared with what the runnable block above it
  printed.
* Output comparison normalises IDs, revisions, times and durations (tests/doc_blocks.py,
  ``normalize``); counts, names, statuses and messages must be what the doc shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statestore import Container, ExecConfig, Store
from tests import doc_blocks
from tests.doc_blocks import DOCS, ROOT, Block, DocFormatError
from tests.redisproc import RedisProcess, free_port

SEP = "@@doc-block-command-end@@"
NOBODY_SHOWN = 6390  # the port the docs use for a server that is not there
_NOBODY: int | None = None
TIMEOUT = 60.0

WEB_ID = "cc6fd73cf407535da5a24a089eb3e7ea793b55b57fce645e4004401510b25fb2"
DB_ID = "cd9cf98e4c406dcf364b050f80fbb0d31fe14e4b71f2fe27092f70b2fa7f2de5"
SHOP_WEB_ID = "787d3554246264df21c7c4535c5b7f529a88ecefe73c4e0fb47ec3674121a3a0"

ONE_WEB = f"""
    store.containers.create(Container.new("nginx:1.27", name="web", labels={{"app": "shop"}}, id="{SHOP_WEB_ID}"))
    store.containers.update("web", lambda c: c.state.set_running(pid=4242))
    ex = store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"],
                                           id="3415028710b5e2d4703130809572a11d86060d1aa8c64f105dd48e40e99edf6f"))
    store.execs.update(ex.id, lambda e: e.set_running(pid=4300))
"""

#: name -> (namespace, setup): the state a doc's examples talk about, with the IDs the docs show
FIXTURES: dict[str, tuple[str, str]] = {
    # a container "web" that was created and never started
    "api": ("demo", """
        store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "shop"}))
    """),
    # "web" started, with one exec, started: the five commits events.md shows (seq 1 to 5)
    "shop": ("shop", ONE_WEB),
    # the same in namespace "default", for schema.md's change-log examples
    "schema-log": ("default", ONE_WEB),
    # operations.md: four containers (two running, one exited, one created) and one exec
    "prod": ("prod", """
        store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "shop"}))
        store.containers.update("web", lambda c: c.state.set_running(pid=4242))
        store.containers.create(Container.new("postgres:16", name="db", labels={"app": "shop"}))
        store.containers.update("db", lambda c: c.state.set_running(pid=4243))
        store.containers.create(Container.new("redis:7", name="cache", labels={"app": "shop"}))
        store.containers.update("cache", lambda c: c.state.set_running(pid=4244))
        store.containers.update("cache", lambda c: c.state.set_stopped(0))
        store.containers.create(Container.new("busybox:1.36", name="job"))
        store.containers.update("job", lambda c: c.labels.update(team="ops"))
        store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"]))
    """),
    # schema.md: "web" and "db" running, "job" created, one exec in "web"
    "schema": ("default", f"""
        store.containers.create(Container.new(
            "nginx:1.27", name="web", cmd=["nginx", "-g", "daemon off;"], labels={{"app": "shop", "tier": "front"}},
            port_bindings={{"80/tcp": [{{"HostIp": "", "HostPort": "8080"}}]}}, id="{WEB_ID}"))
        store.containers.update("web", lambda c: c.state.set_running(pid=4242))
        store.containers.create(Container.new("postgres:16", name="db", labels={{"app": "shop", "tier": "data"}},
                                              id="{DB_ID}"))
        store.containers.update("db", lambda c: c.state.set_running(pid=4243))
        store.containers.create(Container.new("busybox:1.36", name="job"))
        store.execs.create(ExecConfig.new("web", ["sh", "-c", "echo hi"],
                                          id="aaabbdeb32ab8b2424ce4a62f8509a7e4b915ef0318be45f2857784a12647b18"))
    """),
}
#: the revisions a doc shows for a fixture's commits, in commit order; a block's text gets the real ones
SHOP_REVISIONS = ("1795787133251-0", "1795787133252-0", "1795787133253-0", "1795787133253-1", "1795787133253-2")
DOC_REVISIONS = {"shop": SHOP_REVISIONS, "schema-log": SHOP_REVISIONS}

#: the fixture a block marked ``fixture`` gets, per doc (``fixture NAME`` picks another)
DOC_FIXTURE = {"docs/api.md": "api", "docs/events.md": "shop", "docs/operations.md": "prod",
               "docs/schema.md": "schema"}

PRELUDE = """\
import redis
from statestore import *
"""


# --- collecting ---------------------------------------------------------------------------------
def _all_blocks() -> list[Block]:
    blocks: list[Block] = []
    for doc in DOCS:
        try:
            blocks += doc_blocks.parse_doc(doc)
        except DocFormatError:
            pass  # reported by test_every_fenced_block_is_classified
    return blocks


ALL = _all_blocks()
RUNNABLE = [b for b in ALL if b.kind in ("python", "shell")]


def _output_after(block: Block) -> Block | None:
    """The ``output`` block that shows what ``block`` prints, if the next block of its doc is one."""
    same = [b for b in ALL if b.doc == block.doc]
    i = same.index(block)
    return same[i + 1] if i + 1 < len(same) and same[i + 1].kind == "output" else None


# --- the environment --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc_redis() -> Iterator[RedisProcess]:
    with RedisProcess().start() as proc:
        yield proc


@pytest.fixture
def workdir(tmp_path: Path, doc_redis: RedisProcess) -> Path:
    """A scratch directory with ``tools`` and ``.venv`` links and a ``bin`` of wrappers."""
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    bin_dir = tmp_path / "wrappers"
    bin_dir.mkdir()
    cli = bin_dir / "redis-cli"
    cli.write_text(f'#!/bin/sh\nexec "{_which("redis-cli")}" -p {doc_redis.port} "$@"\n')
    cli.chmod(0o755)
    return tmp_path


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


def _env(workdir: Path, redis_proc: RedisProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
    env["PATH"] = os.pathsep.join([str(workdir / "wrappers"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["STATESTORE_REDIS_URL"] = redis_proc.url
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _substitute(text: str, redis_proc: RedisProcess, revisions: dict[str, str]) -> str:
    for shown, real in revisions.items():
        text = text.replace(shown, real)
    text = text.replace(f"127.0.0.1:{NOBODY_SHOWN}", f"127.0.0.1:{_nobody_port()}")
    return text.replace("127.0.0.1:6379", f"127.0.0.1:{redis_proc.port}")


def _nobody_port() -> int:
    """A loopback port nothing listens on (the docs show 6390 for "no server there")."""
    global _NOBODY
    if _NOBODY is None:
        _NOBODY = free_port()
    return _NOBODY


def _as_shown(output: str, redis_proc: RedisProcess) -> str:
    """The substitution undone in what an example printed: the private server's port reads 6379."""
    output = output.replace(f"127.0.0.1:{_nobody_port()}", f"127.0.0.1:{NOBODY_SHOWN}")
    return output.replace(f"127.0.0.1:{redis_proc.port}", "127.0.0.1:6379").replace(
        f"-p {redis_proc.port}", "-p 6379")


def _run_python(source: str, workdir: Path, redis_proc: RedisProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", source], cwd=workdir, env=_env(workdir, redis_proc),
                          capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def _reset(redis_proc: RedisProcess) -> None:
    """FLUSHALL, and delete every ACL user but ``default`` (FLUSHALL keeps them)."""
    client = redis_proc.client()
    try:
        client.flushall()
        for user in client.acl_users():
            name = user.decode() if isinstance(user, bytes) else str(user)
            if name != "default":
                client.acl_deluser(name)
    finally:
        client.close()


def _previous_runnable(block: Block) -> Block:
    before = [b for b in RUNNABLE if b.doc == block.doc and b.line < block.line]
    assert before, f"{block.id}: marked 'after previous' but no runnable block precedes it"
    return before[-1]


def _prepare(block: Block, workdir: Path, redis_proc: RedisProcess) -> tuple[str, dict[str, str]]:
    """Empty the server, apply the doc's fixture if the block asks for it.  Returns the python
    lines that give a python block its ``store``, and the doc's revisions mapped to the fixture's."""
    _reset(redis_proc)
    name = _fixture_name(block)
    if name is None:
        return "", {}  # a whole example: it imports what it uses
    namespace = FIXTURES[name][0]
    store_line = f"store = Store.from_url({redis_proc.url!r}, namespace={namespace!r})\n"
    if "until killed" in block.options:
        return PRELUDE + store_line, {}  # the fixture comes once the example listens
    return PRELUDE + store_line, _apply_fixture(name, redis_proc)


def _apply_fixture(name: str, redis_proc: RedisProcess) -> dict[str, str]:
    namespace, setup = FIXTURES[name]
    with Store.from_url(redis_proc.url, namespace=namespace) as store:  # in this process: no interpreter start
        exec(textwrap.dedent(setup), {"store": store, "Container": Container, "ExecConfig": ExecConfig})
        entries: list[Any] = store.client.xrange(store.keys.log) or []
        made = [i.decode() if isinstance(i, bytes) else str(i) for i, _ in entries]
    shown = DOC_REVISIONS.get(name, ())
    assert len(shown) <= len(made), f"fixture {name!r} made {len(made)} commits, the doc shows {len(shown)}"
    return dict(zip(shown, made, strict=False))


def _wait_for_a_listener(redis_proc: RedisProcess, proc: subprocess.Popen[str]) -> None:
    """Until some client of the server is subscribed or in a blocking read (or the example exited)."""
    client = redis_proc.client(decode_responses=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            for c in client.client_list():
                if int(c.get("sub", 0)) or int(c.get("psub", 0)) or c.get("cmd") in ("xread", "blpop"):
                    return
            time.sleep(0.02)
    finally:
        client.close()
    raise AssertionError("the example never subscribed nor started a blocking read")


def _run_until_killed(block: Block, argv: list[str], workdir: Path, redis_proc: RedisProcess,
                      wanted: int) -> list[str]:
    """Start a listening example, apply the fixture once it listens, collect ``wanted`` lines, kill it."""
    name = _fixture_name(block)
    assert name is not None, f"{block.id}: 'until killed' needs a fixture to produce what it listens for"
    proc = subprocess.Popen(argv, cwd=workdir, env={**_env(workdir, redis_proc), "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        _wait_for_a_listener(redis_proc, proc)
        _apply_fixture(name, redis_proc)
        deadline = time.monotonic() + TIMEOUT
        while len(lines) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
    return [x.rstrip("\n") for x in lines]


def _fixture_name(block: Block) -> str | None:
    for opt in block.options:
        if opt == "fixture":
            return DOC_FIXTURE[block.doc]
        if opt.startswith("fixture "):
            return opt.split(None, 1)[1]
    return None


def _fail(block: Block, what: str, done: subprocess.CompletedProcess[str]) -> str:
    return f"{block.id}: {what}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


# --- the tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS)
def test_every_fenced_block_is_classified(doc: str) -> None:
    blocks = doc_blocks.parse_doc(doc)  # raises DocFormatError naming the first unmarked block
    for b in blocks:
        if b.kind == "output":
            prev = [x for x in blocks if x.line < b.line]
            assert prev and prev[-1].kind in ("python", "shell"), (
                f"{b.id}: an output block must follow a python or shell block")
        if "fixture" in b.options:
            assert b.doc in DOC_FIXTURE, f"{b.id}: marked 'fixture' but {b.doc} has none in tests/test_docs.py"
        for opt in b.options:
            if opt.startswith("fixture "):
                assert opt.split(None, 1)[1] in FIXTURES, f"{b.id}: no fixture named in {opt!r}"


@pytest.mark.parametrize("block", [b for b in ALL if b.kind == "json"], ids=lambda b: b.id)
def test_json_blocks_parse(block: Block) -> None:
    text = block.text.strip()
    try:
        json.loads(text)
    except json.JSONDecodeError:
        for line in text.splitlines():
            json.loads(line)  # one document a line


@pytest.mark.parametrize("block", [b for b in ALL if b.kind == "syntax"], ids=lambda b: b.id)
def test_blocks_not_run_are_still_valid_code(block: Block) -> None:
    if block.info == "python":
        compile(block.text, block.id, "exec")
        return
    done = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{block.id}: bash -n: {done.stderr}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_doc_example_runs(block: Block, doc_redis: RedisProcess, workdir: Path) -> None:
    if block.kind == "shell" and re.search(r"\bjq\b", block.text) and shutil.which("jq") is None:
        pytest.fail(f"{block.id} uses jq, which is not installed (apt-get install jq)")
    prelude, revisions = _prepare(block, workdir, doc_redis)
    text = _substitute(block.text, doc_redis, revisions)
    if "after previous" in block.options:
        prev = _previous_runnable(block)
        assert prev.kind == "shell" and "output follows" not in prev.options, (
            f"{block.id}: 'after previous' needs a plain shell block before it")
        done = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + _substitute(prev.text, doc_redis, revisions)],
                              cwd=workdir, env=_env(workdir, doc_redis), capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, _fail(prev, "the block it runs after failed", done)
    follow = _output_after(block)
    if "until killed" in block.options:
        assert follow is not None, f"{block.id}: 'until killed' needs an output block after it"
        expected = follow.text.splitlines()
        wanted = len([x for x in expected if x.strip() not in ("…", "...", "")])
        argv = [sys.executable, "-c", prelude + text] if block.kind == "python" else ["bash", "-c", text]
        heard = _as_shown("\n".join(_run_until_killed(block, argv, workdir, doc_redis, wanted)), doc_redis)
        assert doc_blocks.lines_match(expected, heard.splitlines()), (
            f"{block.id}: output differs\n{doc_blocks.diff_message(expected, heard.splitlines())}")
        return
    if block.kind == "python":
        done = _run_python(prelude + text, workdir, doc_redis)
        assert done.returncode == 0, _fail(block, "the example failed", done)
        if "output in comments" in block.options:
            expected = doc_blocks.printed_comments(block.text)
            assert expected, f"{block.id}: marked 'output in comments' but no print line has a comment"
        elif follow is not None:
            expected = follow.text.splitlines()
        else:
            return
        actual = _as_shown(done.stdout, doc_redis).splitlines()
        assert doc_blocks.lines_match(expected, actual), (
            f"{block.id}: output differs\n{doc_blocks.diff_message(expected, actual)}")
        return
    if "output follows" in block.options:
        steps = doc_blocks.transcript(text)
        assert steps, f"{block.id}: marked 'output follows' but has no '$ ' lines"
        # each command's exit status survives the separator line, for a `$ echo $?` after it
        script = "exec 2>&1\n" + "".join(f"{cmd}\n_st=$?; echo {SEP}; (exit $_st)\n" for cmd, _ in steps)
        done = subprocess.run(["bash", "-c", script], cwd=workdir, env=_env(workdir, doc_redis),
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        outputs = done.stdout.split(SEP + "\n")
        assert len(outputs) == len(steps) + 1, _fail(block, "the transcript did not run to its end", done)
        as_written = doc_blocks.transcript(block.text)  # the outputs as the doc shows them, unsubstituted
        for (cmd, _), (_, shown), printed in zip(steps, as_written, outputs, strict=False):
            got = _as_shown(printed, doc_redis).splitlines()
            assert doc_blocks.lines_match(shown, got), (
                f"{block.id}: `$ {cmd}` printed something else\n{doc_blocks.diff_message(shown, got)}")
        return
    done = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + text], cwd=workdir,
                          env=_env(workdir, doc_redis), capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, _fail(block, f"exit status {done.returncode}", done)
    if follow is not None:
        expected, actual = follow.text.splitlines(), _as_shown(done.stdout + done.stderr, doc_redis).splitlines()
        assert doc_blocks.lines_match(expected, actual), (
            f"{block.id}: output differs\n{doc_blocks.diff_message(expected, actual)}")


# --- the guard itself ---------------------------------------------------------------------------
def test_an_unmarked_or_badly_marked_block_is_an_error() -> None:
    with pytest.raises(DocFormatError, match="without a marker"):
        doc_blocks.parse("Text.\n\n```\nstatestore ps\n```\n", "x.md")
    with pytest.raises(DocFormatError, match="needs a reason"):
        doc_blocks.parse("<!-- doc: skip: -->\n```\nx\n```\n", "x.md")
    with pytest.raises(DocFormatError, match="needs a reason"):
        doc_blocks.parse("<!-- doc: syntax -->\n```\nx\n```\n", "x.md")
    with pytest.raises(DocFormatError, match="unknown block kind"):
        doc_blocks.parse("<!-- doc: pyhton -->\n```python\nx = 1\n```\n", "x.md")
    with pytest.raises(DocFormatError, match="unknown option"):
        doc_blocks.parse("<!-- doc: shell; output folows -->\n```\n$ true\n```\n", "x.md")
    with pytest.raises(DocFormatError, match="never closed"):
        doc_blocks.parse("<!-- doc: shell -->\n```\ntrue\n", "x.md")
    ok = doc_blocks.parse("<!-- doc: skip: a sketch -->\n```\nx\n```\n\n<!-- doc: python; fixture -->\n"
                          "```python\nprint(1)  # 1\n```\n", "x.md")
    assert [(b.kind, b.options, b.reason, b.line) for b in ok] == [
        ("skip", set(), "a sketch", 2), ("python", {"fixture"}, "", 7)]
    assert doc_blocks.printed_comments(ok[1].text) == ["1"]
    with pytest.raises(SyntaxError):
        test_blocks_not_run_are_still_valid_code(Block("x.md", 1, "syntax", text="f(a\n", info="python"))
    with pytest.raises(AssertionError, match="bash -n"):
        test_blocks_not_run_are_still_valid_code(Block("x.md", 1, "syntax", text="for x in; do\n", info=""))
    assert doc_blocks.printed_comments(
        "print(a)  # 1\nx = 2  # not printed\nprint(f(b),\n      c)   # 2 3\nprint(d)\n") == ["1", "2 3"]


def test_normalisation_hides_ids_and_times_but_not_counts_or_words() -> None:
    shown = ["9a741d3aa4a1   web    r2    1   33.9s   9.5s       WEDGED",
             "exported 4 containers and 1 exec of namespace 'prod' at revision 1795786451708-0 in 0.0s"]
    same = ["f1312113044e   web  r2  1  0.8s  10s  WEDGED",
            "exported 4 containers and 1 exec of namespace 'prod' at revision 1795999999999-12 in 1.3s"]
    assert doc_blocks.lines_match(shown, same)
    assert not doc_blocks.lines_match(shown, [same[0].replace("WEDGED", ""), same[1]])
    assert not doc_blocks.lines_match(shown, [same[0], same[1].replace("4 containers", "5 containers")])
    assert not doc_blocks.lines_match(shown, [same[0]])  # a missing line
    assert not doc_blocks.lines_match(shown, same + ["one more line"])
    assert doc_blocks.lines_match(["first", "…", "last"], ["first", "a", "b", "last"])
    assert doc_blocks.lines_match(["Container(id='…', name='web')"], ["Container(id='abc', name='web')"])
    assert not doc_blocks.lines_match(["Container(id='…', name='web')"], ["Container(id='abc', name='db')"])


# --- the demo's report in README.md ---------------------------------------------------------------
def _shape(line: str) -> str:
    """A report line with every number, ID and clock time replaced (a short run's figures differ)."""
    line = doc_blocks.normalize(line)
    line = re.sub(r"(simulated runtime failures\)):.*", r"\1: <classes and counts>", line)
    line = re.sub(r"\d+(?:\.\d+)?", "N", line)
    return line


def _report(lines: list[str]) -> list[str]:
    """From the summary table to "all invariants hold", without the optional replica-log excerpt."""
    start = next(i for i, x in enumerate(lines) if x.strip().startswith("replica"))
    end = next(i for i, x in enumerate(lines) if x.strip() == "all invariants hold")
    out, skipping = [], False
    for x in lines[start:end + 1]:
        if x.startswith("from the replicas' logs:"):
            skipping = True
        elif skipping and not x.startswith("  "):
            skipping = False
        if not skipping:
            out.append(_shape(x))
    return [x for x in out if x]


@pytest.mark.slow
def test_readme_demo_sample_has_the_lines_of_a_real_run(doc_redis: RedisProcess) -> None:
    """README.md shows the end of a full demo run; a short run must print the same lines, numbers aside."""
    sample = [b for b in doc_blocks.parse_doc("README.md") if "all invariants hold" in b.text]
    assert len(sample) == 1, "README.md should show one demo report"
    client = doc_redis.client()
    try:
        client.flushall()
    finally:
        client.close()
    done = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", doc_redis.url, "demo", "--short"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    shown, printed = _report(sample[0].text.splitlines()), _report(done.stdout.splitlines())
    assert shown == printed, "\n".join(["README:", *shown, "a short run:", *printed])


# --- links between the docs -----------------------------------------------------------------------
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    out: set[str] = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"^#{1,6}\s+(.*)$", line)):
            slug, n = _slug(m.group(1)), 1
            while slug in out:  # repeated headings get -1, -2, ...
                slug = f"{_slug(m.group(1))}-{n}"
                n += 1
            out.add(slug)
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_and_anchors_resolve(doc: str) -> None:
    path = ROOT / doc
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc}: broken links:\n" + "\n".join(broken)


def test_anchors_follow_githubs_rules(tmp_path: Path) -> None:
    assert _slug("Redis Cluster (tools/bench_cluster.py)") == "redis-cluster-toolsbench_clusterpy"
    assert _slug("`statestore fsck`") == "statestore-fsck"
    doc = tmp_path / "x.md"
    doc.write_text("# Title\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n")
    assert _anchors(doc) == {"title", "notes", "notes-1"}
