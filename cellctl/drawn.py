"""What a rendered part carries, read from the ``part.json`` that ``cellctl sim --export``
writes into each part folder, so that ``cellctl eval --parts`` reports good parts carrying
indications below the profile's minimum apart from clean ones (issue 8: smaller indications
are drawn too and reported separately).

An indication's size relative to the acceptance limit is ``min(length / min_length,
contrast / min_contrast)``: at least 1 exactly when it is relevant (both limits met), 0.9 for
one 10 % short of the nearer limit. The closer a good part's largest sub-threshold indication
lies to 1, the less any measurement can accept it with certainty: a sizing that is right to
within 10 % must reject or recheck every good part whose indication reaches 0.9 to let no
defective one pass. Plant images have no part.json; their parts are counted as unrecorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellctl.files import BadFile, read_json

RECORD = "part.json"
MAX_RECORD_BYTES = 2**20  # the simulator writes a few kB per part: a few indications
NEAR_LIMIT = (0.9, 0.75, 0.5)  # good parts whose largest sub-threshold indication reaches these


@dataclass(frozen=True)
class Drawn:
    subthreshold: int  # indications below the minimum
    nearest_below: float | None  # the largest size of those, relative to the limit (< 1)
    strongest: float | None  # the largest relevant indication's (>= 1); None on a good part


def relative_size(indication: dict[str, Any], min_length_mm: float, min_contrast: float) -> float:
    return min(float(indication["length_mm"]) / min_length_mm, float(indication["contrast"]) / min_contrast)


class BadRecord(ValueError):
    """A part.json that is not one ``cellctl sim`` wrote; the message says why."""


def read_drawn(folder: Path) -> Drawn | None:
    """The part's record, or None when there is none or it is not one ``cellctl sim`` wrote
    (a plant part, a damaged file): the breakdown then counts the part as unrecorded."""
    try:
        return drawn_record(folder)
    except BadRecord:
        return None


def drawn_record(folder: Path) -> Drawn | None:
    """The part's record; None when the folder has no part.json (a plant part); ``BadRecord``
    saying why when it has one that cannot be used: not a regular file, larger than any the
    simulator writes, not JSON, nested deeper than JSON nests here, a number that is not
    finite (``1e400``, ``NaN``), or not the simulator's fields."""
    path = folder / RECORD
    if not os.path.lexists(path):
        return None
    try:
        data = read_json(
            path, MAX_RECORD_BYTES, "a part record", parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except BadFile as exc:
        raise BadRecord(str(exc)) from None
    try:
        limits = float(data["min_length_mm"]), float(data["min_contrast"])
        sizes = [relative_size(i, *limits) for i in data["indications"]]
    except KeyError as exc:
        raise BadRecord(f"no {exc} in it") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise BadRecord(f"not a record of cellctl sim ({exc})") from None
    if not all(math.isfinite(s) and s >= 0 for s in sizes):
        raise BadRecord("an indication's size relative to the limit is not a finite number >= 0")
    below = [s for s in sizes if s < 1.0]
    relevant = [s for s in sizes if s >= 1.0]
    return Drawn(len(below), max(below, default=None), max(relevant, default=None))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def breakdown(parts: Iterable[tuple[str, str, Drawn | None]]) -> dict[str, Any] | None:
    """(truth, called, drawn) of each part -> good parts clean and with sub-threshold
    indications counted apart, and how many good parts carry one near the limit. None when
    no part has a record."""
    groups = {name: {"n": 0, "false_rejects": 0, "rechecks": 0} for name in ("good_clean", "good_with_subthreshold")}
    near = dict.fromkeys(NEAR_LIMIT, 0)
    recorded = unrecorded = 0
    for truth, called, drawn in parts:
        if drawn is None:
            unrecorded += 1
            continue
        recorded += 1
        if truth != "good":
            continue
        group = groups["good_with_subthreshold" if drawn.subthreshold else "good_clean"]
        group["n"] += 1
        group["false_rejects"] += called == "defect"
        group["rechecks"] += called == "recheck"
        for level in NEAR_LIMIT:
            near[level] += drawn.nearest_below is not None and drawn.nearest_below >= level
    if not recorded:
        return None
    return {**groups, "good_near_limit": {f"{k:g}": v for k, v in near.items()}, "unrecorded": unrecorded}
