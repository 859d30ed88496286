"""The EKI messages (typed, validated when built), their XML form and the schema check of a
parsed document. The stream splitting is ``cellctl.bridge.eki``, which re-exports all of this."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from xml.sax.saxutils import escape

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from cellctl.link.protocol import Seq, Token
from cellctl.outcome import Bin
from cellctl.text import SafeName, printable

# the longest valid document is under 1 KB (a Sort whose two names are 64 '"', 6 bytes each
# escaped); EKI's own BUFFSIZE default is 16 KiB
MAX_DOCUMENT_BYTES = 4096


def _xml_chars(value: str) -> str:
    # SafeName already refuses controls and surrogates; these two are not XML 1.0 characters either
    if "\ufffe" in value or "\uffff" in value:
        raise ValueError("U+FFFE and U+FFFF are not XML characters")
    return value


EkiName = Annotated[SafeName, AfterValidator(_xml_chars)]
Res = Annotated[int, Field(ge=0, le=65_535)]
_STRICT = ConfigDict(strict=True)  # no coercion: the decoder converts numbers itself


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiReady:
    """PC -> robot: the fixture of ``cell_id`` is free; answer ``request_id`` with one part."""

    cell_id: EkiName
    request_id: Token
    accepted: EkiName | None = None


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiSort:
    """PC -> robot: put part ``part_id`` in ``bin`` (verdict ``seq`` of ``cell_id``/``boot_id``)."""

    seq: Seq
    bin: Bin
    part_id: EkiName
    cell_id: EkiName
    boot_id: Token


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiCellBeat:
    """PC -> robot heartbeat."""


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiPart:
    """Robot -> PC: ``part_id`` sits in the fixture, answering ready ``request_id``."""

    request_id: Token
    part_id: EkiName
    profile: EkiName | None = None


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiAck:
    """Robot -> PC: Sort ``seq`` done (``res`` 0) or refused (any other ``res``)."""

    seq: Seq
    res: Res


@pydantic_dataclass(frozen=True, config=_STRICT)
class EkiRobotBeat:
    """Robot -> PC heartbeat."""


ToRobot = EkiReady | EkiSort | EkiCellBeat
FromRobot = EkiPart | EkiAck | EkiRobotBeat
EkiMessage = ToRobot | FromRobot


class EkiFault(StrEnum):
    """Why input from the other side was refused; counted per reason."""

    OVERSIZED = "oversized"  # a document longer than max_document_bytes
    FORBIDDEN = "forbidden_markup"  # <!DOCTYPE/<!ENTITY/CDATA/comment, a processing instruction
    MALFORMED = "malformed"  # not well-formed, text outside a document, a truncated document
    NOT_UTF8 = "not_utf8"
    UNKNOWN = "unknown"  # a root, element or attribute this protocol does not have
    BAD_VALUE = "bad_value"  # a number that is not one, out of range, a name with bad characters


@dataclass(frozen=True)
class EkiError:
    reason: EkiFault
    detail: str


@dataclass(frozen=True)
class _Attr:
    xml: str
    field: str
    kind: Literal["str", "int", "bin"]
    required: bool


@dataclass(frozen=True)
class _Wire:
    cls: type[Any]
    root: str
    element: str
    attrs: tuple[_Attr, ...]


_WIRES = (
    _Wire(
        EkiReady,
        "Cell",
        "Ready",
        (
            _Attr("Cell", "cell_id", "str", True),
            _Attr("Req", "request_id", "str", True),
            _Attr("Accepted", "accepted", "str", False),
        ),
    ),
    _Wire(
        EkiSort,
        "Sort",
        "Part",
        (
            _Attr("Seq", "seq", "int", True),
            _Attr("Bin", "bin", "bin", True),
            _Attr("Id", "part_id", "str", True),
            _Attr("Cell", "cell_id", "str", True),
            _Attr("Boot", "boot_id", "str", True),
        ),
    ),
    _Wire(EkiCellBeat, "Cell", "Beat", ()),
    _Wire(
        EkiPart,
        "Robot",
        "Part",
        (
            _Attr("Req", "request_id", "str", True),
            _Attr("Id", "part_id", "str", True),
            _Attr("Profile", "profile", "str", False),
        ),
    ),
    _Wire(EkiAck, "Robot", "Ack", (_Attr("Seq", "seq", "int", True), _Attr("Res", "res", "int", True))),
    _Wire(EkiRobotBeat, "Robot", "Beat", ()),
)
_BY_CLASS = {w.cls: w for w in _WIRES}
_BY_TAG = {(w.root, w.element): w for w in _WIRES}
ROOTS: dict[Literal["robot", "pc"], tuple[str, ...]] = {"robot": ("Robot",), "pc": ("Cell", "Sort")}


_QUOT = {'"': "&quot;"}  # attribute values are always double-quoted


def encode(message: EkiMessage) -> bytes:
    """One document, UTF-8, no declaration. Messages are validated when built, so this never fails."""
    wire = _BY_CLASS[type(message)]
    attrs = []
    for attr in wire.attrs:
        value = getattr(message, attr.field)
        if value is None and not attr.required and attr.xml != "Accepted":
            continue  # optional and absent (Accepted is always sent: see cellctl.bridge.eki)
        text = "" if value is None else str(int(value)) if attr.kind != "str" else value
        attrs.append(f' {attr.xml}="{escape(text, _QUOT)}"')
    return f"<{wire.root}><{wire.element}{''.join(attrs)}/></{wire.root}>".encode()


_NUMBER = re.compile(r"-?[0-9]{1,20}")  # plain decimal: no sign but minus, no spaces, no 0x, no 1e3


def message_of(root: ET.Element, roots: tuple[str, ...]) -> EkiMessage | EkiError:
    """The message an element tree carries, checked against the schema, or why not."""
    if root.tag not in roots:
        return EkiError(EkiFault.UNKNOWN, f"root <{printable(root.tag)[:64]}>")
    if root.attrib:
        return EkiError(EkiFault.UNKNOWN, f"attributes on <{root.tag}>")
    children = list(root)
    if len(children) != 1:
        return EkiError(EkiFault.MALFORMED, f"<{root.tag}> holds {len(children)} elements, exactly 1 expected")
    child = children[0]
    if any((t or "").strip() for t in (root.text, child.text, child.tail)):
        return EkiError(EkiFault.MALFORMED, "text content")
    wire = _BY_TAG.get((root.tag, child.tag))
    if wire is None:
        return EkiError(EkiFault.UNKNOWN, f"<{root.tag}><{printable(child.tag)[:64]}>")
    if len(child):
        return EkiError(EkiFault.UNKNOWN, f"elements inside <{child.tag}>")
    known = {a.xml for a in wire.attrs}
    unknown = sorted(set(child.attrib) - known)
    if unknown:
        return EkiError(EkiFault.UNKNOWN, f"attribute {printable(unknown[0])[:64]!r} on <{child.tag}>")
    values: dict[str, object] = {}
    for attr in wire.attrs:
        text = child.attrib.get(attr.xml)
        if text is None or (text == "" and not attr.required):
            if attr.required:
                return EkiError(EkiFault.MALFORMED, f"<{child.tag}> lacks {attr.xml}")
            continue
        if attr.kind == "str":
            values[attr.field] = text
            continue
        if not _NUMBER.fullmatch(text):
            return EkiError(EkiFault.BAD_VALUE, f"{attr.xml}={printable(text)[:32]!r} is not a number")
        number = int(text)
        if attr.kind == "bin":
            try:
                values[attr.field] = Bin(number)
            except ValueError:
                return EkiError(EkiFault.BAD_VALUE, f"Bin={number} is not a bin")
        else:
            values[attr.field] = number
    try:
        message: EkiMessage = wire.cls(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return EkiError(EkiFault.BAD_VALUE, printable(f"{where}: {first['msg']}")[:200])
    return message
