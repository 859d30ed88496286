"""The link's decoders against anything a peer may send: arbitrary bytes and frame lists, and
valid messages mutated byte by byte and field by field. The answer is always a message of the
right direction or a ``Rejected`` with a reason; the decoders never raise. Deterministic
(derandomize) and without deadlines: nothing here races the clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellctl.link.protocol import (
    MAX_FRAME_BYTES,
    MAX_SCORES,
    Ack,
    Heartbeat,
    Message,
    Part,
    Ready,
    Refusal,
    Refused,
    Rejected,
    Verdict,
    decode_bridge_bound,
    decode_cell_bound,
    encode,
)
from cellctl.outcome import BIN_OF, Bin, Outcome

FUZZ = settings(
    derandomize=True,
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CELL_TYPES = (Part, Ack, Heartbeat, Refused)
BRIDGE_TYPES = (Ready, Verdict, Heartbeat, Refused)

VERDICT = Verdict(
    cell_id="cell-01",
    boot_id="5f1c0e9a2b7d4c31",
    seq=42,
    request_id="9d2e7f1a0c3b5e48",
    part_id="P00042",
    profile="m8x40-hex",
    profile_sha256="a" * 64,
    model_sha256="b" * 64,
    verdict=Outcome.REJECT,
    bin=Bin.REJECT,
    reason="defect in head@90 (p=0.981)",
    scores={"head@0": 0.002, "head@90": 0.981},
    max_score=0.981,
    worst_view="head@90",
    latency_ms=212.4,
)
CELL_BOUND: list[Message] = [
    Part(request_id="9d2e7f1a0c3b5e48", part_id="P00042", profile="m8x40-hex"),
    Ack(cell_id="cell-01", boot_id="5f1c0e9a2b7d4c31", seq=42, bin=Bin.REJECT, res=0),
    Ack(cell_id="cell-01", boot_id="b", seq=7, bin=Bin.GOOD, res=3, detail="bin full"),
    Heartbeat(sender="bridge", boot_id="0a1b2c"),
    Refused(reason=Refusal.WRONG_CELL, detail="cell-02 is not your key", request_id="r1"),
]
BRIDGE_BOUND: list[Message] = [
    Ready(cell_id="cell-01", boot_id="5f1c0e9a2b7d4c31", request_id="9d2e7f1a0c3b5e48", accepted="P00041"),
    VERDICT,
    Heartbeat(sender="cell-01", boot_id="5f1c0e9a2b7d4c31"),
    Refused(reason=Refusal.STALE_REQUEST, detail="not the open request", request_id="r5", part_id="P7"),
]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80)
    | st.sampled_from(["", "2", "42", "\u202e", "\x1b[31m", "x" * 65, "PASS", "part", "ack", "verdict"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _check(result: object, types: tuple[type, ...]) -> None:
    assert isinstance(result, (*types, Rejected)), result
    if isinstance(result, Rejected):
        assert isinstance(result.reason, Refusal) and isinstance(result.detail, str)
        refused = result.refused()  # always sendable back to the peer
        assert isinstance(decode_cell_bound([encode(refused)]), Refused)
        assert isinstance(decode_bridge_bound([encode(refused)]), Refused)
    else:
        # whatever was accepted travels again unchanged
        again = decode_cell_bound([encode(result)]) if types is CELL_TYPES else decode_bridge_bound([encode(result)])
        assert again == result


def _mutate_fields(message: Message, data: st.DataObject) -> bytes:
    fields: dict[str, Any] = json.loads(encode(message))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        key = data.draw(st.sampled_from(sorted(fields) or ["type"]), label="key")
        if action == "replace":
            fields[key] = data.draw(JSON_VALUES, label="value")
        elif action == "delete":
            fields.pop(key, None)
        else:
            fields[data.draw(st.text(max_size=10), label="new key")] = data.draw(JSON_VALUES, label="new value")
    return json.dumps(fields).encode()


def _mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(buf)), label="at")
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]), label="action")
        if action == "flip" and at < len(buf):
            buf[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif action == "insert":
            buf[at:at] = data.draw(st.binary(max_size=8), label="bytes")
        else:
            del buf[at : at + data.draw(st.integers(1, 8), label="length")]
    return bytes(buf)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_arbitrary_frames_are_a_message_or_rejected(frames):
    _check(decode_cell_bound(frames), CELL_TYPES)
    _check(decode_bridge_bound(frames), BRIDGE_TYPES)


@FUZZ
@given(st.data())
def test_mutated_messages_for_the_cell_are_a_message_or_rejected(data):
    message = data.draw(st.sampled_from(CELL_BOUND + BRIDGE_BOUND), label="message")
    raw = (
        _mutate_fields(message, data)
        if data.draw(st.booleans(), label="json-level")
        else _mutate_bytes(encode(message), data)
    )
    extra = data.draw(st.lists(st.binary(max_size=20), max_size=2), label="extra frames")
    _check(decode_cell_bound([raw, *extra]), CELL_TYPES)
    _check(decode_bridge_bound([raw, *extra]), BRIDGE_TYPES)
    if extra:
        assert decode_cell_bound([raw, *extra]) == Rejected(
            Refusal.EXTRA_FRAMES, f"{1 + len(extra)} frames, a message is exactly 1"
        )


@pytest.mark.parametrize("message", CELL_BOUND, ids=lambda m: m.type)
def test_every_cell_bound_message_decodes_for_the_cell_only_where_it_travels(message):
    raw = encode(message)
    assert decode_cell_bound([raw]) == message
    bridge_side = decode_bridge_bound([raw])
    if isinstance(message, (Heartbeat, Refused)):
        assert bridge_side == message  # both ways
    else:
        assert isinstance(bridge_side, Rejected) and bridge_side.reason is Refusal.WRONG_DIRECTION


@pytest.mark.parametrize("message", BRIDGE_BOUND, ids=lambda m: m.type)
def test_every_bridge_bound_message_decodes_for_the_bridge(message):
    assert decode_bridge_bound([encode(message)]) == message
    if isinstance(message, (Ready, Verdict)):
        assert decode_cell_bound([encode(message)]).reason is Refusal.WRONG_DIRECTION  # type: ignore[union-attr]


def _json(message: Message, **changes: Any) -> bytes:
    fields = json.loads(encode(message))
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("decode", "frames", "reason"),
    [
        # a number as a string is not a number: "42" is no seq, "2" no bin
        (decode_cell_bound, [_json(CELL_BOUND[1], seq="42")], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[1], bin="2")], Refusal.MALFORMED),
        (decode_bridge_bound, [_json(VERDICT, seq="42")], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[1], seq=0)], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[1], seq=2**63)], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[1], bin=4)], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[1], res=-1)], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[0], extra="field")], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[0], part_id="P\u202e1")], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[0], request_id="r 1")], Refusal.MALFORMED),
        (decode_cell_bound, [_json(CELL_BOUND[0], profile="x" * 65)], Refusal.MALFORMED),
        (
            decode_bridge_bound,
            [_json(VERDICT, scores={f"v{i}": 0.1 for i in range(MAX_SCORES + 1)})],
            Refusal.MALFORMED,
        ),
        (decode_cell_bound, [b"[]"], Refusal.MALFORMED),
        (decode_cell_bound, [b'{"type": "launch"}'], Refusal.MALFORMED),
        (decode_cell_bound, [b"\xff\xfe{"], Refusal.MALFORMED),
        (decode_cell_bound, [b""], Refusal.MALFORMED),
        # versions
        (decode_cell_bound, [_json(CELL_BOUND[0], v=1)], Refusal.WRONG_VERSION),
        (decode_cell_bound, [_json(CELL_BOUND[0], v="2")], Refusal.WRONG_VERSION),
        (decode_bridge_bound, [_json(VERDICT, v=3)], Refusal.WRONG_VERSION),
        # directions
        (decode_cell_bound, [encode(BRIDGE_BOUND[0])], Refusal.WRONG_DIRECTION),
        (decode_bridge_bound, [encode(CELL_BOUND[0])], Refusal.WRONG_DIRECTION),
        (decode_bridge_bound, [encode(CELL_BOUND[1])], Refusal.WRONG_DIRECTION),
        # frames and size
        (decode_cell_bound, [], Refusal.EXTRA_FRAMES),
        (decode_cell_bound, [encode(CELL_BOUND[0])] * 2, Refusal.EXTRA_FRAMES),
        (decode_bridge_bound, [encode(VERDICT), b""], Refusal.EXTRA_FRAMES),
        (decode_cell_bound, [b"x" * (MAX_FRAME_BYTES + 1)], Refusal.OVERSIZED),
        (decode_cell_bound, [_json(CELL_BOUND[0], profile="x" * MAX_FRAME_BYTES)], Refusal.OVERSIZED),
    ],
)
def test_specific_refusals(decode, frames, reason):
    result = decode(frames)
    assert isinstance(result, Rejected) and result.reason is reason, result
    assert len(result.detail) <= 200 and result.detail.isprintable()


def test_the_size_limit_is_exact():
    raw = encode(CELL_BOUND[3])
    at_limit = raw[:-1] + b" " * (MAX_FRAME_BYTES - len(raw)) + b"}"  # JSON whitespace as padding
    assert len(at_limit) == MAX_FRAME_BYTES and decode_cell_bound([at_limit]) == CELL_BOUND[3]
    over = decode_cell_bound([b" " + at_limit])
    assert isinstance(over, Rejected) and over.reason is Refusal.OVERSIZED


def _raw_verdict(**replace: str) -> bytes:
    """VERDICT as text with raw JSON put in for some fields (what json.dumps cannot write)."""
    text = encode(VERDICT).decode()
    fields = json.loads(text)
    for key, raw in replace.items():
        text = text.replace(f'"{key}":{json.dumps(fields[key], separators=(",", ":"))}', f'"{key}":{raw}', 1)
        assert f'"{key}":{raw}' in text, key
    return text.encode()


@pytest.mark.parametrize(
    ("decode", "raw", "words"),
    [
        # two equal keys: validate_json keeps the last, another reader the first
        (decode_cell_bound, b'{"v":2,"type":"ack","cell_id":"c","boot_id":"b","seq":1,"seq":2,"bin":1}', "'seq'"),
        (decode_bridge_bound, _raw_verdict(bin='2,"bin":1'), "'bin'"),
        (decode_bridge_bound, _raw_verdict(scores='{"head@0":0.1,"head@0":0.9}'), "'head@0'"),
        (decode_cell_bound, b'{"v":2,"v":2,"type":"heartbeat","sender":"bridge","boot_id":"x"}', "'v'"),
        # Python's json writes these, no JSON parser should take them: non-finite travels as null
        (decode_bridge_bound, _raw_verdict(max_score="NaN"), "NaN"),
        (decode_bridge_bound, _raw_verdict(latency_ms="Infinity"), "Infinity"),
        (decode_bridge_bound, _raw_verdict(scores='{"head@0":-Infinity}'), "-Infinity"),
        (decode_cell_bound, b'{"v":2,"type":"ack","cell_id":"c","boot_id":"b","seq":NaN,"bin":1}', "NaN"),
        (decode_bridge_bound, _raw_verdict(latency_ms="1e400"), "1e400"),
        # the robot sorts by bin, the records keep the verdict: they must agree
        (decode_bridge_bound, _json(VERDICT, bin=1), "bin 1 is not the bin of REJECT"),
        (decode_bridge_bound, _json(VERDICT, verdict="PASS"), "bin 2 is not the bin of PASS"),
        (decode_bridge_bound, _json(VERDICT, verdict="RECHECK", bin=2), "bin 2 is not the bin of RECHECK"),
    ],
    ids=[
        "dup-seq",
        "dup-bin",
        "dup-score",
        "dup-v",
        "nan",
        "infinity",
        "minus-infinity",
        "nan-seq",
        "overflow",
        "bin-of-pass",
        "pass-in-bin-2",
        "recheck-in-bin-2",
    ],
)
def test_duplicate_keys_non_finite_literals_and_a_bin_against_its_verdict_are_malformed(decode, raw, words):
    result = decode([raw])
    assert isinstance(result, Rejected) and result.reason is Refusal.MALFORMED, result
    assert words in result.detail and len(result.detail) <= 200 and result.detail.isprintable(), result.detail


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_verdict_in_the_bin_of_its_outcome_is_taken(outcome):
    verdict = VERDICT.model_copy(update={"verdict": outcome, "bin": BIN_OF[outcome]})
    assert decode_bridge_bound([encode(verdict)]) == verdict
    scores_null = _json(VERDICT, scores={"head@0": None}, max_score=None)  # non-finite, as sent
    assert isinstance(decode_bridge_bound([scores_null]), Verdict)
