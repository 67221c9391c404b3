"""One contract for every identity store, run against each implementation, plus the outbox the
table store adds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accessdrift.models.messages import StatusChange
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.store import MESSAGE, IdentityStore, MemoryStore, TableStore

T0 = 1_767_600_000 * 1_000_000
ENGINE = Engine(Policy())
STORES: dict[str, Callable[[], IdentityStore]] = {
    "memory": MemoryStore,
    "table": lambda: TableStore({}),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> IdentityStore:
    return STORES[request.param]()


def _step(identity_id: str, status: str, at_us: int, owner: str | None = None) -> Step:
    kind = "human" if owner is None else "service_account"
    message = StatusChange(
        identity_id,
        f"{identity_id}-{at_us}",
        at_us,
        status,  # type: ignore[arg-type]
        kind,
        None,
        owner,
    )
    return ENGINE.apply(ENGINE.new_state(identity_id), message, at_us)


def test_contract_what_is_put_is_got_back(store: IdentityStore) -> None:
    step = _step("alice", "terminated", T0)

    assert store.get("alice") is None
    store.put(step)

    assert store.get("alice") == step.state
    assert [s.identity_id for s in store.states()] == ["alice"]


def test_contract_a_later_put_replaces_the_state(store: IdentityStore) -> None:
    store.put(_step("alice", "active", T0))
    later = _step("alice", "terminated", T0 + 1)
    store.put(later)

    got = store.get("alice")
    assert got is not None
    assert got.status == "terminated"
    assert len(list(store.states())) == 1


def test_the_table_store_keeps_what_a_step_publishes_until_it_is_delivered() -> None:
    table: dict[bytes, bytes] = {}
    store = TableStore(table)
    step = _step("svc", "active", T0, owner="alice")
    assert step.messages

    store.put(step)
    assert [o.kind for o in store.outbox("svc")] == [MESSAGE]
    store.put(_step("svc", "active", T0, owner="alice"))
    assert len(store.outbox("svc")) == 2, "an undelivered outbox is added to, not replaced"

    assert table == {}, "nothing is written before the flush"
    assert store.flush() == ["svc"]
    store.put(_step("alice", "active", T0))
    store.flush()
    assert [(k, waiting) for k, _, waiting in store.entries(lambda key: key == b"svc")] == [
        (b"svc", True)
    ]
    assert len(TableStore(table).outbox("svc")) == 2, "the outbox is in the table itself"

    store.delivered("svc")
    assert store.outbox("svc") == []
    assert store.flush() == []
    assert TableStore(table).outbox("svc") == [], "cleared in the table itself"


def test_the_table_store_keeps_the_outbox_across_get_then_put() -> None:
    store = TableStore({})
    store.put(_step("svc", "active", T0, owner="alice"))

    store.get("svc")
    store.put(_step("svc", "active", T0, owner="alice"))
    store.get("svc")
    store.delivered("svc")
    store.put(_step("svc", "active", T0, owner="alice"))

    assert len(store.outbox("svc")) == 1, "only what was put after the delivery waits"


def test_the_table_store_writes_each_identity_once_per_flush() -> None:
    writes: list[bytes] = []

    class Table(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    table = Table()
    store = TableStore(table)
    for at_us in range(T0, T0 + 5):
        state = store.get("alice") or ENGINE.new_state("alice")
        message = StatusChange("alice", f"e{at_us}", at_us, "active", "human", None, None)
        store.put(ENGINE.apply(state, message, at_us))
    assert store.flush() == []
    store.flush()

    assert writes == [b"alice"], "five steps, one write; a flush with nothing put writes nothing"
    flushed = TableStore(table).get("alice")
    assert flushed is not None
    assert flushed == store.get("alice")
    assert [s.identity_id for s in store.states()] == ["alice"]
