"""What `cellctl promote` and `cellctl check` read of a model package's card.json, validated once.

`cellctl train` writes the card; the gate judges a package by its held-out figures and `check`
by the models it measured. A card is input like any other file: read bounded, each figure the
gate uses declared here (counts whole and non-negative, consistent with one confusion of truth
x verdict, thresholds probabilities, sha256 hex), and a card that is not one is refused with
one line naming the file, the JSON path and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cellctl.config.loader import Problem
from cellctl.files import NotARegularFile, TooLarge, read_bounded

MAX_CARD_BYTES = 8 << 20  # a card is tens of kB; more is no card
MAX_COUNT = 2**53  # a held-out count beyond this is no count (no longer exact as a float); messages say 2**53


class CardError(ValueError):
    """A card.json that is unreadable or malformed: the one line naming file, JSON path and
    what is allowed."""


Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
Probability = Annotated[float, Field(strict=True, gt=0.0, lt=1.0, allow_inf_nan=False)]
Sha256 = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{64}$")]


class _CardPart(BaseModel):
    """Only the fields the gate and `cellctl check` read are declared (and so validated); the
    rest of the card is for people and is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class CardFigures(_CardPart):
    """One tally of held-out items or whole parts (``cellctl.evaluation.tally``): each count a
    whole number >= 0, and the counts consistent with one confusion of truth x verdict."""

    n: Count
    good: Count
    defective: Count
    escapes: Count  # defective judged PASS
    false_rejects: Count  # good judged REJECT
    rechecks: Count  # either judged RECHECK
    # its rates, confusion and ranking are for people: the gate works its rates out of the counts

    @model_validator(mode="after")
    def _adds_up(self) -> CardFigures:
        if self.good + self.defective != self.n:
            raise ValueError(f"good + defective must equal n ({self.good} + {self.defective} != {self.n})")
        if self.escapes > self.defective:
            raise ValueError(f"escapes must be at most defective ({self.escapes} > {self.defective})")
        if self.false_rejects > self.good:
            raise ValueError(f"false_rejects must be at most good ({self.false_rejects} > {self.good})")
        if self.escapes + self.false_rejects + self.rechecks > self.n:
            raise ValueError(
                f"escapes + false_rejects + rechecks must be at most n "
                f"({self.escapes} + {self.false_rejects} + {self.rechecks} > {self.n})"
            )
        return self


class CardModel(_CardPart):
    sha256: Sha256


class CardModels(_CardPart):
    fp32: CardModel
    int8: CardModel


class CardHeldout(_CardPart):
    """Per profile, per kind (``head``, ``shank``, ``part``): INT8's figures (the gate's)."""

    int8: dict[str, dict[str, CardFigures]]


class CardComparison(_CardPart):
    items: Count
    views: Count
    items_differing: Count
    views_differing: Count

    @model_validator(mode="after")
    def _adds_up(self) -> CardComparison:
        if self.items_differing > self.items or self.views_differing > self.views:
            raise ValueError(
                f"items_differing must be at most items and views_differing at most views "
                f"({self.items_differing} of {self.items}, {self.views_differing} of {self.views})"
            )
        return self


class CardDecision(_CardPart):
    """The profile's ``decision`` the held-out figures were measured at (``cellctl train``)."""

    threshold: Probability
    recheck_threshold: Probability | None  # written even when unset (null): a missing key is no record

    @model_validator(mode="after")
    def _band(self) -> CardDecision:
        if self.recheck_threshold is not None and self.recheck_threshold > self.threshold:
            raise ValueError("recheck_threshold must not exceed threshold")
        return self


class CardQuantization(_CardPart):
    thresholds: list[Probability]  # every trained profile's decision.threshold (a card before heldout_decision)


