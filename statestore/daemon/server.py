"""The Docker Engine API of one replica (aiohttp), on the async face of the store.

Reads (``ps``, ``inspect``, ``info``, exec inspect) are served from the
replica's View and never look at a lock.  They are consistent: before
answering, the replica reads the namespace's newest revision
(``store.log_revision()``, one call) and waits until its View has applied it,
so anything committed before the request, through any replica, is in the
answer (the Kubernetes API server's consistent read from its watch cache).
If the View cannot catch up within ``view_wait`` seconds the answer is read
from Redis instead.

Actions take the container's lock (``lock_timeout``: a busy container is a
409 after that long, never a queue), run the simulated runtime in the
replica's own thread pool (a hung runtime call holds a thread of that pool,
never the event loop), and commit with the lease and the Docker event
actions the change log carries (``docker events`` on any replica reads them).

See docs/engine-api.md for the endpoints, what is simulated and the
differences from moby.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import ipaddress
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from .. import (
    Container,
    ExecConfig,
    HistoryTrimmedError,
    InvalidArgumentError,
    NotFoundError,
    StateStoreError,
)
from .. import __version__ as STATESTORE_VERSION
from .._events import labels_match
from .._model import format_time
from ..aio import Lease, Store, View
from . import dockerapi as d
from .dockerapi import ApiError
from .runtime import Interrupted, Runtime, RuntimeFailure

log = logging.getLogger("statestore.api")
T = TypeVar("T")

_SERVER = f"statestore/{STATESTORE_VERSION} (linux)"
_JSON = "application/json"
_SUMMARY_CACHE = 50_000  # containers whose ps line parts a replica keeps


# --- listeners -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One ``--listen`` address: ``tcp://host:port`` or ``unix:///path``."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> Listener:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            path = parts.path or parts.netloc
            if not path:
                raise InvalidArgumentError(f"--listen {url!r}: a unix socket needs a path (unix:///path/docker.sock)")
            return cls("unix", path=path)
        if parts.scheme == "tcp":
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None:
                raise InvalidArgumentError(f"--listen {url!r}: expected tcp://HOST:PORT")
            return cls("tcp", host=parts.hostname, port=port)
        raise InvalidArgumentError(f"--listen {url!r}: expected tcp://HOST:PORT or unix:///PATH")

    @property
    def loopback(self) -> bool:
        if self.scheme != "tcp":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"tcp://{self.host}:{self.port}"


@dataclass
class TLSOptions:
    """dockerd's ``--tls``/``--tlsverify``: serve TLS; with verify, require a client certificate
    signed by ``cacert``."""

    cert: str
    key: str
    cacert: str | None = None
    verify: bool = False

    def context(self) -> ssl.SSLContext:
        for option, path in (("--tlscert", self.cert), ("--tlskey", self.key), ("--tlscacert", self.cacert)):
            if path is None:
                continue
            try:
                open(path, "rb").close()  # ssl's errors name no file: say which one, as dockerd does
            except OSError as exc:
                raise InvalidArgumentError(f"{option}: open {path}: {(exc.strerror or str(exc)).lower()}") from None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.verify:
                if not self.cacert:
                    raise InvalidArgumentError("--tlsverify needs --tlscacert (the CA that signs client certificates)")
                ctx.load_verify_locations(self.cacert)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgumentError(f"cannot load the TLS certificates: {exc}") from None
        return ctx


def check_listeners(listeners: list[Listener], tls: TLSOptions | None) -> None:
    """Refuse plain TCP on an address other hosts reach: whoever reaches the API can change every
    container of the namespace (dockerd only warns; this refuses)."""
    for li in listeners:
        if li.scheme == "tcp" and tls is None and not li.loopback:
            raise InvalidArgumentError(
                f"refusing to serve the Engine API on {li} without TLS: anyone who reaches it can change every "
                "container. Use --tlsverify with --tlscacert, --tlscert and --tlskey, or listen on 127.0.0.1 "
                "or a unix socket")


# --- the application -----------------------------------------------------------------------------


@dataclass
class ApiOptions:
    replica_id: str
    lock_ttl: float = 5.0
    lock_timeout: float = 5.0
    view_wait: float = 2.0
    threads: int = 64
    log_maxlen: int = 10_000
    listeners: list[Listener] = field(default_factory=list)
    tls: TLSOptions | None = None


class EngineAPI:
    """The routes and their handlers; ``serve`` runs them on the listeners until ``stop``."""

    def __init__(self, store: Store, runtime: Runtime, opts: ApiOptions) -> None:
        self.store = store
        self.runtime = runtime
        self.opts = opts
        self.view: View | None = None
        self._pool = ThreadPoolExecutor(max_workers=opts.threads, thread_name_prefix="api-runtime")
        self._tasks: set[asyncio.Task[Any]] = set()
        #: handlers that stream until their client leaves (events, logs -f, wait): ended at shutdown
        self._streams: set[asyncio.Task[Any]] = set()
        self._summaries: dict[str, tuple[int, dict[str, Any]]] = {}
        self._closing = False  # streams cancelled at shutdown end their responses cleanly
        self.app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        self.app.on_response_prepare.append(self._headers)
        self._routes()

    # --- plumbing ------------------------------------------------------------------------------
    def _routes(self) -> None:
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/_ping", self.ping), ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.version), ("GET", "/info", self.info),
            ("GET", "/containers/json", self.list_containers),
            ("POST", "/containers/create", self.create),
            ("POST", "/containers/prune", self.prune),
            ("GET", "/containers/{ref}/json", self.inspect),
            ("POST", "/containers/{ref}/start", self.start),
            ("POST", "/containers/{ref}/stop", self.stop),
            ("POST", "/containers/{ref}/restart", self.restart),
            ("POST", "/containers/{ref}/kill", self.kill),
            ("POST", "/containers/{ref}/pause", self.pause),
            ("POST", "/containers/{ref}/unpause", self.unpause),
            ("POST", "/containers/{ref}/rename", self.rename),
            ("POST", "/containers/{ref}/wait", self.wait),
            ("DELETE", "/containers/{ref}", self.remove),
            ("GET", "/containers/{ref}/logs", self.logs),
            ("POST", "/containers/{ref}/exec", self.exec_create),
            ("POST", "/exec/{id}/start", self.exec_start),
            ("GET", "/exec/{id}/json", self.exec_inspect),
            ("GET", "/events", self.events),
        ]
        for method, path, handler in routes:
            self.app.router.add_route(method, path, handler)
            self.app.router.add_route(method, "/v{version:[0-9]+\\.[0-9]+}" + path, handler)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            d.check_version(request.match_info.get("version"))
            return await handler(request)
        except ApiError as exc:
            return _error(exc)
        except StateStoreError as exc:
            return _error(d.from_store_error(exc))
        except RuntimeFailure as exc:
            return _error(ApiError(500, str(exc)))
        except Interrupted as exc:
            return _error(ApiError(503, f"{exc}: the replica is shutting down"))
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return _error(ApiError(404, "page not found"))
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug: answer as moby does (500, a message), and log it
            log.exception("%s %s failed", request.method, request.path)
            return _error(ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Api-Version"] = d.API_VERSION
        response.headers["Ostype"] = d.OSTYPE
        response.headers["Server"] = _SERVER

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking runtime call on the replica's own pool (never the loop's default executor)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def _view(self) -> View | None:
        """The View, caught up with every commit made before this call; None if it cannot be in time."""
        view = self.view
        if view is None:
            return None
        rev = await self.store.log_revision()
        try:
            if await view.wait_for(rev, timeout=self.opts.view_wait):
                return view
        except StateStoreError as exc:
            log.warning("the View failed (%s); reading from Redis", exc)
            return None
        log.warning("the View is behind revision %s after %gs; reading from Redis", rev, self.opts.view_wait)
        return None

    async def _get(self, ref: str) -> Container:
        view = await self._view()
        if view is not None:
            return view.get(ref)
        return await self.store.containers.get(ref)

    async def _output(self, c: Container, stream: str, line: str) -> None:
        """What the simulated process writes: one line on the container's log stream."""
        try:
            await self.store.logs.append(c.id, stream, line + "\n", maxlen=self.opts.log_maxlen)
        except StateStoreError as exc:
            log.warning("could not record output of %s: %s", c.id[:12], exc)

    def _stream(self) -> None:
        """The running handler streams until its client leaves: end it at shutdown."""
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- system ----------------------------------------------------------------------------------
    async def ping(self, request: web.Request) -> web.StreamResponse:
        headers = {"Docker-Experimental": "false", "Builder-Version": "1", "Swarm": "inactive",
                   "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers, content_type="text/plain", charset="utf-8")
        return web.Response(status=200, text="OK", headers=headers)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return _json({
            "Platform": {"Name": "statestore"},
            "Components": [{"Name": "Engine", "Version": STATESTORE_VERSION,
                            "Details": {"ApiVersion": d.API_VERSION, "MinAPIVersion": d.MIN_API_VERSION,
                                        "Os": "linux", "Arch": "amd64"}}],
            "Version": STATESTORE_VERSION, "ApiVersion": d.API_VERSION, "MinAPIVersion": d.MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": "amd64", "KernelVersion": os.uname().release,
            "BuildTime": "",
        })

    async def info(self, request: web.Request) -> web.StreamResponse:
        view = await self._view()
        every = view.list(all=True) if view is not None else await self.store.containers.list(all=True)
        counts = {"running": 0, "paused": 0, "stopped": 0}
        for c in every:
            st = c.status
            key = "paused" if st == "paused" else "running" if st in ("running", "restarting") else "stopped"
            counts[key] += 1
        return _json({
            "ID": self.opts.replica_id, "Name": socket.gethostname(), "Containers": len(every),
            "ContainersRunning": counts["running"], "ContainersPaused": counts["paused"],
            "ContainersStopped": counts["stopped"], "Images": 0, "Driver": "overlay2",
            "ServerVersion": STATESTORE_VERSION, "OperatingSystem": "statestore (simulated runtime)",
            "OSType": "linux", "Architecture": "x86_64", "NCPU": os.cpu_count() or 1, "MemTotal": 0,
            "KernelVersion": os.uname().release, "Labels": [f"statestore.namespace={self.store.namespace}",
                                                            f"statestore.replica={self.opts.replica_id}"],
            "Swarm": {"LocalNodeState": "inactive"}, "Warnings": None,
        })

    # --- reads -----------------------------------------------------------------------------------
    async def list_containers(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        filt = d.filters(q.get("filters"))
        limit = d.integer(q, "limit")
        all_ = d.boolean(q, "all")
        lim = limit if limit is not None and limit > 0 else None
        view = await self._view()
        if view is not None:
            found = view.list(filt or None, all=all_, limit=lim)
        else:
            found = await self.store.containers.list(filt or None, all=all_, limit=lim)
        now, size = d.now(), d.boolean(q, "size")
        return _json([self._summary(c, now, size) for c in found])

    def _summary(self, c: Container, now: Any, size: bool) -> dict[str, Any]:
        """``dockerapi.summary``, with its fixed part cached per record version."""
        cached = self._summaries.get(c.id)
        if cached is None or cached[0] != c.version:
            if len(self._summaries) >= _SUMMARY_CACHE:
                self._summaries.clear()  # removed containers' entries go too
            cached = self._summaries[c.id] = (c.version, d.summary_fixed(c))
        return d.summary(c, now, size, cached[1])

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        return _json(d.inspect(await self._get(request.match_info["ref"])))

    async def exec_inspect(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["id"]
        view = await self._view()
        x = view.get_exec(ref) if view is not None else await self.store.execs.get(ref)
        return _json(d.exec_inspect(x))

    # --- create and actions ------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        name = request.query.get("name") or None
        if name is not None:
            d.check_name(name)
        image = body.get("Image")
        if not isinstance(image, str) or not image:
            raise d.bad_request("No image was specified (Image)")
        host = body.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise d.bad_request("HostConfig must be an object")
        restart = host.get("RestartPolicy") or {}
        try:
            c = Container.new(
                image, name=name, labels=body.get("Labels") or None, cmd=body.get("Cmd") or None,
                entrypoint=_str_or_list(body.get("Entrypoint")), env=body.get("Env") or None,
                working_dir=body.get("WorkingDir") or "", user=body.get("User") or "",
                hostname=body.get("Hostname") or None, tty=bool(body.get("Tty")),
                open_stdin=bool(body.get("OpenStdin")), exposed_ports=list(body.get("ExposedPorts") or {}),
                restart_policy=(restart.get("Name") if isinstance(restart, dict) else None) or "no",
                network_mode=host.get("NetworkMode") or "bridge", binds=host.get("Binds") or None,
                port_bindings=host.get("PortBindings") or None, auto_remove=bool(host.get("AutoRemove")),
                image_id=d.image_id(image),
            )
        except (InvalidArgumentError, TypeError, AttributeError) as exc:
            raise d.bad_request(str(exc)) from None
        await self._run(self.runtime.create, c, {})
        created = await self.store.containers.create(c)
        return _json({"Id": created.id, "Warnings": []}, status=201)

    async def _locked(self, ref: str, action: Callable[[Container, Lease], Awaitable[T]]) -> T:
        """``action`` on the container ``ref`` names, under its lock, with its current record."""
        async with self.store.lock(ref, ttl=self.opts.lock_ttl, timeout=self.opts.lock_timeout) as lease:
            c = await self.store.containers.get(lease.container_id)
            return await action(c, lease)

    async def _commit(self, c: Container, lease: Lease, change: Callable[[Container], Any],
                      action: str) -> Container:
        return await self.store.containers.update(c.id, change, lease=lease, action=action)

    async def start(self, request: web.Request) -> web.StreamResponse:
        async def act(c: Container, lease: Lease) -> bool:
            if c.status == "paused":
                raise ApiError(409, "cannot start a paused container, try unpause instead")
            if c.state.running:
                return False
            c.copy().state.set_running(pid=1)  # InvalidStateError (409) before the runtime is asked
            pid = await self._run(self.runtime.start, c, {})
            try:
                await self._commit(c, lease, lambda x: x.state.set_running(pid=pid), "start")
            except BaseException:
                self.runtime.forget(c.id)
                raise
            await self._output(c, "stdout", f"{c.name}: started, pid {pid}")
            return True

        changed = await self._locked(request.match_info["ref"], act)
        return web.Response(status=204 if changed else 304)

    async def _halt(self, c: Container, lease: Lease, sig: int, stop: bool) -> None:
        """Stop (or kill) a running container: the runtime, then one commit of kill, die (and stop)."""
        code = await self._run(self.runtime.stop, c, {}, "SIGKILL" if sig == 9 else "SIGTERM")
        if not stop:
            code = 128 + sig
        words = f"kill={sig},die" + (",stop" if stop else "")
        await self._commit(c, lease, lambda x: x.state.set_stopped(code), words)
        await self._output(c, "stderr", f"{c.name}: received signal {sig}, exit {code}")

    async def stop(self, request: web.Request) -> web.StreamResponse:
        d.integer(request.query, "t")
        sig = d.signal_number(request.query.get("signal"), "SIGTERM")

        async def act(c: Container, lease: Lease) -> bool:
            if not c.state.running:
                return False
            await self._halt(c, lease, sig, True)
            return True

        changed = await self._locked(request.match_info["ref"], act)
        return web.Response(status=204 if changed else 304)

    async def kill(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        sig = d.signal_number(request.query.get("signal"), "SIGKILL")

        async def act(c: Container, lease: Lease) -> None:
            if not c.state.running:
                raise ApiError(409, f"cannot kill container: {ref}: container {c.id} is not running")
            await self._halt(c, lease, sig, False)

        await self._locked(ref, act)
        return web.Response(status=204)

    async def restart(self, request: web.Request) -> web.StreamResponse:
        d.integer(request.query, "t")
        sig = d.signal_number(request.query.get("signal"), "SIGTERM")

        async def act(c: Container, lease: Lease) -> None:
            if c.state.running:
                await self._halt(c, lease, sig, True)
            pid = await self._run(self.runtime.start, c, {})
            try:
                await self._commit(c, lease, lambda x: x.state.set_running(pid=pid), "start,restart")
            except BaseException:
                self.runtime.forget(c.id)
                raise
            await self._output(c, "stdout", f"{c.name}: restarted, pid {pid}")

        await self._locked(request.match_info["ref"], act)
        return web.Response(status=204)

    async def pause(self, request: web.Request) -> web.StreamResponse:
        async def act(c: Container, lease: Lease) -> None:
            if c.status == "paused":
                raise ApiError(409, f"Container {c.id} is already paused")
            if not c.state.running:
                raise ApiError(409, f"container {c.id} is not running")
            if c.state.restarting:
                raise ApiError(409, f"Container {c.id} is restarting, wait until the container is running")
            await self._run(self.runtime.pause, c, {}, True)
            await self._commit(c, lease, lambda x: x.state.set_paused(), "pause")

        await self._locked(request.match_info["ref"], act)
        return web.Response(status=204)

    async def unpause(self, request: web.Request) -> web.StreamResponse:
        async def act(c: Container, lease: Lease) -> None:
            if c.status != "paused":
                raise ApiError(500, f"Container {c.id} is not paused")
            await self._run(self.runtime.pause, c, {}, False)
            await self._commit(c, lease, lambda x: x.state.set_unpaused(), "unpause")

        await self._locked(request.match_info["ref"], act)
        return web.Response(status=204)

    async def rename(self, request: web.Request) -> web.StreamResponse:
        new = request.query.get("name", "")
        if not new:
            raise d.bad_request("Neither old nor new names may be empty")
        d.check_name(new)

        async def act(c: Container, lease: Lease) -> None:
            if c.name == new.lstrip("/"):
                raise d.bad_request("Renaming a container with the same name as its current name")
            await self._run(self.runtime.rename, c, {})
            await self.store.containers.rename(c.id, new, lease=lease)

        await self._locked(request.match_info["ref"], act)
        return web.Response(status=204)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        force = d.boolean(request.query, "force")

        async def act(c: Container, lease: Lease) -> None:
            await self._remove(c, lease, force)

        await self._locked(ref, act)
        return web.Response(status=204)

    async def _remove(self, c: Container, lease: Lease, force: bool) -> None:
        if c.state.running and not force:
            what = "paused and must be unpaused first" if c.status == "paused" else \
                "running: stop the container before removing or force remove"
            raise ApiError(409, f'cannot remove container "{c.name}": container is {what}')
        if c.state.running:
            await self._halt(c, lease, 9, False)
        await self._run(self.runtime.delete, c, {})
        await self.store.containers.delete(c.id, lease=lease)

    async def prune(self, request: web.Request) -> web.StreamResponse:
        filt = d.filters(request.query.get("filters"))
        unknown = set(filt) - {"label", "label!", "until"}
        if unknown:
            raise d.bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        labels = filt.get("label")
        candidates = await self.store.containers.list({"label": labels} if labels else None, all=True)
        until_ns = d.prune_until(filt["until"][0], d.now()) if "until" in filt else None
        excluded = d.label_selectors(filt.get("label!", ()))
        deleted: list[str] = []
        for c in candidates:
            if c.state.running or c.status == "removing":
                continue
            if any(labels_match([sel], c.labels) for sel in excluded):
                continue
            if until_ns is not None and d.epoch(c.created) * 10**9 >= until_ns:
                continue

            async def act(cur: Container, lease: Lease) -> None:
                if not cur.state.running:
                    await self._remove(cur, lease, False)

            try:
                await self._locked(c.id, act)
                deleted.append(c.id)
            except (NotFoundError, ApiError):
                continue
        return _json({"ContainersDeleted": deleted or None, "SpaceReclaimed": 0})

    # --- wait ---------------------------------------------------------------------------------------
    async def wait(self, request: web.Request) -> web.StreamResponse:
        cond = request.query.get("condition") or "not-running"
        if cond not in ("not-running", "next-exit", "removed"):
            raise d.bad_request(f"invalid condition: {cond!r}")
        view = await self._view()
        if view is not None:
            c, since = view.get(request.match_info["ref"]), view.revision
        else:
            since = await self.store.log_revision()
            c = await self.store.containers.get(request.match_info["ref"])
        resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        await resp.prepare(request)  # headers at once: the client knows the wait began
        self._stream()
        code = c.state.exit_code
        if cond == "not-running" and not c.state.running:
            return await _finish(resp, {"StatusCode": code, "Error": None})
        watch = self.store.watch(since=since, ids=[c.id], block=1.0)
        try:
            async for ev in watch:
                rec = ev.record if isinstance(ev.record, Container) else None
                if rec is not None:
                    code = rec.state.exit_code
                if ev.type == "delete":
                    break
                if rec is None or cond == "removed":
                    continue
                if not rec.state.running and (cond == "not-running" or "die" in ev.action.split(",")
                                              or rec.status == "exited"):
                    break
        finally:
            await watch.aclose()
        return await _finish(resp, {"StatusCode": code, "Error": None})

    # --- exec ------------------------------------------------------------------------------------
    async def exec_create(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise d.bad_request("No exec command specified")

        async def act(c: Container, lease: Lease) -> ExecConfig:
            if c.status == "paused":
                raise ApiError(409, f"Container {c.id} is paused, unpause the container before exec")
            if not c.state.running or c.state.restarting:
                raise ApiError(409, f"container {c.id} is not running")
            try:
                x = ExecConfig.new(c.id, cmd, tty=bool(body.get("Tty")), user=body.get("User") or "",
                                   privileged=bool(body.get("Privileged")), env=body.get("Env") or None,
                                   working_dir=body.get("WorkingDir") or "",
                                   attach_stdin=bool(body.get("AttachStdin")),
                                   attach_stdout=bool(body.get("AttachStdout", True)),
                                   attach_stderr=bool(body.get("AttachStderr", True)))
            except (InvalidArgumentError, TypeError) as exc:
                raise d.bad_request(str(exc)) from None
            return await self.store.execs.create(x, lease=lease)

        x = await self._locked(request.match_info["ref"], act)
        return _json({"Id": x.id}, status=201)

    async def exec_start(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if not body.get("Detach"):
            raise ApiError(501, "statestore runs execs detached only (docker exec -d); attaching to an exec's "
                                "streams is not implemented")
        x = await self.store.execs.get(request.match_info["id"])
        if x.status != "created":
            raise ApiError(409, f"Error: Exec command {x.id} has already run")
        c = await self.store.containers.get(x.container_id)
        if not c.state.running or c.status == "paused":
            raise ApiError(409, f"container {c.id} is not running")
        pid = await self._run(self.runtime.exec, c, {})
        await self.store.execs.update(x.id, lambda e: e.set_running(pid), action="exec_start")
        await self._output(c, "stdout", f"exec {d.exec_command(x)}: started, pid {pid}")
        self._spawn(self._exec_finish(c, x.id))
        return web.Response(status=200)

    async def _exec_finish(self, c: Container, xid: str) -> None:
        try:
            code = await self._run(self.runtime.wait_exec, c)
            await self.store.execs.update(xid, lambda e: e.set_exited(code), action="exec_die")
        except (StateStoreError, RuntimeFailure, Interrupted) as exc:
            log.warning("exec %s: %s", xid[:12], exc)

    # --- logs ------------------------------------------------------------------------------------
    async def logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        c = await self._get(request.match_info["ref"])
        want_out, want_err = d.boolean(q, "stdout"), d.boolean(q, "stderr")
        if not (want_out or want_err):
            raise d.bad_request("Bad parameters: you must choose at least one stream")
        follow, stamps = d.boolean(q, "follow"), d.boolean(q, "timestamps")
        since = d.event_time(q["since"], "since") / 1e9 if q.get("since") not in (None, "", "0") else None
        until = d.event_time(q["until"], "until") / 1e9 if q.get("until") not in (None, "", "0") else None
        tail_s = q.get("tail", "all")
        tail = None if tail_s in ("all", "") else d.integer(q, "tail")
        if tail is not None and tail < 0:
            tail = None
        tty = bool(c.config.tty)
        kind = "raw-stream" if tty else "multiplexed-stream"
        resp = web.StreamResponse(status=200, headers={"Content-Type": f"application/vnd.docker.{kind}"})
        await resp.prepare(request)
        logs = self.store.logs

        async def send(lines: list[Any]) -> None:
            chunks = []
            for line in lines:
                if (line.stream == "stdout" and not want_out) or (line.stream == "stderr" and not want_err):
                    continue
                data = line.data
                if stamps:
                    data = format_time(line.time_ns).encode() + b" " + data
                chunks.append(data if tty else _frame(1 if line.stream == "stdout" else 2, data))
            if chunks:
                await resp.write(b"".join(chunks))

        lines: list[Any] = []
        if tail != 0:
            lines = await logs.read(c.id, since=since, until=until, tail=tail)
            await send(lines)
            while tail is None and lines:  # read() pages: go on after the last line sent
                more = await logs.read(c.id, until=until, after=lines[-1].id)
                if not more:
                    break
                lines = more
                await send(lines)
        if follow and (until is None or until > d.now().timestamp()):
            self._stream()
            after = lines[-1].id if lines else await logs.last_id(c.id)
            try:
                while True:
                    batch = await logs.follow(c.id, after, block=1.0)
                    if batch:
                        after = batch[-1].id
                        if until is not None:
                            batch = [b for b in batch if b.time_ns <= until * 1e9]
                        await send(batch)
                    if until is not None and d.now().timestamp() > until:
                        break
                    if not batch and not await self._exists(c.id):
                        break  # the container is gone: docker logs -f ends
            except asyncio.CancelledError:
                if not self._closing:
                    raise  # the client left
        await resp.write_eof()
        return resp

    async def _exists(self, cid: str) -> bool:
        try:
            await self.store.containers.get(cid)
            return True
        except NotFoundError:
            return False

    # --- events ------------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        match = d.event_filter(d.filters(q.get("filters")))
        since_ns = d.event_time(q["since"], "since") if q.get("since") else None
        until_ns = d.event_time(q["until"], "until") if q.get("until") else None
        if since_ns is not None and until_ns is not None and until_ns < since_ns:
            raise d.bad_request("`since` time cannot be after `until` time")
        start = f"{max(0, -(-since_ns // 10**6))}-0" if since_ns is not None else None
        until = f"{max(0, until_ns // 10**6)}-{d.MAX_SEQ}" if until_ns is not None else None
        if until is not None and start is None:
            start = "0-0"
        resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        await resp.prepare(request)
        self._stream()
        names: dict[str, Container] = {}

        def container_of(cid: str) -> Container | None:
            if self.view is not None:
                try:
                    return self.view.get(cid)
                except StateStoreError:
                    pass
            return names.get(cid)

        watch = self._events_watch(start, until)
        try:
            while True:
                try:
                    async for ev in watch:
                        if isinstance(ev.record, Container):
                            if len(names) >= 10_000:
                                names.clear()  # only for exec events of containers gone from the View
                            names[ev.id] = ev.record
                        out = [m for m in d.event_messages(ev, container_of) if match(m)]
                        if out:
                            await resp.write(b"".join(orjson.dumps(m) + b"\n" for m in out))
                    break
                except HistoryTrimmedError as exc:
                    # docker events --since before the log's oldest entry: replay what is left
                    await watch.aclose()
                    if not exc.first_available:
                        raise
                    watch = self._events_watch(exc.first_available, until)
        except ConnectionResetError:
            pass
        except asyncio.CancelledError:
            if not self._closing:
                raise  # the client left
        finally:
            await watch.aclose()
        await resp.write_eof()
        return resp

    def _events_watch(self, start: str | None, until: str | None) -> Any:
        # with an until, read in short blocks: the watch checks the server's clock against it
        # after a read that found nothing, so a past until ends the stream that much sooner
        return self.store.watch(start=start, until=until, block=1.0 if until is None else 0.2,
                                types=("create", "update", "delete"))

    # --- serving ---------------------------------------------------------------------------------
    async def serve(self, stopping: asyncio.Event, ready: Callable[[list[str]], None] | None = None) -> None:
        """Open the View, listen on every listener, serve until ``stopping`` is set."""
        self.view = await self.store.view()
        # everything loaded so far (modules, the View's first listing) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise walk it all every few dozen
        # docker ps (a 20 ms pause, once in ~50 ps -a of 200, measured) (gc.freeze)
        gc.freeze()
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await runner.setup()
        ctx = self.opts.tls.context() if self.opts.tls is not None else None
        bound: list[str] = []
        try:
            for li in self.opts.listeners:
                if li.scheme == "unix":
                    _clear_stale_socket(li.path)
                    site: web.BaseSite = web.UnixSite(runner, li.path)
                    await site.start()
                    os.chmod(li.path, 0o660)  # as dockerd: the owner and its group (umask would give 0755)
                else:
                    site = web.TCPSite(runner, li.host, li.port, ssl_context=ctx, backlog=1024)
                    await site.start()
                bound.append(str(li))
                log.info("Engine API listening on %s%s", li, " (TLS)" if ctx is not None and li.scheme == "tcp"
                         else "")
            if ready is not None:
                ready(bound)
            await stopping.wait()
        finally:
            self._closing = True
            for task in list(self._streams):
                task.cancel()  # events and logs -f end cleanly, as when dockerd stops
            await runner.cleanup()
            for task in list(self._tasks):
                task.cancel()
            view, self.view = self.view, None
            if view is not None:
                await view.aclose()
            self._pool.shutdown(wait=False, cancel_futures=True)
            for li in self.opts.listeners:
                if li.scheme == "unix":
                    _clear_stale_socket(li.path)


# --- helpers --------------------------------------------------------------------------------------


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc) + b"\n", status=status, content_type=_JSON)


def _error(exc: ApiError) -> web.Response:
    if exc.message is None or exc.status == 304:
        return web.Response(status=exc.status)
    return _json({"message": exc.message}, status=exc.status)


async def _finish(resp: web.StreamResponse, doc: Any) -> web.StreamResponse:
    await resp.write(orjson.dumps(doc) + b"\n")
    await resp.write_eof()
    return resp


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise d.bad_request(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise d.bad_request("invalid JSON: expected an object")
    return doc


def _str_or_list(v: Any) -> list[str] | None:
    if v is None or v == "":
        return None
    return [v] if isinstance(v, str) else list(v)


def _frame(stream: int, data: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def _clear_stale_socket(path: str) -> None:
    """Remove a unix socket left by a replica that died; refuse if one is listening there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgumentError(f"--listen unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: stale
        return
    finally:
        probe.close()
    raise InvalidArgumentError(f"--listen unix://{path}: another process is listening on this socket")


__all__ = ["ApiOptions", "EngineAPI", "Listener", "TLSOptions", "check_listeners"]
