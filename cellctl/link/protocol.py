"""Robot link protocol, version 2: one JSON object per ZeroMQ frame, ``type`` names the kind.

cell -> bridge: ``ready`` (the fixture is free: answer request ``request_id`` with one part),
``verdict``, ``heartbeat``, ``refused`` (a message from the bridge the cell did not take).
bridge -> cell: ``part`` (the answer to one ``ready``), ``ack`` (a verdict received and acted
on, or refused with ``res != 0``), ``heartbeat``, ``refused``.

Everything is bounded: a frame over ``MAX_FRAME_BYTES`` is refused before it is parsed (and
the socket's MAXMSGSIZE disconnects a peer that sends one over ``MAXMSGSIZE``), every string
has a length limit and a character set, every number a type (``"42"`` is not a seq); no
object holds a key twice, no number is NaN or infinite, and a verdict's bin is its outcome's. The
decoders never raise: they return the message or a ``Refusal`` that names why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from cellctl.outcome import BIN_OF, Bin, Outcome
from cellctl.text import SafeName, SafeText, printable

T = TypeVar("T")
PROTOCOL_VERSION: Literal[2] = 2
MAX_FRAME_BYTES = 16_384  # a verdict with 64 scores is ~5 KB; the decoder refuses anything longer
MAXMSGSIZE = 65_536  # socket option: libzmq drops the connection of a peer that sends more
MAX_SCORES = 64  # views per part

# request ids and boot ids: short tokens the other side echoes back unchanged
Token = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Seq = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Refusal(StrEnum):
    """Why a message was not taken; carried in ``refused`` and counted per reason."""

    NO_OPEN_REQUEST = "no_open_request"  # a part while the cell asked for none
    STALE_REQUEST = "stale_request"  # a part answering a request that is closed or unknown
    ALREADY_ANSWERED = "already_answered"  # a second part for a request already answered
    EXTRA_FRAMES = "extra_frames"  # a message must be exactly one frame
    OVERSIZED = "oversized"  # frame longer than MAX_FRAME_BYTES
    MALFORMED = "malformed"  # not JSON, or not a message of this protocol (wrong schema)
    WRONG_VERSION = "wrong_version"  # ``v`` is not PROTOCOL_VERSION
    WRONG_DIRECTION = "wrong_direction"  # a valid message that never travels this way
    WRONG_CELL = "wrong_cell"  # names a cell other than the authenticated sender


class Message(BaseModel):
    # strict: no coercion, so a seq sent as "42" or a bin as "2" is refused, not guessed
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    v: Literal[2] = PROTOCOL_VERSION


class Ready(Message):
    """Cell -> bridge: the fixture is free; answer ``request_id`` with exactly one part."""

    type: Literal["ready"] = "ready"
    cell_id: SafeName
    boot_id: Token = Field(description="this run of the daemon; new at every start")
    request_id: Token = Field(description="fresh per offer; a part must echo it")
    accepted: SafeName | None = Field(
        default=None,
        description="part_id of the last part the cell durably took from the fixture; null if none. "
        "A part in the fixture that is not this one was never taken: announce it again.",
    )


class Part(Message):
    """Bridge -> cell: a part sits in the fixture, answering the open request."""

    type: Literal["part"] = "part"
    request_id: Token
    part_id: SafeName
    profile: SafeName | None = Field(default=None, description="profile name; the cell default if absent")


class Verdict(Message):
    """Cell -> bridge: what to do with one part. Resent unchanged until acknowledged."""

    type: Literal["verdict"] = "verdict"
    cell_id: SafeName
    boot_id: Token = Field(description="the run of the daemon that judged the part")
    seq: Seq = Field(description="per cell, strictly increasing, durable, never reused")
    request_id: Token | None = Field(description="the request the part answered; null for parts of older records")
    part_id: SafeName
    profile: SafeName
    profile_sha256: Sha256 | None = Field(default=None, description="hash of the profile file used")
    model_sha256: Sha256 | None = None
    verdict: Outcome
    bin: Bin
    reason: SafeText = Field(description="why: 'all views clean', 'defect in head@90', 'frame: timeout ...'")
    scores: dict[SafeName, float | None] = Field(default_factory=dict, max_length=MAX_SCORES)
    max_score: float | None = Field(description="highest defect probability of any view, null if none")
    worst_view: SafeName | None = None
    latency_ms: float = Field(ge=0.0, description="acquisition start to publication")

    @field_validator("scores")
    @classmethod
    def _finite(cls, scores: dict[str, float | None]) -> dict[str, float | None]:
        # JSON has no NaN; a non-finite score is sent as null
        return {k: (v if v is not None and math.isfinite(v) else None) for k, v in scores.items()}


class Ack(Message):
    """Bridge -> cell: verdict ``seq`` of ``cell_id``/``boot_id`` received. ``res`` 0: the robot
    acts on it (the part goes to ``bin``); any other value: the robot refused it (see README)."""

    type: Literal["ack"] = "ack"
    cell_id: SafeName
    boot_id: Token
    seq: Seq
    bin: Bin
    res: int = Field(default=0, ge=0, le=65_535)
    detail: SafeText | None = None


class Heartbeat(Message):
    type: Literal["heartbeat"] = "heartbeat"
    sender: SafeName
    boot_id: Token = Field(description="a new boot id means the peer restarted")


class Refused(Message):
    """Either way: a message that was not taken, and why. Never answered."""

    type: Literal["refused"] = "refused"
    reason: Refusal
    detail: SafeText = ""
    request_id: Token | None = None
    part_id: SafeName | None = None


CellBound = Part | Ack | Heartbeat | Refused
BridgeBound = Ready | Verdict | Heartbeat | Refused
_CELL_BOUND: TypeAdapter[CellBound] = TypeAdapter(Annotated[CellBound, Field(discriminator="type")])
_BRIDGE_BOUND: TypeAdapter[BridgeBound] = TypeAdapter(Annotated[BridgeBound, Field(discriminator="type")])
_ANY: TypeAdapter[CellBound | Ready | Verdict] = TypeAdapter(
    Annotated[Part | Ack | Heartbeat | Refused | Ready | Verdict, Field(discriminator="type")]
)


@dataclass(frozen=True)
class Rejected:
    """A frame (or multipart message) that is not a message for this side, and why."""

    reason: Refusal
    detail: str

    def refused(self, **ids: str | None) -> Refused:
        return Refused(reason=self.reason, detail=self.detail[:200], **ids)  # type: ignore[arg-type]


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()


def decode_cell_bound(frames: list[bytes]) -> CellBound | Rejected:
    """A message for the cell, or why not. Never raises."""
    return _decode(frames, _CELL_BOUND)


def decode_bridge_bound(frames: list[bytes]) -> BridgeBound | Rejected:
    """A message for the bridge, or why not. Never raises."""
    return _decode(frames, _BRIDGE_BOUND)


def _decode(frames: list[bytes], adapter: TypeAdapter[T]) -> T | Rejected:
    if len(frames) != 1:
        return Rejected(Refusal.EXTRA_FRAMES, f"{len(frames)} frames, a message is exactly 1")
    raw = frames[0]
    if len(raw) > MAX_FRAME_BYTES:
        return Rejected(Refusal.OVERSIZED, f"{len(raw)} bytes, at most {MAX_FRAME_BYTES}")
    problem = _not_plain_json(raw)
    if problem is not None:
        return Rejected(Refusal.MALFORMED, problem)
    try:
        message = adapter.validate_json(raw)
    except ValidationError as exc:
        return _why(raw, exc)
    except Exception as exc:  # noqa: BLE001 - the decoder never raises on wire input
        return Rejected(Refusal.MALFORMED, f"{type(exc).__name__}")
    if isinstance(message, Verdict) and message.bin != BIN_OF[message.verdict]:
        # the robot sorts by bin, the records keep the verdict: both must say the same
        return Rejected(Refusal.MALFORMED, f"bin {int(message.bin)} is not the bin of {message.verdict.value}")
    return message


def _not_plain_json(raw: bytes) -> str | None:
    """Why ``raw`` is not one plain JSON document, or None. validate_json takes the last of two
    equal keys (a verdict could say one seq to a reader of the first and another to us) and the
    non-JSON NaN / Infinity literals; Python's parser, which can see both, is the check. Frames
    are at most MAX_FRAME_BYTES, so parsing twice costs little."""
    try:
        json.loads(raw.decode("utf-8"), object_pairs_hook=_unique, parse_constant=_no_constant, parse_float=_finite)
    except _Refused as exc:
        return str(exc)
    except (ValueError, RecursionError) as exc:  # not UTF-8 (a ValueError too), not JSON, too deep
        return printable(f"not JSON: {type(exc).__name__}: {exc}")[:200]
    return None


class _Refused(ValueError):
    """Valid to Python's parser, not plain JSON for us."""


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Refused(printable(f"duplicate key {key[:40]!r}")[:200])
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON (a non-finite value travels as null)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON, but no float (a non-finite value travels as null)
        raise _Refused(f"number {text[:40]} is out of range (a non-finite value travels as null)")
    return value


def _why(raw: bytes, exc: ValidationError) -> Rejected:
    """The most useful reason for a frame that did not validate."""
    try:
        other = _ANY.validate_json(raw)
    except ValidationError:
        other = None
    if other is not None:
        return Rejected(Refusal.WRONG_DIRECTION, f"a {other.type!r} message never travels this way")
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    if first["loc"][-1:] == ("v",) or (len(first["loc"]) > 1 and first["loc"][1] == "v"):
        return Rejected(Refusal.WRONG_VERSION, f"protocol version must be {PROTOCOL_VERSION}")
    return Rejected(Refusal.MALFORMED, printable(f"{where}: {first['msg']}")[:200])
