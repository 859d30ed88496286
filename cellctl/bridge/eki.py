"""KUKA.EthernetKRL (EKI) messages between the bridge PC and the robot: XML documents over TCP.

PC -> robot (read by the KRL program; ``EkiCellctl.xml`` is the robot's channel config)::

    <Cell><Ready Cell="c1" Req="9f3a" Accepted="P1"/></Cell>     the fixture is free: answer Req
    <Sort><Part Seq="42" Bin="2" Id="A17-0042" Cell="c1" Boot="b7"/></Sort>
    <Cell><Beat/></Cell>

robot -> PC::

    <Robot><Part Req="9f3a" Id="P2" Profile="m8x40-hex"/></Robot>
    <Robot><Ack Seq="42" Res="0"/></Robot>
    <Robot><Beat/></Robot>

``Accepted`` (and the robot's ``Profile``) are optional: empty means none. The PC always sends
``Accepted``, empty when the cell took no part yet, because EKI stores every received value in
its own FIFO memory: an attribute that is sometimes absent would pair the ``Req`` of one Ready
with the ``Accepted`` of another in the KRL program.

EKI has no framing beyond XML well-formedness, so ``EkiStreamParser`` splits the TCP stream
into documents itself, with a bounded buffer and before any XML parser sees the bytes: no
``<!`` (DOCTYPE, entities, CDATA, comments), no processing instruction but one leading XML
declaration, one known root holding exactly one known element with known attributes, numbers
as plain decimals, UTF-8. After garbage it resynchronises at the next root tag.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Literal

from cellctl.bridge._eki_messages import (
    MAX_DOCUMENT_BYTES,
    ROOTS,
    EkiAck,
    EkiCellBeat,
    EkiError,
    EkiFault,
    EkiMessage,
    EkiPart,
    EkiReady,
    EkiRobotBeat,
    EkiSort,
    FromRobot,
    ToRobot,
    encode,
    message_of,
)
from cellctl.text import printable

# an optional XML declaration before the root; only UTF-8 (the parser is given the bytes as such)
_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*([\"'])1\.0\1"
    rb"([ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*([\"'])(?i:utf-8)\3)?"
    rb"([ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*([\"'])(yes|no)\5)?[ \t\r\n]*\?>"
)
_WS = frozenset(b" \t\r\n")
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:")
_NAME_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


class _State:
    IDLE = 0  # between documents: whitespace or '<'
    PROLOG = 1  # after the declaration, before the root
    LT = 2  # just read '<'
    NAME = 3  # a tag's name
    TAG = 4  # inside a tag, outside quotes
    QUOTE = 5  # inside an attribute value
    PI = 6  # inside '<?...'
    CONTENT = 7  # inside the root, between tags
    RESYNC = 8  # after an error: skipping to the next root tag


class EkiStreamParser:
    """Splits a TCP byte stream of concatenated XML documents into messages and errors.

    ``sender`` is whose documents it reads: "robot" (the PC's parser: ``<Robot>``) or "pc" (the
    simulated KRC's: ``<Cell>``, ``<Sort>``). ``feed`` never raises, and between calls at most
    ``max_document_bytes`` bytes are buffered: a longer document is refused as it grows.
    """

    def __init__(
        self, max_document_bytes: int = MAX_DOCUMENT_BYTES, *, sender: Literal["robot", "pc"] = "robot"
    ) -> None:
        if max_document_bytes < 64:
            raise ValueError("max_document_bytes must be at least 64")
        self._max = max_document_bytes
        self._roots = ROOTS[sender]
        self._markers = tuple(f"<{root}".encode() for root in self._roots)
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = 0  # where the current document starts in _buf
        self._state = _State.IDLE
        self._depth = 0
        self._closing = False  # the tag being read is an end tag
        self._name = bytearray()
        self._quote = 0
        self._slash = False  # the last byte in the tag was '/' (self-closing if '>' follows)
        self._declared = False
        self.skipped_bytes = 0  # discarded while resynchronising

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def max_document_bytes(self) -> int:
        return self._max

    def feed(self, data: bytes) -> list[EkiMessage | EkiError]:
        out: list[EkiMessage | EkiError] = []
        i = 0
        while i < len(data):
            # never take in more than fits one document: the buffer stays bounded whatever arrives
            room = max(1, self._max - len(self._buf))
            self._buf += data[i : i + room]
            i += room
            self._scan(out)
        return out

    # --- the splitter -------------------------------------------------------------------------

    def _scan(self, out: list[EkiMessage | EkiError]) -> None:
        while True:
            if self._state == _State.RESYNC and not self._resync():
                return
            if self._pos >= len(self._buf):
                return
            if self._state == _State.IDLE:
                self._start = self._pos
            elif self._pos - self._start + 1 > self._max:
                self._fail(out, EkiFault.OVERSIZED, f"document longer than {self._max} bytes")
                continue
            byte = self._buf[self._pos]
            problem = self._step(byte)
            if problem is not None:
                self._fail(out, *problem)
                continue
            self._pos += 1
            if self._state == _State.IDLE and self._depth == 0 and self._pos > self._start + 1:
                out.append(self._document(bytes(self._buf[self._start : self._pos])))
                del self._buf[: self._pos]
                self._pos = self._start = 0
                self._declared = False
            elif self._state == _State.IDLE:  # whitespace between documents: drop it
                del self._buf[: self._pos]
                self._pos = 0

    def _step(self, byte: int) -> tuple[EkiFault, str] | None:
        state = self._state
        if state in (_State.IDLE, _State.PROLOG):
            if byte in _WS:
                return None
            if byte != ord("<"):
                return EkiFault.MALFORMED, "text outside a document"
            self._state = _State.LT
        elif state == _State.CONTENT:
            if byte == ord("<"):
                self._state = _State.LT
        elif state == _State.LT:
            return self._after_lt(byte)
        elif state == _State.NAME:
            if byte in _NAME_BYTES:
                if len(self._name) >= 64:
                    return EkiFault.UNKNOWN, "element name too long"
                self._name.append(byte)
                return None
            problem = self._tag_named()
            if problem is not None:
                return problem
            self._state = _State.TAG
            return self._in_tag(byte)
        elif state == _State.TAG:
            return self._in_tag(byte)
        elif state == _State.QUOTE:
            if byte == ord("<"):
                return EkiFault.MALFORMED, "'<' in an attribute value (a truncated document?)"
            if byte == self._quote:
                self._state = _State.TAG
        elif state == _State.PI:
            if byte == ord("<"):
                return EkiFault.MALFORMED, "'<' in a processing instruction"
            if byte == ord(">") and self._buf[self._pos - 1] == ord("?"):
                if not _DECLARATION.fullmatch(self._buf, self._start, self._pos + 1):
                    return EkiFault.FORBIDDEN, "processing instruction (only <?xml version='1.0'?> is allowed)"
                self._declared = True
                self._state = _State.PROLOG
        return None

    def _after_lt(self, byte: int) -> tuple[EkiFault, str] | None:
        if byte == ord("!"):
            return EkiFault.FORBIDDEN, "'<!' (DOCTYPE, entity, CDATA or comment)"
        if byte == ord("?"):
            if self._depth or self._declared or self._pos != self._start + 1:
                return EkiFault.FORBIDDEN, "processing instruction"
            self._state = _State.PI
            return None
        self._closing = byte == ord("/")
        if not self._closing and byte not in _NAME_START:
            return EkiFault.MALFORMED, "'<' not followed by a tag name"
        self._name = bytearray() if self._closing else bytearray([byte])
        self._slash = False
        self._state = _State.NAME
        return None

    def _tag_named(self) -> tuple[EkiFault, str] | None:
        """The name of the tag being read is complete; check where it may appear."""
        name = self._name.decode("ascii")
        if self._closing:
            return (EkiFault.MALFORMED, "end tag outside a document") if self._depth == 0 or not name else None
        if self._depth == 0 and name not in self._roots:
            return EkiFault.UNKNOWN, f"root <{printable(name)}>"
        if self._depth > 0 and name in self._roots:
            return EkiFault.MALFORMED, f"<{name}> inside a document (the one before was truncated)"
        if self._depth > 1:
            return EkiFault.UNKNOWN, f"<{printable(name)}> nested too deep"
        return None

    def _in_tag(self, byte: int) -> tuple[EkiFault, str] | None:
        if byte == ord(">"):
            if self._closing:
                self._depth -= 1
            elif not self._slash:
                self._depth += 1
            self._state = _State.IDLE if self._depth == 0 else _State.CONTENT
            return None
        if byte == ord("<"):
            return EkiFault.MALFORMED, "'<' inside a tag (a truncated document?)"
        if self._closing and byte not in _WS:
            return EkiFault.MALFORMED, "an end tag with attributes"
        if byte in (ord('"'), ord("'")):
            self._quote = byte
            self._state = _State.QUOTE
        self._slash = byte == ord("/")
        return None

    def _fail(self, out: list[EkiMessage | EkiError], reason: EkiFault, detail: str) -> None:
        """Report the document begun at _start and look for the next root tag after its start."""
        out.append(EkiError(reason, detail))
        del self._buf[: self._start + 1]
        self.skipped_bytes += 1
        self._pos = self._start = 0
        self._depth = 0
        self._declared = False
        self._state = _State.RESYNC

    def _resync(self) -> bool:
        """Skip to the next root tag; True once the buffer starts with one."""
        while True:
            found = [(i, m) for m in self._markers if (i := self._buf.find(m)) >= 0]
            if not found:
                keep = max(len(m) for m in self._markers) - 1  # a marker split across two reads
                cut = max(0, len(self._buf) - keep)
                self.skipped_bytes += cut
                del self._buf[:cut]
                self._pos = len(self._buf)
                return False
            index, marker = min(found)
            self.skipped_bytes += index
            del self._buf[:index]
            if len(self._buf) == len(marker):  # the next byte tells <Robot> from <RobotX>
                self._pos = len(self._buf)
                return False
            follow = self._buf[len(marker)]
            if follow in _WS or follow in b"/>":
                self._pos = self._start = 0
                self._state = _State.IDLE
                return True
            del self._buf[:1]  # not a root tag: search on after it
            self.skipped_bytes += 1

    # --- one complete document ----------------------------------------------------------------

    def _document(self, raw: bytes) -> EkiMessage | EkiError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return EkiError(EkiFault.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
        try:
            # the splitter refused every '<!': no DTD, so no entity can expand (no billion laughs)
            root = ET.fromstring(raw)
        except ET.ParseError as exc:
            return EkiError(EkiFault.MALFORMED, printable(str(exc))[:200])
        return message_of(root, self._roots)


__all__ = [
    # messages
    "EkiAck",
    "EkiCellBeat",
    "EkiMessage",
    "EkiPart",
    "EkiReady",
    "EkiRobotBeat",
    "EkiSort",
    "FromRobot",
    "ToRobot",
    # codec
    "MAX_DOCUMENT_BYTES",
    "ROOTS",
    "EkiError",
    "EkiFault",
    "EkiStreamParser",
    "encode",
    "message_of",
]
