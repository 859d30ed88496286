"""The bridge's ZeroMQ server over real sockets with real CURVE: the test plays the cells (DEALERs,
in-process and as separate rogue processes) and the robot (a recording RobotSide)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
import zmq.auth
from structlog.testing import capture_logs

from cellctl.bridge.auth import BridgeAuth
from cellctl.bridge.dedupe import SqliteDedupe
from cellctl.bridge.robot import Placed, SortResult
from cellctl.bridge.server import BridgeServer
from cellctl.link.protocol import (
    MAX_FRAME_BYTES,
    Ack,
    CellBound,
    Heartbeat,
    Message,
    Part,
    Ready,
    Refusal,
    Refused,
    Rejected,
    Verdict,
    decode_cell_bound,
    encode,
)
from cellctl.outcome import BIN_OF, Bin

WAIT_S = 30.0  # generous: conditions are awaited, never raced against a budget


async def wait_for(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class FakeRobot:
    """The other end of RobotSide: records every call; offers can be held back per request."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, str]] = []  # (cell_id, request_id)
        self.sorts: list[tuple[str, int]] = []  # (cell_id, seq)
        self.refusals: list[tuple[str, Refusal]] = []
        self.hold: dict[str, asyncio.Event] = {}  # request_id -> released when set
        self.sort_fails = 0  # the next n sorts raise
        self.sort_gate: asyncio.Event | None = None  # sorts wait for it when set
        self.sorts_started = 0
        self.placed = 0

    async def offer(self, cell_id: str, ready: Ready) -> Placed | None:
        self.offers.append((cell_id, ready.request_id))
        gate = self.hold.get(ready.request_id)
        if gate is not None:
            await gate.wait()
        self.placed += 1
        return Placed(part_id=f"P{self.placed}", profile="m8x40-hex")

    async def sort(self, cell_id: str, verdict: Verdict) -> SortResult:
        self.sorts_started += 1
        if self.sort_gate is not None:
            await self.sort_gate.wait()
        if self.sort_fails:
            self.sort_fails -= 1
            raise ConnectionError("krc gone")
        self.sorts.append((cell_id, verdict.seq))
        return SortResult(res=0)

    def refused(self, cell_id: str, refused: Refused) -> None:
        self.refusals.append((cell_id, refused.reason))

    def health(self) -> dict[str, object]:
        return {"sorts": len(self.sorts)}


class Keys:
    """Certificates as an installation has them: the bridge's, an allow-list dir, cells' own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bridge_public, self.bridge_secret_file = self._make("bridge")
        self.allow = root / "allow"
        self.allow.mkdir()
        self.cells = {cell: self._make(cell) for cell in ("cell-a", "cell-b")}
        for cell in self.cells:
            shutil.copy(root / cell / f"{cell}.key", self.allow / f"{cell}.key")
        self.rogue = self._make("rogue")  # a valid key pair nobody listed

    def _make(self, name: str) -> tuple[bytes, Path]:
        (self.root / name).mkdir(parents=True)
        public_file, secret_file = zmq.auth.create_certificates(self.root / name, name)
        return zmq.auth.load_certificate(public_file)[0], Path(secret_file)

    def secret(self, name: str) -> tuple[bytes, bytes]:
        public, secret = zmq.auth.load_certificate(self.root / name / f"{name}.key_secret")
        assert secret is not None
        return public, secret


class TestCell:
    """A cell's DEALER: a CURVE client, with the socket identity ``identity`` (None: none set,
    as the link connects with CURVE; libzmq's ROUTER then assigns a routing id)."""

    __test__ = False

    def __init__(
        self, ctx: zmq.asyncio.Context, endpoint: str, identity: str | None, curve: tuple[bytes, bytes, bytes] | None
    ):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity.encode())
        if curve is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.connect(endpoint)
        self.heartbeats: list[Heartbeat] = []

    async def send(self, message: Message) -> None:
        await self.sock.send(encode(message))

    async def recv(self, timeout_s: float = WAIT_S) -> CellBound | Rejected:
        """The next message that is not a heartbeat (heartbeats are kept in self.heartbeats)."""
        while True:
            frames = await asyncio.wait_for(self.sock.recv_multipart(), timeout_s)
            message = decode_cell_bound(frames)
            if isinstance(message, Heartbeat):
                self.heartbeats.append(message)
                continue
            return message

    async def heartbeat(self, timeout_s: float = WAIT_S) -> Heartbeat:
        while True:
            frames = await asyncio.wait_for(self.sock.recv_multipart(), timeout_s)
            message = decode_cell_bound(frames)
            if isinstance(message, Heartbeat):
                return message

    def close(self) -> None:
        self.sock.close(linger=0)


