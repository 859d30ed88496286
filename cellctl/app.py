"""The composition root: builds the cell from its config and runs the inspection pipeline.

Two loops joined by a one-slot queue, so the next part is acquired while the previous one
is analysed: acquisition (part request -> light -> revolution -> light off) and analysis
(preprocess + infer off the loop -> decision -> record -> publish). Delivery (resend until
acknowledged) runs per verdict in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from cellctl.analysis import analyse
from cellctl.config import CellConfig, ResolvedProfile
from cellctl.cycle import Acquisition, acquire
from cellctl.decision import Decision, decide
from cellctl.devices import CellDevices
from cellctl.drivers import DriverTimeout
from cellctl.inference import OnnxInferencer
from cellctl.loop_lag import LoopLagMonitor
from cellctl.messages import BIN_OF, PartRequest, Verdict
from cellctl.records import Record, Records
from cellctl.robot_link import RobotLink

log = structlog.get_logger("cellctl.app")

DRAIN_S = 5.0  # on stop, how long open deliveries may still finish before they wait for restart


class Cell:
    def __init__(
        self,
        config: CellConfig,
        profiles: dict[str, ResolvedProfile],
        records_path: Path,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.profiles = profiles
        self.devices = CellDevices.build(config, context if context is not None else {})
        self.link = RobotLink(config.robot, config.cell_id)
        self.records = Records(records_path)
        self.counts: Counter[str] = Counter()
        self._inferencers: dict[Path, OnnxInferencer] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._deliveries: set[asyncio.Task[None]] = set()
        self._current: ResolvedProfile | None = None
        self._stack = contextlib.AsyncExitStack()
        self.loop_lag = LoopLagMonitor()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load models, open records, connect devices and the robot link; undone by stop()."""
        # Each teardown is registered before its step: a step that fails half-way (one of
        # four devices connected) is still undone.
        loop = asyncio.get_running_loop()
        self.loop_lag.start()
        self._stack.push_async_callback(self.loop_lag.stop)
        self._stack.callback(self._executor.shutdown, wait=True)
        for rp in self.profiles.values():
            if rp.model_path not in self._inferencers:
                self._inferencers[rp.model_path] = await loop.run_in_executor(
                    self._executor, OnnxInferencer, rp.model_path, rp.profile.model.sha256,
                    self.config.inference_threads,
                )
        self._stack.push_async_callback(self.records.close)
        await self.records.open()
        self._stack.push_async_callback(self.devices.close)
        await self.devices.connect(self.config.timeouts.connect_s)
        await self._use_profile(self.profiles[self.config.default_profile])
        await self.devices.frame_camera.start()
        await self.devices.line_camera.start()
        await self.devices.stage.home(self.config.timeouts.move_s)
        self._stack.push_async_callback(self.link.close)
        await self.link.connect()
        self._stack.push_async_callback(self._drain)
        for verdict in await self.records.pending():
            log.info("verdict.replay", seq=verdict.seq, part_id=verdict.part_id, profile=verdict.profile)
            self._spawn_delivery(verdict)
        log.info("cell.started", cell_id=self.config.cell_id, profiles=sorted(self.profiles),
                 next_seq=self.records.next_seq)

    async def stop(self) -> None:
        await self._stack.aclose()
        log.info("cell.stopped", cell_id=self.config.cell_id, loop_lag_ms=self.loop_lag.summary(), **self.counts)

    async def __aenter__(self) -> Cell:
        try:
            await self.start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ pipeline
    async def run(self, stop: asyncio.Event) -> None:
        """Inspect parts until ``stop`` is set. A part already in the fixture is finished:
        acquired, analysed and published; a crash of either loop ends the run with its error."""
        queue: asyncio.Queue[Acquisition | None] = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._acquire_loop(queue, stop), name="acquire")
            tg.create_task(self._analyse_loop(queue), name="analyse")

    async def _acquire_loop(self, queue: asyncio.Queue[Acquisition | None], stop: asyncio.Event) -> None:
        t = self.config.timeouts
        while (request := await self._next_part(stop)) is not None:
            seq = self.records.take_seq()
            rp = self.profiles.get(request.profile or self.config.default_profile)
            if rp is None:
                await self._unknown_profile(request, seq)
                continue
            if rp is not self._current:
                await self._use_profile(rp)
            log.info("part.acquire", part_id=request.part_id, seq=seq, profile=rp.name)
            await queue.put(await acquire(self.devices, request, rp, t, seq))
        await queue.put(None)  # analysis ends after the parts already queued

    async def _next_part(self, stop: asyncio.Event) -> PartRequest | None:
        """The next part from the robot, or None once ``stop`` is set."""
        if stop.is_set():
            return None
        requesting = asyncio.create_task(self.link.request_part())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({requesting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (requesting, stopping):
            task.cancel()
        await asyncio.gather(requesting, stopping, return_exceptions=True)
        # a part that arrived before the stop is in the fixture: it is inspected
        return None if requesting.cancelled() else requesting.result()

    async def _analyse_loop(self, queue: asyncio.Queue[Acquisition | None]) -> None:
        while (acq := await queue.get()) is not None:
            rp = acq.profile
            inferencer = self._inferencers[rp.model_path]
            decision, scores = await analyse(acq, inferencer, self._executor, self.config.timeouts.inference_s)
            await self._publish(acq.seq, acq.request, rp.name, decision, scores, acq.timings_ms, acq.started_s,
                                inferencer.sha256)

    async def _publish(self, seq: int, request: PartRequest, profile: str, decision: Decision,
                       scores: dict[str, float], timings: dict[str, float], started_s: float,
                       model_sha256: str | None) -> None:
        verdict = Verdict(
            cell_id=self.config.cell_id, seq=seq, part_id=request.part_id, profile=profile,
            verdict=decision.outcome, bin=BIN_OF[decision.outcome], reason=decision.reason,
            max_score=decision.max_score, worst_view=decision.worst_view, model_sha256=model_sha256,
            latency_ms=round((time.monotonic() - started_s) * 1e3, 3),
        )
        t0 = time.monotonic()
        await self.records.add(Record(verdict, scores, timings))  # durable before it is sent
        timings["record"] = (time.monotonic() - t0) * 1e3
        self.counts[decision.outcome.value] += 1
        log.info("part.verdict", part_id=request.part_id, seq=seq, profile=profile,
                 verdict=decision.outcome.value, reason=decision.reason, max_score=decision.max_score,
                 latency_ms=verdict.latency_ms)
        self._spawn_delivery(verdict)

    async def _unknown_profile(self, request: PartRequest, seq: int) -> None:
        profile = str(request.profile)
        decision = decide([], None, 0.5, f"unknown profile {profile!r}")
        log.error("part.unknown_profile", part_id=request.part_id, seq=seq, profile=profile)
        await self._publish(seq, request, profile, decision, {}, {}, time.monotonic(), None)

    async def _use_profile(self, rp: ResolvedProfile) -> None:
        await self.devices.configure(rp)
        self._current = rp
        log.info("profile.active", profile=rp.name, part_number=rp.profile.part_number)

    # ------------------------------------------------------------------ delivery
    def _spawn_delivery(self, verdict: Verdict) -> None:
        task = asyncio.create_task(self._deliver(verdict), name=f"deliver-{verdict.seq}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, verdict: Verdict) -> None:
        try:
            ack = await self.link.deliver(verdict)
        except DriverTimeout as exc:
            await self.records.mark(verdict.seq, "expired")
            log.error("verdict.undelivered", seq=verdict.seq, part_id=verdict.part_id,
                      profile=verdict.profile, error=str(exc))
            return
        await self.records.mark(verdict.seq, "acked")
        log.info("verdict.acked", seq=verdict.seq, part_id=verdict.part_id, profile=verdict.profile,
                 bin=int(ack.bin), res=ack.res)

    async def _drain(self) -> None:
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=DRAIN_S)
            for task in pending:
                task.cancel()  # still 'pending' in the records: resent at the next start
            await asyncio.gather(*pending, return_exceptions=True)
