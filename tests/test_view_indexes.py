"""The View's in-memory indexes: records leave and enter filters as they change, the
exact-filter path equals the store, and the view's memory stays within 3x the JSON it holds."""

from __future__ import annotations

import gc
import tracemalloc

from statestore import Container, Store


def _running(store: Store, name: str, labels: dict[str, str]) -> Container:
    c = store.containers.create(Container.new("busybox:1.36", name=name, labels=labels))
    return store.containers.update(c.id, lambda x: x.state.set_running(pid=1))


def test_records_leave_and_enter_filters_as_they_change(store: Store) -> None:
    a = _running(store, "web-a", {"app": "web"})
    b = _running(store, "web-b", {"app": "web", "tier": "front"})
    with store.view() as view:
        def both(**kw: object) -> list[str]:
            got = [c.name for c in view.list(**kw)]  # type: ignore[arg-type]
            assert got == [c.name for c in store.containers.list(**kw)]  # type: ignore[arg-type]
            return got

        assert view.wait_for(b.revision or "", timeout=5)
        assert both(filters={"label": "app=web"}) == ["web-b", "web-a"]
        last = store.containers.update(a.id, lambda c: c.labels.__setitem__("app", "db"))  # leaves
        assert view.wait_for(last.revision or "", timeout=5)
        assert both(filters={"label": "app=web"}) == ["web-b"]
        assert both(filters={"label": "app=db"}) == ["web-a"]  # enters
        last = store.containers.rename(b.id, "cache")  # out of a name filter
        assert view.wait_for(last.revision or "", timeout=5)
        assert both(filters={"name": "web"}) == ["web-a"]
        last = store.containers.update(a.id, lambda c: c.state.set_stopped(0))  # out of "running only"
        assert view.wait_for(last.revision or "", timeout=5)
        assert both() == ["cache"]
        assert both(filters={"status": "exited"}) == ["web-a"]
        assert both(filters={"label": ["app", "tier=front"]}, all=True) == ["cache"]
        assert [c.name for c in view.list(filters={"label": "app=web"}, all=True)] == ["cache"]
        assert view.get("web-a").id == a.id and view.get(b.id[:12]).name == "cache"


def test_a_view_holds_at_most_three_times_the_json_it_keeps(store: Store) -> None:
    last = None
    for i in range(400):
        c = Container.new(
            "registry.example.com/team/webapp:1.27.3", name=f"mem-{i:05d}",
            labels={"com.example.app": "webapp", "bench.group": f"g{i // 10:05d}", "bench.index": str(i)},
            cmd=["/usr/local/bin/webapp", "--port", "8080"], env=["PATH=/usr/bin:/bin", f"INSTANCE={i}"],
            exposed_ports=["8080/tcp"], port_bindings={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(20000 + i)}]},
            networks={"bridge": {"NetworkID": "7b3f" + "a" * 60, "IPAddress": f"172.17.0.{i % 250 + 2}"}},
            binds=["/srv/data:/data:rw"], image_id="sha256:" + "c0ffee" * 10 + "abcd")
        last = store.containers.create(c)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        view = store.view()
        assert last is not None and view.wait_for(last.revision or "", timeout=10)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    try:
        json_bytes = sum(len(rec.raw) for rec in view._containers.rows.values())
        assert len(view) == 400
        assert held <= 3 * json_bytes, (held, json_bytes)
    finally:
        view.close()
