"""Replica processes serving the Engine API, and the real docker CLI run against them (tests' helpers)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def docker_binary() -> str:
    """The docker CLI; a clear failure (never a skip) when it is missing: .ci/run installs it."""
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("the docker CLI is not installed: the Engine API tests run the real client "
                           "(apt-get install docker.io, which .ci/run does)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiReplicas:
    """``statestore daemon --listen ...`` processes of one namespace; ``docker(i, ...)`` runs the CLI
    against replica ``i``."""

    def __init__(self, url: str, namespace: str, tmp: Path) -> None:
        self.url, self.namespace, self.tmp = url, namespace, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hosts: list[str] = []
        self.docker_bin = docker_binary()
        self.config = tmp / "docker-config"  # no user's contexts or credentials leak in
        self.config.mkdir(exist_ok=True)

    def start(self, *extra: str, unix: bool = False, tls_args: tuple[str, ...] = (),
              scheme: str = "tcp") -> str:
        i = len(self.procs)
        port = free_port()
        listen = [f"--listen=tcp://127.0.0.1:{port}"]
        host = f"tcp://127.0.0.1:{port}"
        if unix:
            sock = self.tmp / f"r{i}.sock"
            listen.append(f"--listen=unix://{sock}")
            host = f"unix://{sock}"
        env = {k: v for k, v in os.environ.items() if k != "STATESTORE_REDIS_URL"}
        env["PYTHONPATH"] = str(ROOT)
        log = open(self.tmp / f"r{i}.log", "ab")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            [sys.executable, "-m", "statestore", "--redis-url", self.url, "--namespace", self.namespace,
             "daemon", f"--replica-id=r{i}", "--latency-ms=1:3", "--health-interval=0", "--lock-timeout=1",
             *listen, *tls_args, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        self.procs.append(proc)
        self.hosts.append(host)
        deadline = time.monotonic() + 30
        while b"Engine API listening" not in (self.tmp / f"r{i}.log").read_bytes():
            assert proc.poll() is None, self.log(i)
            assert time.monotonic() < deadline, self.log(i)
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def log(self, i: int) -> str:
        return (self.tmp / f"r{i}.log").read_text(errors="replace")

    def docker(self, i: int, *args: str, check: bool = True, timeout: float = 30,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([self.docker_bin, "--config", str(self.config), "-H", self.hosts[i], *args],
                             capture_output=True, text=True, timeout=timeout,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")},
                                  **(env or {})})
        if check:
            assert res.returncode == 0, f"docker {' '.join(args)}: rc={res.returncode}\n{res.stdout}{res.stderr}"
        return res

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as r:  # noqa: S310 - a local test server
        return json.loads(r.read())