def ready(cell: str, request_id: str, accepted: str | None = None) -> Ready:
    return Ready(cell_id=cell, boot_id="cellboot1", request_id=request_id, accepted=accepted)


def verdict(cell: str, seq: int, bin_: Bin = Bin.REJECT) -> Verdict:
    outcome = {b: o for o, b in BIN_OF.items()}[bin_]  # the bridge refuses a bin not its verdict's
    return Verdict(
        cell_id=cell,
        boot_id="cellboot1",
        seq=seq,
        request_id="r1",
        part_id=f"P{seq}",
        profile="m8x40-hex",
        verdict=outcome,
        bin=bin_,
        reason="defect in head@90",
        scores={"head@90": 0.93},
        max_score=0.93,
        latency_ms=12.5,
    )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path / 'bridge.sock'}"


@pytest.fixture
def robot() -> FakeRobot:
    return FakeRobot()


@pytest.fixture
async def server(keys: Keys, endpoint: str, robot: FakeRobot) -> AsyncIterator[BridgeServer]:
    bridge = BridgeServer(endpoint, robot, auth=BridgeAuth(keys.bridge_secret_file, keys.allow), heartbeat_s=0.2)
    await bridge.start()
    yield bridge
    await bridge.close()


@pytest.fixture
async def cells(keys: Keys, endpoint: str) -> AsyncIterator[Callable[..., TestCell]]:
    """cells(name, key_of=name, curve=True, identity=None): a connected test cell. As the link
    does, it sets no socket identity with CURVE and ``name`` without; ``identity`` forces one."""
    ctx = zmq.asyncio.Context()
    made: list[TestCell] = []

    def make(name: str, key_of: str | None = None, curve: bool = True, identity: str | None = None) -> TestCell:
        public, secret = keys.secret(key_of or name)
        if identity is None and not curve:
            identity = name
        cell = TestCell(ctx, endpoint, identity, (public, secret, keys.bridge_public) if curve else None)
        made.append(cell)
        return cell

    yield make
    for cell in made:
        cell.close()
    ctx.term()


async def test_a_listed_cell_gets_a_part_for_its_ready_and_an_ack_for_its_verdict(server, cells, robot):
    cell = cells("cell-a")
    await cell.send(ready("cell-a", "req-1"))
    part = await cell.recv()
    assert isinstance(part, Part)
    assert (part.request_id, part.part_id, part.profile) == ("req-1", "P1", "m8x40-hex")
    assert robot.offers == [("cell-a", "req-1")]

    await cell.send(verdict("cell-a", 7, Bin.REJECT))
    ack = await cell.recv()
    assert isinstance(ack, Ack)
    assert (ack.cell_id, ack.boot_id, ack.seq, ack.bin, ack.res) == ("cell-a", "cellboot1", 7, Bin.REJECT, 0)
    assert robot.sorts == [("cell-a", 7)]
    health = server.health()
    assert health["acks_sent"] == 1 and health["parts_sent"] == 1
    assert health["cells"]["cell-a"]["up"] is True  # type: ignore[index]


async def test_the_bridge_heartbeats_a_cell_with_its_boot_id_and_notices_it_going_silent(keys, endpoint, robot, cells):
    bridge = BridgeServer(
        endpoint, robot, auth=BridgeAuth(keys.bridge_secret_file, keys.allow), heartbeat_s=0.05, missed_beats=2
    )
    await bridge.start()
    try:
        cell = cells("cell-a")
        await cell.send(Heartbeat(sender="cell-a", boot_id="cellboot1"))
        beat = await cell.heartbeat()
        assert beat.boot_id == bridge.boot_id and beat.sender == "bridge"
        await wait_for(lambda: bridge.health()["cells"]["cell-a"]["up"] is False, "cell-a down")  # type: ignore[index]
        await cell.send(Heartbeat(sender="cell-a", boot_id="cellboot1"))
        await wait_for(lambda: bridge.health()["cells"]["cell-a"]["up"] is True, "cell-a up again")  # type: ignore[index]
    finally:
        await bridge.close()


