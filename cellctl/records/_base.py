"""What the records hold and say: the error, the ack states, the row types, a transaction."""

from __future__ import annotations

import math
import numbers
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cellctl.drivers import CellError
from cellctl.link.protocol import Verdict


class RecordsError(CellError):
    """The records database could not be read or written."""


class AckState(StrEnum):
    """Where a recorded verdict stands with the robot (column ``ack_state``)."""

    PENDING = "pending"  # recorded, not acknowledged yet: sent and resent
    ACKED = "acked"  # the robot acts on it
    ACKED_LATE = "acked_late"  # acknowledged after it had expired
    EXPIRED = "expired"  # not acknowledged within the delivery deadline: resent at reconnection and start
    REFUSED = "refused"  # the robot answered res != 0: it keeps the part out of every bin; never resent


UNDELIVERED = (AckState.PENDING, AckState.EXPIRED)  # what is (re)sent
ANSWERED = (AckState.ACKED, AckState.ACKED_LATE, AckState.REFUSED)  # final: never changes again


@dataclass(frozen=True)
class Record:
    verdict: Verdict
    scores: dict[str, float]
    timings_ms: dict[str, float]
    # why the part was judged so, beside its scores (cellctl.pipeline.analyse.evidence): the
    # surface covered, each view's out-of-distribution distance, what stood against a PASS;
    # empty for parts never inspected and for rows written before schema 4
    evidence: dict[str, Any] = field(default_factory=dict)


def finite_json(value: object) -> Any:
    """``value`` as JSON can hold it: a non-finite number becomes null (JSON has no NaN), tuples
    become lists, keys become strings, and anything JSON has no type for its text, so a record
    is never refused for what its evidence happens to contain."""
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


@dataclass(frozen=True)
class Accepted:
    """A part taken from the fixture and not judged yet."""

    seq: int
    part_id: str
    profile: str
    accepted_at: str
    request_id: str | None  # null for parts accepted before schema 3
    boot_id: str | None


class transaction:  # lower case: used as a statement, `with transaction(db):`
    """BEGIN IMMEDIATE .. COMMIT, rolled back on any error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")
