"""The EKI codec and stream parser: what the robot's XML channel accepts and refuses, fuzzed."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cellctl.bridge.eki import (
    MAX_DOCUMENT_BYTES,
    EkiAck,
    EkiCellBeat,
    EkiError,
    EkiFault,
    EkiMessage,
    EkiPart,
    EkiReady,
    EkiRobotBeat,
    EkiSort,
    EkiStreamParser,
    encode,
)
from cellctl.outcome import Bin
from cellctl.sim.krc import garbage_documents
from cellctl.text import BIDI_CONTROLS

FUZZ = settings(deadline=None, max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])

# names: any character SafeName allows, XML's special ones often
names = st.text(
    alphabet=st.one_of(
        st.sampled_from("&<>\"'=/ ?!-"),
        st.characters(
            blacklist_categories=("Cc", "Cs"),
            blacklist_characters="".join(chr(c) for c in BIDI_CONTROLS) + "\ufffe\uffff",
        ),
    ),
    min_size=1,
    max_size=64,
)
tokens = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
seqs = st.integers(min_value=1, max_value=2**63 - 1)

to_robot = st.one_of(
    st.builds(EkiReady, cell_id=names, request_id=tokens, accepted=st.none() | names),
    st.builds(EkiSort, seq=seqs, bin=st.sampled_from(Bin), part_id=names, cell_id=names, boot_id=tokens),
    st.just(EkiCellBeat()),
)
from_robot = st.one_of(
    st.builds(EkiPart, request_id=tokens, part_id=names, profile=st.none() | names),
    st.builds(EkiAck, seq=seqs, res=st.integers(min_value=0, max_value=65_535)),
    st.just(EkiRobotBeat()),
)
separators = st.sampled_from([b"", b" ", b"\r\n", b"\n\t  ", b'<?xml version="1.0" encoding="UTF-8"?>\n'])


def feed_in_chunks(parser: EkiStreamParser, data: bytes, cuts: list[int]) -> list[EkiMessage | EkiError]:
    """Feed ``data`` split at ``cuts``; the buffer bound holds after every call."""
    out: list[EkiMessage | EkiError] = []
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(edges):
        out += parser.feed(data[start:end])
        assert parser.buffered <= parser.max_document_bytes
    return out


def messages(items: list[EkiMessage | EkiError]) -> list[EkiMessage]:
    return [i for i in items if not isinstance(i, EkiError)]


def errors(items: list[EkiMessage | EkiError]) -> list[EkiError]:
    return [i for i in items if isinstance(i, EkiError)]


# --- the codec -----------------------------------------------------------------------------------


def test_documents_look_like_the_design() -> None:
    assert encode(EkiReady(cell_id="c1", request_id="r1", accepted="P1")) == (
        b'<Cell><Ready Cell="c1" Req="r1" Accepted="P1"/></Cell>'
    )
    assert encode(EkiSort(seq=42, bin=Bin.REJECT, part_id="A17-0042", cell_id="c", boot_id="b")) == (
        b'<Sort><Part Seq="42" Bin="2" Id="A17-0042" Cell="c" Boot="b"/></Sort>'
    )
    assert encode(EkiCellBeat()) == b"<Cell><Beat/></Cell>"
    assert encode(EkiPart(request_id="r", part_id="P2")) == b'<Robot><Part Req="r" Id="P2"/></Robot>'
    assert encode(EkiAck(seq=42, res=0)) == b'<Robot><Ack Seq="42" Res="0"/></Robot>'


def test_accepted_is_always_sent_so_the_robots_memories_stay_aligned() -> None:
    assert encode(EkiReady(cell_id="c1", request_id="r1")) == b'<Cell><Ready Cell="c1" Req="r1" Accepted=""/></Cell>'
    parser = EkiStreamParser(sender="pc")
    assert parser.feed(b'<Cell><Ready Cell="c1" Req="r1" Accepted=""/></Cell>') == [
        EkiReady(cell_id="c1", request_id="r1", accepted=None)
    ]


@pytest.mark.parametrize(
    "build",
    [
        lambda: EkiReady(cell_id="", request_id="r"),
        lambda: EkiReady(cell_id="c\n1", request_id="r"),
        lambda: EkiReady(cell_id="c\u202e1", request_id="r"),
        lambda: EkiReady(cell_id="c\uffff", request_id="r"),
        lambda: EkiReady(cell_id="c", request_id="r r"),
        lambda: EkiPart(request_id="r", part_id="x" * 65),
        lambda: EkiSort(seq=0, bin=Bin.GOOD, part_id="p", cell_id="c", boot_id="b"),
        lambda: EkiAck(seq=1, res=65_536),
    ],
)
def test_messages_out_of_the_protocols_limits_cannot_be_built(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build()


@FUZZ
@given(st.lists(to_robot, max_size=8), st.lists(separators, min_size=8, max_size=8), st.lists(st.integers(0, 10_000)))
def test_documents_to_the_robot_survive_any_chunking(
    sent: list[EkiMessage], seps: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(sep + encode(m) for sep, m in zip(seps, sent, strict=False))
    out = feed_in_chunks(EkiStreamParser(sender="pc"), data, cuts)
    assert out == sent


@FUZZ
@given(st.lists(from_robot, max_size=8), st.lists(separators, min_size=8, max_size=8), st.lists(st.integers(0, 10_000)))
def test_documents_from_the_robot_survive_any_chunking(
    sent: list[EkiMessage], seps: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(sep + encode(m) for sep, m in zip(seps, sent, strict=False))
    out = feed_in_chunks(EkiStreamParser(), data, cuts)
    assert out == sent


# --- arbitrary input -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10_000), max_size=20), st.integers(64, 600))
def test_arbitrary_bytes_never_raise_and_never_overfill_the_buffer(data: bytes, cuts: list[int], limit: int) -> None:
    parser = EkiStreamParser(limit)
    for item in feed_in_chunks(parser, data, cuts):
        assert isinstance(item, EkiError | EkiPart | EkiAck | EkiRobotBeat)


# bytes that look like the robot's documents, so the fuzzer gets past the first '<'
xmlish = st.lists(
    st.sampled_from(
        [b"<Robot>", b"</Robot>", b"<Part", b"<Ack", b"<Beat/>", b' Seq="', b' Res="0"', b' Req="r"', b' Id="', b"/>"]
        + [b'"', b"'", b">", b"<", b"<!", b"<?", b"?>", b"&amp;", b"&x;", b"&#0;", b"\xff", b" ", b"<Cell>", b"9"]
    ),
    max_size=80,
).map(b"".join)


@FUZZ
@given(xmlish, st.lists(st.integers(0, 10_000), max_size=20), st.integers(64, 300))
def test_xml_like_noise_never_raises_and_never_overfills_the_buffer(data: bytes, cuts: list[int], limit: int) -> None:
    parser = EkiStreamParser(limit)
    feed_in_chunks(parser, data, cuts)


@FUZZ
@given(st.text(max_size=100), st.text(max_size=100), st.sampled_from(["Part", "Ack", "Beat"]))
def test_arbitrary_attribute_values_give_a_message_or_a_refusal(one: str, two: str, element: str) -> None:
    raw = f'<Robot><{element} Req="{one}" Id="{two}" Seq="{one}" Res="{two}"/></Robot>'.encode(errors="surrogatepass")
    items = EkiStreamParser().feed(raw)
    assert len(items) <= 2 and all(isinstance(i, EkiError | EkiPart | EkiAck | EkiRobotBeat) for i in items)


# --- garbage between documents -------------------------------------------------------------------

# small, so that oversized garbage is cheap; above the longest valid document (two 64-character
# names of '"', each escaped to 6 bytes, in a Sort: under 1 KB)
SMALL_LIMIT = 1024

# junk without '<' or '>': it can neither start nor finish a document
junk = st.binary(max_size=40).map(lambda b: b.replace(b"<", b"").replace(b">", b""))


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    """A truncated document, a refused one, and/or junk: never a valid document."""
    kind = draw(st.sampled_from(["truncated", "refused", "junk"]))
    if kind == "truncated":
        document = encode(draw(from_robot))
        head = draw(st.sampled_from([b"", b'<?xml version="1.0"?>']))
        cut = draw(st.integers(1, len(document) - 1))
        return head + document[:cut] + draw(junk)
    if kind == "refused":
        return draw(st.sampled_from(garbage_documents(SMALL_LIMIT))) + draw(junk)
    return draw(junk)


@FUZZ
@given(
    st.lists(st.tuples(garbage(), from_robot, separators), max_size=6),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_garbage_between_documents_loses_only_the_garbage(
    pieces: list[tuple[bytes, EkiMessage, bytes]], cuts: list[int]
) -> None:
    data = b"".join(bad + sep + encode(message) for bad, message, sep in pieces)
    out = feed_in_chunks(EkiStreamParser(SMALL_LIMIT), data, cuts)
    assert messages(out) == [message for _, message, _ in pieces]


def test_each_garbage_document_is_one_error_and_the_next_document_survives() -> None:
    parser = EkiStreamParser()
    for document in garbage_documents():
        out = parser.feed(document + b"<Robot><Beat/></Robot>")
        assert len(errors(out)) == 1, (document[:40], out)
        assert messages(out) == [EkiRobotBeat()]


# --- what is refused, and why --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'<!DOCTYPE lol [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>', EkiFault.FORBIDDEN),
        (b"<Robot><![CDATA[<Beat/>]]></Robot>", EkiFault.FORBIDDEN),
        (b"<Robot><!-- hi --><Beat/></Robot>", EkiFault.FORBIDDEN),
        (b"<?xml-stylesheet href='x'?>", EkiFault.FORBIDDEN),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?>', EkiFault.FORBIDDEN),
        (b"<Robot><?pi x?><Beat/></Robot>", EkiFault.FORBIDDEN),
        (b"<Cell><Beat/></Cell>", EkiFault.UNKNOWN),  # a PC message never comes from the robot
        (b"<Robot><Sort/></Robot>", EkiFault.UNKNOWN),
        (b'<Robot><Ack Seq="1" Res="0" Bin="2"/></Robot>', EkiFault.UNKNOWN),
        (b'<Robot x="1"><Beat/></Robot>', EkiFault.UNKNOWN),
        (b"<Robot><Beat><Beat/></Beat></Robot>", EkiFault.UNKNOWN),
        (b'<r:Robot xmlns:r="urn:x"><Beat/></r:Robot>', EkiFault.UNKNOWN),
        (b"<Robot><Beat/><Beat/></Robot>", EkiFault.MALFORMED),
        (b"<Robot/>", EkiFault.MALFORMED),
        (b"<Robot>go<Beat/></Robot>", EkiFault.MALFORMED),
        (b'<Robot><Ack Seq="1"/></Robot>', EkiFault.MALFORMED),
        (b"<Robot><Beat/></Rob0t>", EkiFault.MALFORMED),
        (b"<Robot><Beat/>&nbsp;</Robot>", EkiFault.MALFORMED),
        (b'<Robot><Part Req="r" Id="P&#1;"/></Robot>', EkiFault.MALFORMED),
        (b'<Robot><Part Req="r" Id="\xc3\x28"/></Robot>', EkiFault.NOT_UTF8),
        (b'<Robot><Ack Seq="+1" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq="1e3" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq="0x10" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq=" 42" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq="0" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq="9223372036854775808" Res="0"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Ack Seq="1" Res="-1"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Part Req="r r" Id="P"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Part Req="r" Id="P&#x202E;"/></Robot>', EkiFault.BAD_VALUE),
        (b'<Robot><Part Req="r" Id=""/></Robot>', EkiFault.BAD_VALUE),
    ],
)
def test_refused_documents_name_why_and_the_next_one_is_read(raw: bytes, reason: EkiFault) -> None:
    out = EkiStreamParser().feed(raw + b'\n<Robot><Ack Seq="7" Res="0"/></Robot>')
    assert [e.reason for e in errors(out)] == [reason], out
    assert messages(out) == [EkiAck(seq=7, res=0)]


def test_entities_are_never_expanded() -> None:
    # the DTD is refused; the root after it is then read without it: its entity is undefined
    raw = b'<!DOCTYPE lol [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><Robot><Part Req="r" Id="&b;"/></Robot>'
    out = EkiStreamParser().feed(raw)
    assert [e.reason for e in errors(out)] == [EkiFault.FORBIDDEN, EkiFault.MALFORMED]
    assert messages(out) == []


def test_sort_bins_are_checked_on_the_robot_side_parser() -> None:
    out = EkiStreamParser(sender="pc").feed(b'<Sort><Part Seq="1" Bin="4" Id="p" Cell="c" Boot="b"/></Sort>')
    assert [e.reason for e in errors(out)] == [EkiFault.BAD_VALUE]


def test_an_oversized_document_is_refused_as_it_grows_and_the_buffer_stays_bounded() -> None:
    parser = EkiStreamParser()
    out = parser.feed(b'<Robot><Part Req="r" Id="')
    for _ in range(1000):  # 1 MB in 1 KB reads
        out += parser.feed(b"X" * 1024)
        assert parser.buffered <= MAX_DOCUMENT_BYTES
    out += parser.feed(b'"/></Robot><Robot><Beat/></Robot>')
    assert [e.reason for e in errors(out)] == [EkiFault.OVERSIZED]
    assert messages(out) == [EkiRobotBeat()]
    assert parser.buffered == 0


def test_a_document_at_the_limit_is_read() -> None:
    head, tail = b'<Robot><Part Req="r" Id="P"/>', b"</Robot>"
    document = head + b" " * (MAX_DOCUMENT_BYTES - len(head) - len(tail)) + tail
    assert EkiStreamParser().feed(document) == [EkiPart(request_id="r", part_id="P")]
    assert [e.reason for e in errors(EkiStreamParser().feed(document[:-1] + b" >"))] == [EkiFault.OVERSIZED]


def test_a_root_tag_split_across_reads_is_found_when_resynchronising() -> None:
    parser = EkiStreamParser()
    out = parser.feed(b"junk junk <Rob")
    out += parser.feed(b"otX/><Rob")
    out += parser.feed(b"ot><Beat/></Robot>")
    assert messages(out) == [EkiRobotBeat()] and len(errors(out)) == 1
    assert parser.skipped_bytes == len(b"junk junk <RobotX/>")


def test_markup_that_looks_alike_is_not_taken_for_a_document() -> None:
    assert errors(EkiStreamParser().feed(b"<RobotArm><Beat/></RobotArm>"))[0].reason == EkiFault.UNKNOWN
    assert EkiStreamParser().feed(b"<Robot\n><Beat\t/>\r\n</Robot >") == [EkiRobotBeat()]
    assert EkiStreamParser().feed(b"<Robot><Ack Res='0' Seq='5'></Ack></Robot>") == [EkiAck(seq=5, res=0)]
    assert EkiStreamParser().feed(b'<Robot><Part Req="r" Id="a&gt;b&amp;&quot;"/></Robot>') == [
        EkiPart(request_id="r", part_id='a>b&"')
    ]
