"""The demo's Engine API client: ``docker ps`` and ``docker inspect`` of the hung container, through
every replica, over and over, timing each answer."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    at: float       # time.monotonic() when the request was sent
    what: str       # "ps" or "inspect"
    ms: float
    ok: bool


class ApiProbe:
    """A thread that asks ``GET /containers/json`` and ``GET /containers/{stuck}/json`` of each
    replica in turn (keep-alive connections), every ``interval`` seconds."""

    def __init__(self, ports: list[int], stuck_id: str, interval: float = 0.01) -> None:
        self.ports, self.stuck_id, self.interval = ports, stuck_id, interval
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in self.ports]
        paths = [("ps", "/v1.50/containers/json"), ("inspect", f"/v1.50/containers/{self.stuck_id}/json")]
        i = 0
        try:
            while not self._stop.wait(self.interval):
                what, path = paths[i % 2]
                conn = conns[(i // 2) % len(conns)]
                i += 1
                t0 = time.monotonic()
                ok = False
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                    if not ok and len(self.errors) < 5:
                        self.errors.append(f"{path}: HTTP {resp.status}")
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reconnects on the next request
                    if len(self.errors) < 5:
                        self.errors.append(f"{path}: {exc}")
                self.samples.append(Sample(t0, what, (time.monotonic() - t0) * 1000, ok))
        finally:
            for c in conns:
                c.close()

    def stats(self, start: float = 0.0, end: float = float("inf")) -> dict[str, Any]:
        """n, failures, p50/p99/max in ms of the samples sent within [start, end]."""
        picked = [s for s in list(self.samples) if start <= s.at <= end]
        ms = sorted(s.ms for s in picked if s.ok)
        out: dict[str, Any] = {"n": len(picked), "failed": sum(not s.ok for s in picked)}
        if ms:
            out.update(p50=ms[len(ms) // 2], p99=ms[min(len(ms) - 1, int(len(ms) * 0.99))], max=ms[-1])
        return out


__all__ = ["ApiProbe", "Sample"]