class PackageCard(_CardPart):
    """What `cellctl promote` and `cellctl check` read of a package's card.json."""

    models: CardModels
    heldout: CardHeldout
    heldout_parts: CardHeldout | None = None  # a card of an older factory has items only
    int8_vs_fp32: CardComparison
    heldout_decision: dict[str, CardDecision] | None = None  # a card of an older factory lacks it
    int8_quantization: CardQuantization | None = None

    def measured_decision(self, profile: str) -> CardDecision | None:
        """The threshold (and recheck threshold) ``profile``'s held-out figures were measured
        at, or None if the card does not say. A card written before ``heldout_decision`` (the
        shipped default package's) says the threshold through ``int8_quantization.thresholds``
        (every trained profile's, so one value means all were measured there) but not the
        recheck threshold: taken as unset, as the default package was measured (its profiles
        set none; README, `cellctl promote`)."""
        if self.heldout_decision is not None:
            return self.heldout_decision.get(profile)
        q = self.int8_quantization
        if q is None or len(set(q.thresholds)) != 1:
            return None
        return CardDecision(threshold=q.thresholds[0], recheck_threshold=None)


def read_package_card(path: Path) -> PackageCard:
    """card.json validated, or CardError with one line: the file, the JSON path, what is allowed."""

    def refuse(where: str, message: str) -> CardError:
        return CardError(str(Problem(str(path), 0, where, message)))

    try:
        raw = read_bounded(path, MAX_CARD_BYTES)
    except TooLarge:
        raise refuse("", f"larger than {MAX_CARD_BYTES} bytes: not a model card") from None
    except NotARegularFile as exc:
        raise refuse("", str(exc)) from None
    except OSError as exc:
        raise refuse("", f"cannot read it: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise refuse("", f"not UTF-8 text (byte 0x{raw[exc.start]:02X} at offset {exc.start})") from None
    except RecursionError:
        raise refuse("", "nested too deep to be a model card of `cellctl train`") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more digits than Python converts
        raise refuse("", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise refuse("", f"must be a JSON object (a model card of `cellctl train`), got {_json_kind(data)}")
    try:
        card = PackageCard.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        where, message = _card_problem(errors[0])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise refuse(where, message + more) from None
    if card.heldout_parts is not None:  # a part is defective if any of its items is: never more parts
        for profile, kinds in card.heldout_parts.int8.items():
            items = card.heldout.int8.get(profile, {})
            part = kinds.get("part")
            n, defective = (sum(getattr(f, k) for f in items.values()) for k in ("n", "defective"))
            if part is not None and (part.n > n or part.defective > defective):
                raise refuse(
                    f"heldout_parts.int8.{profile}.part",
                    f"must not count more parts than heldout.int8.{profile} counts items "
                    f"(n {part.n} > {n} or defective {part.defective} > {defective})",
                )
    return card


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


CARD_COUNTS = frozenset(
    (
        "n",
        "good",
        "defective",
        "escapes",
        "false_rejects",
        "rechecks",
        "items",
        "views",
        "items_differing",
        "views_differing",
    )
)


def _card_problem(err: Any) -> tuple[str, str]:
    """(JSON path, message saying what is allowed) of one pydantic error of the card."""
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    where, kind, value, last = ".".join(loc), err["type"], err.get("input"), loc[-1] if loc else ""
    got = f" (got {_json_kind(value) if isinstance(value, (dict, list, bool)) or value is None else _shown(value)})"
    if kind == "missing":
        return where, "required field is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return where, f"must be a JSON object{got}"
    if kind == "list_type":
        return where, f"must be a JSON list{got}"
    if kind == "value_error":
        return where, str(err["msg"]).removeprefix("Value error, ")
    if last in CARD_COUNTS:
        allowed = "a count: a whole number from 0 to 2**53 (no bool, float or string)"
    elif last in ("threshold", "recheck_threshold") or loc[-2:-1] == ["thresholds"]:
        allowed = "a probability: a finite number between 0 and 1" + (
            ", or null" if last == "recheck_threshold" else ""
        )
    elif last == "sha256":
        allowed = "a sha256: 64 lowercase hexadecimal digits"
    else:
        return where, f"{err['msg']}{got}"
    return where, f"must be {allowed}{got}"


def _shown(value: Any) -> str:
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else repr(value)
    return shown[:60] + "..." if len(shown) > 60 else shown
