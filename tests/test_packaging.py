"""The lock files agree with pyproject.toml, the minimums are the lower bounds, and ./dev is usable.

``./dev`` installs every environment from ``requirements/lock.txt`` or ``requirements/minimum-lock.txt``
(hash-checked, no resolver): a requirement added to pyproject.toml without ``./dev lock`` would be
missing there, and a bound raised in one place but not the other would leave the minimum-versions run
testing versions pyproject.toml no longer allows.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# the runtime dependencies whose lowest allowed versions the minimum-versions run tests
BOUNDED = {"redis", "orjson", "tenacity", "sortedcontainers", "fakeredis", "aiohttp", "docker"}


def pins(path: Path) -> dict[str, tuple[Version, Marker | None]]:
    """name -> (pinned version, environment marker) of a lock file written by ``uv pip compile``."""
    out: dict[str, tuple[Version, Marker | None]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if m:
            out[canonicalize_name(m[1])] = (Version(m[2]), Marker(m[3]) if m[3] else None)
    return out


def project_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    reqs += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    return reqs


def lower_bound(req: Requirement) -> Version:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
    assert len(lows) == 1, f"{req}: one lower bound expected"
    return lows[0]


@pytest.mark.parametrize("lock", ["lock.txt", "minimum-lock.txt"])
def test_every_requirement_is_pinned_in_the_lock_within_its_range(lock: str) -> None:
    pinned = pins(REQ / lock)
    assert len(pinned) > 20, "the lock parser found too little: has the lock format changed?"
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is in pyproject.toml but not in requirements/{lock}: run ./dev lock"
        version, _ = pinned[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} pins {req.name}=={version}, outside pyproject.toml's {req}: run ./dev lock")


def test_every_lock_line_carries_hashes() -> None:
    for lock in ("lock.txt", "minimum-lock.txt"):
        text = (REQ / lock).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for entry in entries:
            if "==" in entry.splitlines()[0]:
                assert "--hash=sha256:" in entry, f"{lock}: {entry.splitlines()[0]} has no hash"


def test_the_minimums_are_pyprojects_lower_bounds() -> None:
    minimum = {canonicalize_name(Requirement(line).name): Requirement(line)
               for line in (REQ / "minimum.in").read_text().splitlines() if line and not line.startswith("#")}
    assert set(minimum) == BOUNDED
    locked = pins(REQ / "minimum-lock.txt")
    for req in project_requirements():
        name = canonicalize_name(req.name)
        if name not in BOUNDED:
            continue
        low = lower_bound(req)
        assert lower_bound(minimum[name]) == low, f"requirements/minimum.in and pyproject.toml disagree on {name}"
        assert locked[name][0] == low, f"minimum-lock.txt pins {name}=={locked[name][0]}, the bound is {low}"


def test_license_is_an_spdx_expression() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"


@pytest.mark.parametrize("argv", [[], ["help"], ["--help"]])
def test_dev_without_a_command_prints_its_usage_and_runs_nothing(argv: list[str], tmp_path: Path) -> None:
    # PYTHON points at a python that fails: ./dev must not create or install anything for its usage
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho must not run >&2\nexit 99\n")
    fake.chmod(0o755)
    res = subprocess.run([str(ROOT / "dev"), *argv], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHON": str(fake)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: ./dev COMMAND")
    for cmd in ("demo", "test", "test-min", "latest", "lock", "bench", "help"):
        assert re.search(rf"^  {re.escape(cmd)}\b", res.stdout, re.M), f"usage does not list {cmd}"
    assert "must not run" not in res.stderr


def test_dev_refuses_an_unknown_command() -> None:
    res = subprocess.run([str(ROOT / "dev"), "tset"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "unknown command 'tset'" in res.stderr and "usage: ./dev" in res.stderr