async def test_a_resent_verdict_is_acknowledged_again_without_a_second_sort(server, cells, robot):
    cell = cells("cell-a")
    for _ in range(3):
        await cell.send(verdict("cell-a", 42))
        ack = await cell.recv()
        assert isinstance(ack, Ack) and ack.seq == 42 and ack.res == 0
    assert robot.sorts == [("cell-a", 42)]
    assert server.health()["duplicates"] == 2


async def test_a_verdict_resent_while_it_is_being_sorted_is_ignored(server, cells, robot):
    robot.sort_gate = asyncio.Event()
    cell = cells("cell-a")
    await cell.send(verdict("cell-a", 8))
    await wait_for(lambda: robot.sorts_started == 1, "the sort under way")
    await cell.send(verdict("cell-a", 8))
    await wait_for(lambda: server.health()["in_progress_ignored"] == 1, "the resend ignored")
    robot.sort_gate.set()
    ack = await cell.recv()
    assert isinstance(ack, Ack) and ack.seq == 8
    await cell.send(verdict("cell-a", 9))  # the next ack proves no second ack of 8 was queued before it
    ack = await cell.recv()
    assert isinstance(ack, Ack) and ack.seq == 9
    assert robot.sorts == [("cell-a", 8), ("cell-a", 9)] and server.health()["acks_sent"] == 2


async def test_a_failed_sort_is_not_acknowledged_and_its_resend_sorts(server, cells, robot):
    robot.sort_fails = 1
    cell = cells("cell-a")
    await cell.send(verdict("cell-a", 5))
    await wait_for(lambda: server.health()["sort_errors"] == 1, "the failed sort")
    await cell.send(verdict("cell-a", 5))
    ack = await cell.recv()
    assert isinstance(ack, Ack) and ack.seq == 5
    assert robot.sorts == [("cell-a", 5)]
    assert server.health()["acks_sent"] == 1  # the failed one was not acknowledged


async def test_a_listed_cell_naming_another_cell_is_refused_wrong_cell(server, cells, robot):
    cell = cells("cell-a")
    await cell.send(ready("cell-b", "req-x"))
    refused = await cell.recv()
    assert isinstance(refused, Refused)
    assert refused.reason == Refusal.WRONG_CELL and refused.request_id == "req-x"
    await cell.send(verdict("cell-b", 3))
    refused = await cell.recv()
    assert isinstance(refused, Refused) and refused.reason == Refusal.WRONG_CELL
    # cell-a's key under cell-b's socket identity is still cell-a (the key is the cell): refused
    spoof = cells("cell-a", identity="cell-b")
    await spoof.send(verdict("cell-b", 4))
    refused = await spoof.recv()
    assert isinstance(refused, Refused) and refused.reason == Refusal.WRONG_CELL
    assert robot.offers == [] and robot.sorts == []
    assert server.health()["refused_sent"] == {"wrong_cell": 3}
    assert "cell-b" not in server.health()["cells"]  # type: ignore[operator]


def _monitored(cell: TestCell) -> zmq.asyncio.Socket:
    return cell.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)


async def _handshake(monitor: zmq.asyncio.Socket) -> None:
    await asyncio.wait_for(monitor.recv_multipart(), WAIT_S)
    monitor.close(linger=0)


def _drain(cell: TestCell) -> list[CellBound | Rejected]:
    """What ``cell`` has received so far, without waiting."""
    got: list[CellBound | Rejected] = []
    while cell.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
        got.append(decode_cell_bound(cell.sock.recv_multipart(zmq.NOBLOCK).result()))
    return got


