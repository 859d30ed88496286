"""The sim's bridge: the production ``BridgeServer`` with the robot-link faults on its send path.

Every message the bridge sends passes ``send``/``send_frames``; ``SimBridge`` overrides them and
misbehaves once for each part its fault plan names (the robot keeps the plan: ``SimRobot.faults``).
A fault that concerns the part's announcement acts on its ``part`` message; one that concerns
the verdict acts on its ``ack`` (the robot knows which part a (cell, boot, seq) was about):

- bridge-restart: the part is not sent, the bridge closes, ~1 s later starts (new boot id);
- rogue-bridge: the same, but during the gap a rogue process binds the endpoint for ~2 s;
- bridge-down: the ack is not sent and the bridge is gone for the delivery deadline and more
  (the verdict expires at the cell, and is resent and acknowledged late at reconnection);
- duplicate-part, unsolicited-part (a phantom part for a random request after the real one),
  multipart (a two-frame copy first), stale-request (the previous request's id first), flood
  (2,000 parts for random requests and oversized frames, paced after the real part);
- forged-ack (wrong boot id, flipped bin), wrong-cell-ack (another cell's name), duplicate-ack;
- late-ack: the robot acted, the ack is withheld past the delivery deadline, then sent;
- forged-verdict: before the part is announced, rogue processes (one without CURVE, one with
  keys in no allow-list) send verdicts, parts and acks to the bridge;
- krc-disconnect / krc-garbage (``--via-bridge``): the simulated KRC drops the EKI connection
  or sends garbage right after the part is announced.

While closed, the bridge sends nothing (a closed socket cannot): ``send`` drops everything.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np
import structlog

from cellctl.bridge.robot import RobotSide
from cellctl.bridge.server import BridgeServer
from cellctl.link.protocol import MAX_FRAME_BYTES, Ack, Bin, Message, Part, encode
from cellctl.sim.robot import SimRobot

log = structlog.get_logger("cellctl.sim.bridge")

RESTART_GAP_S = 1.0  # bridge-restart: closed this long
ROGUE_BIND_S = 2.0  # rogue-bridge: the rogue holds the endpoint this long
ROGUE_CONNECT_S = 1.5  # forged-verdict: each rogue sends for this long
DOWN_MARGIN_S = 2.0  # bridge-down: gone for the delivery deadline plus this
LATE_MARGIN_S = 1.5  # late-ack: withheld for the delivery deadline plus this
FLOOD_PARTS = 2000
FLOOD_OVERSIZED = 20  # frames over MAX_FRAME_BYTES (and under MAXMSGSIZE: the cell refuses them)
FLOOD_AHEAD = 200  # flood messages sent and not yet refused by the cell, at most (no HWM drops)
FLOOD_STALL_S = 1.0  # ...unless the cell's refusals stop coming (dropped at its HWM)
ROUTE_WAIT_S = 5.0  # late-ack: for the cell to be heard again after a bridge restart (it beats every 1 s)
ROGUE_START_S = 30.0  # a rogue process that does not come up within this is reported, not waited on
PART_FAULTS = frozenset(
    {"bridge-restart", "rogue-bridge", "duplicate-part", "unsolicited-part", "multipart", "stale-request", "flood"}
)
ACK_FAULTS = frozenset({"bridge-down", "forged-ack", "wrong-cell-ack", "late-ack", "duplicate-ack"})
KRC_FAULTS = frozenset({"krc-disconnect", "krc-garbage"})
KRC_GARBAGE_DOCUMENTS = 5  # malformed or oversized EKI documents per krc-garbage fault


class SimBridge(BridgeServer):
    def __init__(
        self,
        endpoint: str,
        robot: RobotSide,
        sim: SimRobot,
        *,
        delivery_deadline_s: float,
        seed: int,
        bridge_public_key: bytes | None = None,
        krc: Any = None,
        **server: Any,
    ) -> None:
        super().__init__(endpoint, robot, **server)
        self._f_endpoint = endpoint
        self._f_robot = sim
        self._f_deadline_s = delivery_deadline_s
        self._f_rng = np.random.default_rng([seed, 5150])
        self._f_bridge_public_key = bridge_public_key
        self._f_krc = krc  # the simulated KRC with --via-bridge: disconnect() / garbage(n)
        self.krc = krc
        self._f_down = False
        self._f_struck: set[tuple[str, str]] = set()  # (fault, part_id) done: each strikes once
        self._f_withheld: dict[tuple[str, str, int], float] = {}  # late acks: key -> release time
        self._f_last_request: dict[bytes, str] = {}  # identity -> request id of the last part sent
        self._f_tasks: set[asyncio.Task[None]] = set()
        self.outages: list[tuple[float, float]] = []  # (closed, started again), monotonic
        self.dropped_while_down = 0
        self.flood_sent = 0
        self.rogues: list[dict[str, Any]] = []  # the rogue processes' own reports
        sim.before_announce = self._f_before_announce

    # --- the send path ------------------------------------------------------------------------

    async def send(self, identity: bytes, message: Message) -> None:
        if self._f_down:
            self.dropped_while_down += 1
            return
        if isinstance(message, Part):
            await self._f_send_part(identity, message)
        elif isinstance(message, Ack):
            await self._f_send_ack(identity, message)
        else:
            await super().send(identity, message)

    async def send_frames(self, identity: bytes, frames: list[bytes]) -> None:
        if self._f_down:
            self.dropped_while_down += 1
            return
        await super().send_frames(identity, frames)

    def _f_strike(self, fault: str | None, part_id: str, among: frozenset[str]) -> str | None:
        """The part's fault if it is one of ``among`` and has not struck yet (then it has)."""
        if fault is None or fault not in among or (fault, part_id) in self._f_struck:
            return None
        self._f_struck.add((fault, part_id))
        log.warning("sim.link_fault", fault=fault, part_id=part_id)
        return fault

    async def _f_send_part(self, identity: bytes, part: Part) -> None:
        previous = self._f_last_request.get(identity)
        fault = self._f_strike(self._f_robot.fault_of(part.part_id), part.part_id, PART_FAULTS | KRC_FAULTS)
        if fault in ("bridge-restart", "rogue-bridge"):
            self._f_go_down(RESTART_GAP_S, rogue=fault == "rogue-bridge")  # the part is lost with the bridge
            return
        if fault == "multipart":
            await super().send_frames(identity, [encode(part), encode(part)])
        elif fault == "stale-request":
            stale = previous if previous is not None and previous != part.request_id else self._f_token()
            await super().send(identity, part.model_copy(update={"request_id": stale}))
        self._f_last_request[identity] = part.request_id
        await super().send(identity, part)
        if fault == "duplicate-part":
            await super().send(identity, part)
        elif fault == "unsolicited-part":  # the cell's only request is answered: none is open
            await super().send(identity, Part(request_id=self._f_token(), part_id=f"X{part.part_id}"))
        elif fault == "flood":
            self._f_spawn(self._f_flood(identity))
        elif fault == "krc-disconnect" and self._f_krc is not None:
            await _maybe_await(self._f_krc.disconnect())
        elif fault == "krc-garbage" and self._f_krc is not None:
            await _maybe_await(self._f_krc.garbage(KRC_GARBAGE_DOCUMENTS))

    async def _f_send_ack(self, identity: bytes, ack: Ack) -> None:
        key = (ack.cell_id, ack.boot_id, ack.seq)
        if key in self._f_withheld:
            if time.monotonic() < self._f_withheld[key]:
                return  # a resend's ack: still withheld (the late one is on its way)
            await super().send(identity, ack)
            return
        part_id = self._f_robot.part_of(*key)
        fault = self._f_strike(self._f_robot.fault_of(part_id), part_id or "", ACK_FAULTS)
        if fault == "bridge-down":
            self._f_go_down(self._f_deadline_s + DOWN_MARGIN_S, rogue=False)  # the ack goes down with it
            return
        if fault == "late-ack":
            delay = self._f_deadline_s + LATE_MARGIN_S
            self._f_withheld[key] = time.monotonic() + delay
            self._f_spawn(self._f_late(identity, ack, delay))
            return
        if fault == "forged-ack":
            flipped = Bin.REJECT if ack.bin == Bin.GOOD else Bin.GOOD
            await super().send(identity, ack.model_copy(update={"boot_id": self._f_token(), "bin": flipped}))
        elif fault == "wrong-cell-ack":
            await super().send(identity, ack.model_copy(update={"cell_id": f"{ack.cell_id[:50]}-other"}))
        await super().send(identity, ack)
        if fault == "duplicate-ack":
            await super().send(identity, ack)

    # --- faults that take time ----------------------------------------------------------------

    def _f_go_down(self, seconds: float, *, rogue: bool) -> None:
        self._f_down = True  # from now on nothing leaves (the caller's message included)
        self._f_spawn(self._f_outage(seconds, rogue))

    async def _f_outage(self, seconds: float, rogue: bool) -> None:
        t0 = time.monotonic()
        try:
            await self.close()
            if rogue:
                self.rogues.append(await run_rogue(["bind", self._f_endpoint, "--seconds", str(ROGUE_BIND_S)]))
            else:
                await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self._f_down = False  # the run is ending: close_all closes the bridge
            raise
        except Exception as exc:  # noqa: BLE001 - a rogue that would not run: the bridge comes back anyway
            log.error("sim.outage_failed", error=f"{type(exc).__name__}: {exc}")
        self._f_down = False
        await self.start()
        self.outages.append((t0, time.monotonic()))
        log.warning("sim.bridge_back", down_s=round(time.monotonic() - t0, 2))

    async def _f_late(self, identity: bytes, ack: Ack, delay: float) -> None:
        await asyncio.sleep(delay)
        while self._f_down:  # the bridge went away meanwhile: the ack goes when it is back
            await asyncio.sleep(0.05)
        # on the cell's route of now: it may have reconnected meanwhile (a new routing id), and
        # after a restart of the bridge its next heartbeat tells the route again
        deadline = time.monotonic() + ROUTE_WAIT_S
        while self.route(ack.cell_id) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await super().send(self.route(ack.cell_id) or identity, ack)
        log.info("sim.late_ack_sent", seq=ack.seq, after_s=delay)

    async def _f_flood(self, identity: bytes) -> None:
        """Parts for random requests, paced on the cell's refusals so that the real parts that
        follow never meet a full queue (a dropped real part would leave a request open)."""
        refused0 = sum(self._f_robot.refusals.values())
        last_progress, last_refused = time.monotonic(), refused0
        for k in range(FLOOD_PARTS + FLOOD_OVERSIZED):
            while not self._f_down:
                refused = sum(self._f_robot.refusals.values())
                if refused != last_refused:
                    last_progress, last_refused = time.monotonic(), refused
                if k - (refused - refused0) < FLOOD_AHEAD:  # k: sent so far in this flood
                    break
                if time.monotonic() - last_progress > FLOOD_STALL_S:
                    refused0 -= FLOOD_AHEAD // 2  # refusals lost at the cell's HWM: carry on slowly
                    last_progress = time.monotonic()
                    break
                await asyncio.sleep(0.005)
            if self._f_down:
                return
            if k < FLOOD_PARTS:
                await super().send(identity, Part(request_id=self._f_token(), part_id=f"F{k:05d}"))
            else:
                await super().send_frames(identity, [b'{"type":"part"' + b" " * (MAX_FRAME_BYTES + 1024) + b"}"])
            self.flood_sent += 1
        log.info("sim.flood_sent", messages=self.flood_sent)

    async def _f_before_announce(self, part_id: str, fault: str) -> None:
        """forged-verdict: while the cell's request is open and the bridge is live, rogues try."""
        if self._f_strike(fault, part_id, frozenset({"forged-verdict"})) is None:
            return
        common = ["connect", self._f_endpoint, "--seconds", str(ROGUE_CONNECT_S)]
        wrong = ["--keys", "wrong"]
        if self._f_bridge_public_key is not None:
            wrong += ["--server-key", self._f_bridge_public_key.decode()]
        reports = await asyncio.gather(run_rogue(common), run_rogue([*common, *wrong]))
        self.rogues.extend(reports)

    # --- bookkeeping --------------------------------------------------------------------------

    def _f_token(self) -> str:
        return bytes(self._f_rng.integers(0, 256, 8, dtype=np.uint8)).hex()

    def _f_spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._f_tasks.add(task)
        task.add_done_callback(self._f_tasks.discard)

    async def settle(self) -> None:
        """Until the faults still under way are over (a late ack sent, the bridge back, a flood out)."""
        while self._f_tasks:
            await asyncio.gather(*list(self._f_tasks), return_exceptions=True)

    async def close_all(self) -> None:
        """End of the run: cancel faults still under way, close the bridge."""
        for task in list(self._f_tasks):
            task.cancel()
        await asyncio.gather(*self._f_tasks, return_exceptions=True)
        self._f_down = False
        await self.close()


async def _maybe_await(result: Any) -> None:
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        await result


async def run_rogue(argv: list[str]) -> dict[str, Any]:
    """Run ``python -m cellctl.sim.rogue ARGV`` to its end: its JSON report (plus ``returncode``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cellctl.sim.rogue",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    report: dict[str, Any] = {"argv": argv[:1] + argv[2:], "returncode": proc.returncode}
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    if lines:
        report.update(json.loads(lines[-1]))
    else:
        report["error"] = err.decode(errors="replace")[-300:]
    log.info("sim.rogue_done", **report)
    return report
