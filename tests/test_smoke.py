from statestore import Container, Store


def test_create_get_roundtrip(store: Store) -> None:
    c = store.containers.create(Container.new(image="nginx:1.27", name="web"))
    assert c.version == 1
    got = store.containers.get("web")
    assert got == c
    assert got is not c