@pytest.mark.parametrize("real_identity", [None, "cell-a"], ids=["as-the-link-connects", "identity-set"])
async def test_a_listed_key_claiming_another_cells_identity_gets_nothing_of_that_cell(
    server, cells, robot, real_identity
):
    real = cells("cell-a", identity=real_identity)
    await real.send(Heartbeat(sender="cell-a", boot_id="cellboot1"))
    await real.heartbeat()  # cell-a is up: the bridge has its route
    hijacker = cells("cell-b", identity="cell-a")  # cell-b's key, cell-a's id as socket identity
    monitor = _monitored(hijacker)
    await _handshake(monitor)  # its key is listed: the connection completes
    await hijacker.send(Heartbeat(sender="cell-b", boot_id="hijack1"))
    if real_identity is None:  # the identity was free: it is cell-b, which the bridge beats as such
        assert (await hijacker.heartbeat()).sender == "bridge"
    # cell-a keeps being served, through the hijacker's whole life
    for n in range(2):
        await real.send(ready("cell-a", f"req-{n}"))
        part = await real.recv()
        assert isinstance(part, Part) and part.request_id == f"req-{n}"
        await real.send(verdict("cell-a", 10 + n))
        ack = await real.recv()
        assert isinstance(ack, Ack) and (ack.cell_id, ack.seq) == ("cell-a", 10 + n)
        beats = len(real.heartbeats)
        while len(real.heartbeats) < beats + 2:  # two heartbeat rounds of the bridge to every cell
            real.heartbeats.append(await real.heartbeat())
    for message in _drain(hijacker):  # nothing of cell-a: at most the bridge's beats to cell-b
        assert isinstance(message, Heartbeat), message
    assert robot.offers == [("cell-a", "req-0"), ("cell-a", "req-1")]
    assert robot.sorts == [("cell-a", 10), ("cell-a", 11)]
    assert server.health()["cell_moves"] == 0 and server.health()["refused_sent"] == {}


async def test_the_route_to_a_cell_follows_its_latest_valid_message(server, cells, robot):
    """A restarted cell (a new connection with the same key), or two processes sharing one key:
    the bridge answers on the connection that last sent a valid message of that cell."""
    first = cells("cell-a")
    await first.send(ready("cell-a", "req-1"))
    assert isinstance(await first.recv(), Part)
    second = cells("cell-a")
    with capture_logs() as logs:
        await second.sock.send(b"not json")  # invalid: refused to its sender, the route stays
        assert isinstance(await second.recv(), Refused)
        await first.send(verdict("cell-a", 1))
        assert isinstance(await first.recv(), Ack)
        await second.send(verdict("cell-a", 2))  # valid: the route moves
        ack = await second.recv()
        assert isinstance(ack, Ack) and ack.seq == 2
    moved = [e for e in logs if e["event"] == "bridge.cell_moved"]
    assert [(e["cell"], e["log_level"]) for e in moved] == [("cell-a", "info")]
    assert server.health()["cell_moves"] == 1
    assert all(isinstance(m, Heartbeat) for m in _drain(first))  # the ack of seq 2 went to second only


async def test_an_answer_to_a_superseded_ready_is_not_sent(server, cells, robot):
    robot.hold["req-1"] = asyncio.Event()
    cell = cells("cell-a")
    await cell.send(ready("cell-a", "req-1"))
    await wait_for(lambda: robot.offers == [("cell-a", "req-1")], "the first offer")
    await cell.send(ready("cell-a", "req-2"))  # queued behind req-1 ...
    await cell.send(ready("cell-a", "req-3"))  # ... and replaced by req-3 before it is offered
    await wait_for(lambda: server.health()["readies_skipped"] == 1, "req-2 skipped")
    robot.hold["req-1"].set()
    part = await cell.recv()
    assert isinstance(part, Part) and part.request_id == "req-3"
    assert robot.offers == [("cell-a", "req-1"), ("cell-a", "req-3")]
    assert server.health()["superseded"] == 1 and server.health()["parts_sent"] == 1


async def test_malformed_oversized_and_multipart_input_is_refused_and_never_reaches_the_robot(server, cells, robot):
    cell = cells("cell-a")
    cases = [
        ([b"not json"], Refusal.MALFORMED),
        ([b"x" * (MAX_FRAME_BYTES + 1)], Refusal.OVERSIZED),
        ([encode(ready("cell-a", "r1")), b"second frame"], Refusal.EXTRA_FRAMES),
        ([encode(Part(request_id="r1", part_id="P1"))], Refusal.WRONG_DIRECTION),
        ([b'{"v": 1, "type": "ready", "cell_id": "cell-a", "boot_id": "b", "request_id": "r"}'], Refusal.WRONG_VERSION),
    ]
    for frames, reason in cases:
        await cell.sock.send_multipart(frames)
        refused = await cell.recv()
        assert isinstance(refused, Refused) and refused.reason == reason, (frames[0][:40], refused)
    assert robot.offers == [] and robot.sorts == []
    assert sum(server.health()["refused_sent"].values()) == len(cases)  # type: ignore[attr-defined]


