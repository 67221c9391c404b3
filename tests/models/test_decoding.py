"""The hot path's msgspec decoder against the pydantic contract, differentially: on hostile and
valid input alike, both accept exactly the same lines and give the same engine messages; what
either rejects is rejected with the contract's own message."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accessdrift.models import decoding
from accessdrift.models.decoding import decode_message, decode_message_line
from accessdrift.models.errors import ContractError
from accessdrift.models.events import decode_event, decode_line
from accessdrift.streams.simulate import SimulationSettings, write_simulation

VALID: dict[str, dict[str, Any]] = {
    "identity.status": {
        "event_id": "s1", "occurred_at": "2026-03-03T17:00:00Z", "identity_id": "svc",
        "status": "active", "identity_kind": "service_account", "owner_id": "alice",
        "role": "deploy", "source": "hr",
    },
    "device.posture": {
        "event_id": "d1", "occurred_at": "2026-03-03T17:00:00.5+01:00", "device_id": "mac",
        "posture": "lost", "identity_ids": ["alice", "bob", "alice"],
    },
    "entitlement.change": {
        "event_id": "g1", "occurred_at": "2026-03-03T17:00:00Z", "identity_id": "alice",
        "system": "github", "entitlement": "admin", "action": "granted", "kind": "session",
        "privileged": True, "device_id": "mac", "requires_trusted_device": False,
    },
    "access.exception": {
        "event_id": "x1", "occurred_at": "2026-03-03T17:00:00Z", "exception_id": "EXC-1",
        "identity_id": "alice", "system": "github", "entitlement": "admin",
        "expires_at": "2026-03-10T17:00:00Z", "reason": "handover", "approved_by": "ciso",
    },
}  # fmt: skip

#: Values that probe each kind of field: wrong types, edge lengths, bad times, vocabulary.
PROBES: list[Any] = [
    None, True, False, 0, 1, 1.5, -1, "", "x", "x" * 1024, "x" * 1025, "é" * 1024, "\u2028",
    [], ["a"], ["a", "a"], [""], [1], {}, {"a": 1},
    "2026-03-03T17:00:00Z", "2026-03-03T17:00:00", "2026-03-03 17:00:00Z", "2026-03-03t17:00:00z",
    "1899-12-31T23:59:59Z", "9000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "1767600000",
    "2026-03-03T16:00:00Z", "2026-03-04T17:00:00+14:00",
    "active", "suspended", "terminated", "human", "service_account", "ai_agent", "lost",
    "compliant", "granted", "revoked", "role", "token", "alice", "svc", "github",
]  # fmt: skip


def _outcome(decode: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", decode(*args)
    except ContractError as error:
        return "error", str(error)


def _contract_line(line: bytes) -> tuple[str, Any]:
    def decode(data: bytes) -> Any:
        stream, event = decode_line(data)
        return stream, event.to_message()

    return _outcome(decode, line)


def _fast_accepts(stream: str, value: bytes) -> bool:
    try:
        decoding._fast(stream, value)
        decoding._no_duplicate_keys(value)
    except decoding._NotFastError:
        return False
    return True


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """A line that is mostly valid: a real event with some fields changed, dropped, added or
    given twice, sometimes under another stream's name."""
    stream = draw(st.sampled_from(sorted(VALID)))
    value: dict[str, Any] = dict(VALID[stream])
    names = sorted({*VALID[stream], "source", "identity_kind", "extra", "occurred_at_us"})
    pairs: list[tuple[str, Any]] = list(value.items())
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names))
        action = draw(st.sampled_from(["set", "drop", "twice"]))
        probe = draw(st.sampled_from(PROBES) | st.text(max_size=8))
        if action == "drop":
            pairs = [p for p in pairs if p[0] != name]
        elif action == "twice":
            pairs.append((name, probe))
        else:
            pairs = [p for p in pairs if p[0] != name] + [(name, probe)]
    body = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    topic = draw(st.sampled_from([stream, stream, stream, "identity.status", "nope"]))
    line = f'{{"topic":{json.dumps(topic)},"value":{body}}}'
    if draw(st.booleans()) and draw(st.booleans()):
        line = "\ufeff" + line
    return line.encode()


@settings(max_examples=1500, deadline=None)
@given(lines())
@example(b'{"topic":"identity.status","value":{"event_id":"a","event_id":"b",'
         b'"occurred_at":"2026-03-03T17:00:00Z","identity_id":"x","status":"active"}}')  # fmt: skip
@example(b'{"topic":"device.posture","topic":"device.posture","value":{"event_id":"a",'
         b'"occurred_at":"2026-03-03T17:00:00Z","device_id":"d","posture":"lost"}}')  # fmt: skip
def test_both_decoders_accept_the_same_lines_with_the_same_messages(line: bytes) -> None:
    assert _outcome(decode_message_line, line) == _contract_line(line)


@settings(max_examples=1500, deadline=None)
@given(lines())
def test_the_fast_path_itself_accepts_exactly_what_the_contract_accepts(line: bytes) -> None:
    """Not only correct through the fallback: the mirror is exact, so the fast path is taken for
    every valid record and nothing invalid slips through it."""
    data = line.removeprefix("\ufeff".encode())
    parsed = json.loads(data)
    stream, value = parsed.get("topic"), json.dumps(parsed.get("value"))
    raw = data.split(b'"value":', 1)[1][:-1]
    if stream not in VALID or b'"topic"' in raw:
        return
    contract = _outcome(decode_event, stream, raw)
    assert _fast_accepts(stream, raw) == (contract[0] == "ok"), (contract, value)
    assert _outcome(decode_message, stream, raw) == (
        contract if contract[0] == "error" else ("ok", contract[1].to_message())
    )


@given(st.binary(max_size=200))
def test_arbitrary_bytes_get_the_contract_s_answer(data: bytes) -> None:
    assert _outcome(decode_message_line, data) == _contract_line(data)
    for stream in VALID:
        contract = _outcome(decode_event, stream, data)
        expected = contract if contract[0] == "error" else ("ok", contract[1].to_message())
        assert _outcome(decode_message, stream, data) == expected


def test_a_simulated_history_decodes_to_the_same_messages_both_ways() -> None:
    events = io.StringIO()
    write_simulation(SimulationSettings(identities=300, seed=3), events, None)
    lines_ = events.getvalue().encode().splitlines()

    assert len(lines_) > 3000
    for line in lines_:
        assert _outcome(decode_message_line, line) == _contract_line(line)


def test_a_record_without_a_value_is_a_contract_error() -> None:
    """A tombstone on an input topic (a compaction-minded producer) is dead-lettered, never a
    crash of ingest."""
    with pytest.raises(ContractError, match="no value"):
        decode_message("identity.status", None)
