"""Property tests of what reads input: arbitrary bytes, arbitrary JSON and hostile but valid
events never make the decoder or the replay parser raise anything but the package's contract
error, and each example finishes within a generous bound (a guard against hangs and blow-ups,
not a speed target)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accessdrift.models.errors import ContractError
from accessdrift.models.events import STREAMS, decode_event, decode_line
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.replay import replay
from tests.scenarios import ListSink

BOUNDED = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow],
)
FIELDS = [
    "event_id",
    "occurred_at",
    "source",
    "identity_id",
    "status",
    "identity_kind",
    "role",
    "owner_id",
    "device_id",
    "posture",
    "identity_ids",
    "system",
    "entitlement",
    "action",
    "kind",
    "privileged",
    "requires_trusted_device",
    "exception_id",
    "expires_at",
    "reason",
    "approved_by",
]
#: Text with what hostile input carries: controls, escapes, separators, bidi overrides, astral.
HOSTILE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\n", "\x1b", "\x1f", "\u2028", "\u2029", "\x85", "\u202e", "\ufeff"]),
    ),
    max_size=40,
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-01-05T09:00:00Z",
            "2026-01-05T09:00:00+14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "20260101",
            "2026-02-30T00:00:00Z",
            "2026-01-05T09:00:00",
            "2126-01-05T09:00:00Z",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    HOSTILE_TEXT,
)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        HOSTILE_TEXT,
        TIMES,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), HOSTILE_TEXT), children, max_size=8),
    ),
    max_leaves=25,
)
EVENT_LIKE = st.dictionaries(st.one_of(st.sampled_from(FIELDS), HOSTILE_TEXT), JSON, max_size=12)
LINE_LIKE = st.fixed_dictionaries(
    {"topic": st.one_of(st.sampled_from(STREAMS), HOSTILE_TEXT), "value": EVENT_LIKE}
)


def _message(error: ContractError | None) -> str:
    return "" if error is None else str(error)


def _decode_or_contract_error(data: bytes) -> None:
    failure: ContractError | None = None
    try:
        decode_line(data)
    except ContractError as error:
        failure = error
        assert _message(failure)
    assert "\n" not in _message(failure)
    assert "\x1b" not in _message(failure)


@BOUNDED
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_a_line_or_a_contract_error(data: bytes) -> None:
    _decode_or_contract_error(data)


@BOUNDED
@given(JSON)
def test_arbitrary_json_is_a_line_or_a_contract_error(value: Any) -> None:
    _decode_or_contract_error(json.dumps(value).encode())


@BOUNDED
@given(LINE_LIKE, st.booleans())
def test_line_shaped_json_is_a_line_or_a_contract_error(value: Any, repeat_a_key: bool) -> None:
    text = json.dumps(value)
    if repeat_a_key and value["value"]:
        text = text[:-2] + ", " + json.dumps(value["value"])[1:] + "}"
    _decode_or_contract_error(text.encode())


@BOUNDED
@given(st.sampled_from([*STREAMS, "nonsense"]), st.one_of(st.binary(max_size=512), JSON))
def test_a_record_value_is_an_event_or_a_contract_error(stream: str, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    failure: ContractError | None = None
    try:
        decode_event(stream, data)
    except ContractError as error:
        failure = error
    assert "\n" not in _message(failure)


def _valid_events() -> st.SearchStrategy[dict[str, Any]]:
    """Events that pass the contract, with hostile names and times close together, so that the
    engine behind the parser is exercised too."""
    ids = st.one_of(st.sampled_from(["a", "b", "svc"]), HOSTILE_TEXT.filter(bool))
    minute = st.integers(min_value=0, max_value=3000).map(
        lambda m: f"2026-01-05T{m // 60 % 24:02d}:{m % 60:02d}:00Z"
    )
    common = {"event_id": st.sampled_from(["e1", "e2", "e3"]) | HOSTILE_TEXT.filter(bool)}
    status = st.fixed_dictionaries(
        {
            **common,
            "occurred_at": minute,
            "identity_id": ids,
            "status": st.sampled_from(["active", "suspended", "terminated"]),
        },
        optional={"role": ids},
    ).map(lambda v: {"topic": "identity.status", "value": v})
    owned = st.fixed_dictionaries(
        {
            **common,
            "occurred_at": minute,
            "identity_id": st.just("svc"),
            "status": st.sampled_from(["active", "terminated"]),
            "identity_kind": st.just("service_account"),
            "owner_id": st.sampled_from(["a", "b"]),
        }
    ).map(lambda v: {"topic": "identity.status", "value": v})
    entitlement = st.fixed_dictionaries(
        {
            **common,
            "occurred_at": minute,
            "identity_id": ids,
            "system": ids,
            "entitlement": ids,
            "action": st.sampled_from(["granted", "revoked"]),
            "kind": st.sampled_from(["role", "session", "token"]),
            "privileged": st.booleans(),
            "requires_trusted_device": st.booleans(),
        },
        optional={"device_id": ids},
    ).map(lambda v: {"topic": "entitlement.change", "value": v})
    device = st.fixed_dictionaries(
        {
            **common,
            "occurred_at": minute,
            "device_id": ids,
            "posture": st.sampled_from(["compliant", "lost", "noncompliant", "unenrolled"]),
            "identity_ids": st.lists(ids, max_size=3),
        }
    ).map(lambda v: {"topic": "device.posture", "value": v})
    return st.one_of(status, owned, entitlement, device)


@settings(BOUNDED, max_examples=150)
@given(
    st.lists(
        st.one_of(
            _valid_events().map(lambda e: json.dumps(e).encode()),
            st.binary(max_size=200),
            LINE_LIKE.map(lambda e: json.dumps(e).encode()),
        ),
        max_size=40,
    ),
    st.integers(min_value=0, max_value=3600),
)
def test_the_replay_parser_reports_bad_lines_and_runs_the_rest(
    lines: list[bytes], lateness_s: int
) -> None:
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"
    findings, errors = ListSink(), io.StringIO()

    summary = replay(
        [("in", io.BytesIO(data)), ("other", io.BytesIO(data[::-1]))],
        Engine(Policy(), grace_s=60),
        findings,
        ListSink(),
        errors=errors,
        until_us=None,
        lateness_s=lateness_s,
    )

    reported = [line for line in errors.getvalue().splitlines() if line]
    assert summary.rejected == len(reported)
    assert all(line.startswith(("in:", "other:")) for line in reported)
    assert "\x1b" not in errors.getvalue()