async def test_a_refusal_from_a_cell_goes_to_the_robot_and_is_counted(server, cells, robot):
    cell = cells("cell-a")
    await cell.send(Refused(reason=Refusal.STALE_REQUEST, request_id="old", part_id="P9"))
    await wait_for(lambda: robot.refusals, "the robot told")
    assert robot.refusals == [("cell-a", Refusal.STALE_REQUEST)]
    assert server.health()["refused_by_cells"] == {"stale_request": 1}


async def test_an_unlisted_key_or_no_curve_gets_nothing_through(server, cells, robot):
    rogue = cells("cell-a", key_of="rogue")
    plain = cells("cell-a", curve=False)
    for sock in (rogue, plain):
        await sock.send(ready("cell-a", "forged"))
        await sock.send(verdict("cell-a", 99, Bin.GOOD))
    await wait_for(lambda: server.health()["auth_denied"], "the unlisted key denied")

    # libzmq reports a peer without CURVE (a mechanism mismatch) as a handshake failure, without
    # detail or as a protocol error depending on which side notices first
    def plain_failed() -> int:
        failed = server.health()["handshake_failed"]
        return int(failed.get("no_detail", 0) + failed.get("protocol", 0))  # type: ignore[attr-defined]

    await wait_for(plain_failed, "the plain peer failed")
    # a listed cell's full round trip after both: the robot saw only the listed cell
    good = cells("cell-a")
    await good.send(ready("cell-a", "real"))
    assert isinstance(await good.recv(), Part)
    assert robot.offers == [("cell-a", "real")] and robot.sorts == []


