"""What a part's inspection comes to, and the robot bin each outcome goes to."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Outcome(StrEnum):
    PASS = "PASS"
    REJECT = "REJECT"
    RECHECK = "RECHECK"


class Bin(IntEnum):
    """Robot destination; the KRL program maps these numbers to drop positions."""

    GOOD = 1
    REJECT = 2
    RECHECK = 3


BIN_OF = {Outcome.PASS: Bin.GOOD, Outcome.REJECT: Bin.REJECT, Outcome.RECHECK: Bin.RECHECK}
