"""Why a part could not be judged: the step that failed, what happened, and the error behind it.

A fault is rendered once, into the verdict's reason (``"<step>: <detail>"``); nothing
downstream parses reasons back into fault names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """The steps of one part's way through the cell, in order."""

    ACCEPT = "accept"  # the part recorded as in the fixture (durable seq)
    PROFILE = "profile"  # unknown profile, or a device refused the profile switch
    LIGHT_ON = "light_on"
    BEGIN_STRIP = "begin_strip"
    MOVE = "move"
    TRIGGER = "trigger"
    FRAME = "frame"
    STRIP = "strip"
    LIGHT_OFF = "light_off"
    PREPROCESS = "preprocess"  # pixel conversion, regions, input invariants
    INFER = "infer"  # the model, and the check of its output
    DECIDE = "decide"
    RECORD = "record"  # the durable record of the verdict
    INTERRUPTED = "interrupted"  # the daemon stopped (crash, kill, power loss) mid-part


@dataclass(frozen=True)
class Fault:
    step: Step
    detail: str
    error: BaseException | None = None

    @property
    def reason(self) -> str:
        return f"{self.step.value}: {self.detail}"

    @classmethod
    def of(cls, step: Step, error: BaseException) -> Fault:
        """A fault from an exception; its message, or its type when it has none."""
        return cls(step, str(error) or type(error).__name__, error)