ROGUE = textwrap.dedent(
    """
    import sys, time, zmq
    endpoint, mode = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, b"cell-a")
    if mode == "wrong-key":
        s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
        s.curve_serverkey = sys.argv[3].encode()
    s.connect(endpoint)
    for seq in range(1, 6):
        try:
            s.send(sys.argv[4].encode().replace(b"SEQ", str(seq).encode()), zmq.NOBLOCK)
        except zmq.Again:  # never connected: nothing to send to
            pass
        time.sleep(0.05)
    got = s.poll(500)
    print("got" if got else "nothing", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["no-keys", "wrong-key"])
async def test_a_rogue_process_cannot_inject_verdicts(server, cells, robot, keys, endpoint, mode):
    forged = encode(verdict("cell-a", 1, Bin.GOOD)).replace(b'"seq":1', b'"seq":SEQ')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ROGUE,
        endpoint,
        mode,
        keys.bridge_public.decode(),
        forged.decode(),
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0
    assert out.strip() == b"nothing"  # no part, no ack, not even a refusal
    counter = "auth_denied" if mode == "wrong-key" else "handshake_failed"
    await wait_for(lambda: server.health()[counter], f"{counter} counted")
    assert robot.sorts == [] and robot.offers == []
    good = cells("cell-a")
    await good.send(verdict("cell-a", 1))
    ack = await good.recv()
    assert isinstance(ack, Ack) and ack.bin == Bin.REJECT
    assert robot.sorts == [("cell-a", 1)]


async def test_a_restart_changes_the_boot_id_and_keeps_the_sqlite_dedupe(keys, endpoint, robot, cells, tmp_path):
    dedupe = SqliteDedupe(tmp_path / "dedupe.db")
    bridge = BridgeServer(
        endpoint, robot, auth=BridgeAuth(keys.bridge_secret_file, keys.allow), heartbeat_s=0.1, dedupe=dedupe
    )
    await bridge.start()
    first_boot = bridge.boot_id
    cell = cells("cell-a")
    try:
        await cell.send(verdict("cell-a", 11))
        assert isinstance(await cell.recv(), Ack)
        await bridge.close()
        await bridge.start()
        assert bridge.boot_id != first_boot
        # the cell reconnects on its own; its next message makes the bridge beat with the new boot id
        await cell.send(Heartbeat(sender="cell-a", boot_id="cellboot1"))
        while (await cell.heartbeat()).boot_id != bridge.boot_id:
            pass
        await cell.send(verdict("cell-a", 11))
        ack = await cell.recv()
        assert isinstance(ack, Ack) and ack.seq == 11
        assert robot.sorts == [("cell-a", 11)]
        assert bridge.health()["duplicates"] == 1
    finally:
        await bridge.close()
    assert bridge.health()["running"] is False


async def test_without_security_the_identity_is_the_cell_and_a_warning_is_logged(endpoint, robot, cells):
    bridge = BridgeServer(endpoint, robot, auth=None, heartbeat_s=0.2)
    with capture_logs() as logs:
        await bridge.start()
    try:
        assert any(e["event"] == "bridge.security_none" and e["log_level"] == "warning" for e in logs)
        cell = cells("cell-b", curve=False)
        await cell.send(ready("cell-b", "req-1"))
        part = await cell.recv()
        assert isinstance(part, Part) and part.request_id == "req-1"
        assert robot.offers == [("cell-b", "req-1")]
        await cell.send(ready("cell-a", "req-2"))  # names another cell than its identity
        refused = await cell.recv()
        assert isinstance(refused, Refused) and refused.reason == Refusal.WRONG_CELL
    finally:
        await bridge.close()


async def test_a_taken_endpoint_fails_the_start_with_a_clear_error(keys, robot):
    from cellctl.bridge.server import BridgeError

    ctx = zmq.Context()  # tcp: a second bind is refused (an ipc bind would take the path over)
    holder = ctx.socket(zmq.ROUTER)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        other = BridgeServer(f"tcp://127.0.0.1:{port}", robot, auth=BridgeAuth(keys.bridge_secret_file, keys.allow))
        with pytest.raises(BridgeError, match="cannot bind"):
            await other.start()
        assert other.health()["running"] is False
    finally:
        holder.close(linger=0)
        ctx.term()


# `cellctl bridge`: bad input is one error line and exit 2; SIGTERM stops it cleanly


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--krc", "nohost"], "--krc: not HOST:PORT"),
        (["--krc", "h:70000"], "port must be in [1, 65535]"),
        (["--krc", "h:1", "--endpoint", "udp://x"], "--endpoint: not a ZeroMQ endpoint"),
        (["--krc", "h:1", "--heartbeat-s", "0"], "--heartbeat-s: must be a finite number > 0"),
        (["--krc", "h:1", "--heartbeat-s", "nan"], "--heartbeat-s"),
        (["--krc", "h:1"], "--secret-key and --allow are required"),
        (["--krc", "h:1", "--secret-key", "{PUBLIC}", "--allow", "{ALLOW}"], "holds no secret key"),
        (["--krc", "h:1", "--secret-key", "{SECRET}", "--allow", "{EMPTY}"], "no <cell_id>.key"),
        (["--krc", "h:1", "--secret-key", "{SECRET}", "--allow", "/nonexistent"], "no such directory"),
        (["--krc", "h:1", "--security", "none", "--allow", "{ALLOW}"], "mean nothing with --security none"),
    ],
)
def test_bridge_command_refuses_bad_input_with_one_line(argv, words, keys, tmp_path, capsys):
    from cellctl.cli import main as cli

    (tmp_path / "empty").mkdir()
    names = {
        "{PUBLIC}": str(keys.root / "bridge" / "bridge.key"),
        "{SECRET}": str(keys.bridge_secret_file),
        "{ALLOW}": str(keys.allow),
        "{EMPTY}": str(tmp_path / "empty"),
    }
    argv = ["bridge", "--endpoint", f"ipc://{tmp_path}/b.sock", *[names.get(a, a) for a in argv]]
    with pytest.raises(SystemExit) as exited:
        sys.exit(cli(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in "\n".join(err)


async def test_bridge_command_serves_cells_and_stops_on_sigterm(keys, endpoint, cells, tmp_path):
    accepted: list[asyncio.StreamWriter] = []

    async def krc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # a KRC that listens and says nothing: enough to connect

    krc_server = await asyncio.start_server(krc, "127.0.0.1", 0)
    port = krc_server.sockets[0].getsockname()[1]
    argv = ["--endpoint", endpoint, "--krc", f"127.0.0.1:{port}", "--secret-key", str(keys.bridge_secret_file)]
    argv += ["--allow", str(keys.allow), "--dedupe", str(tmp_path / "dedupe.db"), "--heartbeat-s", "0.1"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cellctl", "bridge", *argv, stderr=subprocess.PIPE
    )
    try:
        cell = cells("cell-a")
        await cell.send(Heartbeat(sender="cell-a", boot_id="cellboot1"))
        beat = await cell.heartbeat()  # a listed cell reaches the bridge over CURVE
        assert beat.sender == "bridge"
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for writer in accepted:
            writer.close()
        krc_server.close()
        await krc_server.wait_closed()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"bridge.stopped" in err and b"Traceback" not in err
    assert (tmp_path / "dedupe.db").exists()
