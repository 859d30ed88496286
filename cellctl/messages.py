"""Messages on the robot link (ZeroMQ, one JSON object per frame, ``type`` names the kind).

cell -> bridge: ``ready`` (fixture free, send the next part), ``verdict``, ``heartbeat``
bridge -> cell: ``part`` (a part sits in the fixture), ``ack`` (verdict received), ``heartbeat``
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from cellctl.text import SafeName

SCHEMA_VERSION: Literal[1] = 1


from cellctl.outcome import BIN_OF, Bin, Outcome  # noqa: E402,F401 - v1 shim, removed with the v2 link


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION


class Ready(Message):
    type: Literal["ready"] = "ready"
    cell_id: str
    accepted: str | None = Field(
        default=None,
        description="part_id of the last part the cell durably accepted (took from the fixture); null if none. "
        "A part the bridge announced but that is not this one was never taken: announce it again.",
    )


class Heartbeat(Message):
    type: Literal["heartbeat"] = "heartbeat"
    sender: str


class PartRequest(Message):
    type: Literal["part"] = "part"
    part_id: SafeName  # bounded, no control or bidi characters: it is logged, stored and shown
    profile: SafeName | None = Field(default=None, description="profile name; the cell default if absent")


class Verdict(Message):
    type: Literal["verdict"] = "verdict"
    cell_id: str
    seq: int = Field(ge=1, description="per cell, strictly increasing, survives restarts")
    part_id: str
    profile: str
    verdict: Outcome
    bin: Bin
    reason: str = Field(description="why: 'all views clean', 'defect in head@90', 'timeout: frame', ...")
    max_score: float | None = Field(description="highest defect probability of any view, null if none")
    worst_view: str | None = None
    model_sha256: str | None = None
    latency_ms: float = Field(description="acquisition start to publication")


class Ack(Message):
    type: Literal["ack"] = "ack"
    cell_id: str
    seq: int = Field(ge=1)
    bin: Bin
    res: int = Field(default=0, description="0 = accepted; other values are bridge error codes")


CellBound = Annotated[PartRequest | Ack | Heartbeat, Field(discriminator="type")]
BridgeBound = Annotated[Ready | Verdict | Heartbeat, Field(discriminator="type")]
CELL_BOUND: TypeAdapter[PartRequest | Ack | Heartbeat] = TypeAdapter(CellBound)
BRIDGE_BOUND: TypeAdapter[Ready | Verdict | Heartbeat] = TypeAdapter(BridgeBound)


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()
