"""The inspection line: parts in, verdicts out, one part in the fixture at a time.

Two loops joined by a one-slot queue, so the next part is acquired while the previous one
is analysed. Acquisition: wait until the cell is not blocked, ask the robot for a part,
record it as accepted (durable seq), switch the profile if the part needs another one,
acquire. Analysis: preprocess and infer off the loop, decide, publish. Every failure of a
part is that part's RECHECK; the loops themselves only end on stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import structlog

from cellctl.config import CellConfig, ResolvedProfile
from cellctl.devices import CellDevices
from cellctl.fault import Fault, Step
from cellctl.inspection import Model
from cellctl.link.client import LinkReset, RobotLink
from cellctl.link.protocol import Part
from cellctl.pipeline.acquire import Acquisition, acquire, acquisition_budget_s, home_after_fault
from cellctl.pipeline.analyse import ModelKey, PartResult, analyse
from cellctl.pipeline.publish import DurableWriter, Publisher
from cellctl.state import CellState, Phase

if TYPE_CHECKING:  # the capturer imports the pipeline's types
    from cellctl.captures.capturer import Capturer

log = structlog.get_logger("cellctl.pipeline")

LINK_DOWN_POLL_S = 0.1  # a reset while the link is down and the cell not (yet) blocked: look again this late
LINK_RETRY_S = 1.0  # after a failed part request (a bug or a broken socket), ask again this late


class Pipeline:
    def __init__(
        self,
        config: CellConfig,
        profiles: dict[str, ResolvedProfile],
        inferencers: dict[ModelKey, Model],
        devices: CellDevices,
        link: RobotLink,
        writer: DurableWriter,
        publisher: Publisher,
        state: CellState,
        executor: Executor,
        reload: Callable[[], Awaitable[object]],
        capturer: Capturer | None = None,
    ) -> None:
        self.config = config
        self.profiles = profiles  # replaced whole by a reload, never edited in place
        self.inferencers = inferencers
        self.devices = devices
        self.link = link
        self.writer = writer
        self.publisher = publisher
        self.state = state
        self.executor = executor
        self.reload = reload  # validates and swaps in a new profile set; only ever between parts
        self.reload_requested = asyncio.Event()
        self.capturer = capturer  # the learning loop's store; None: nothing is kept
        self.current: ResolvedProfile | None = None  # the profile the devices are set up for
        self.last_accepted: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Inspect parts until ``stop`` is set; a part already in the fixture is finished."""
        queue: asyncio.Queue[Acquisition | None] = asyncio.Queue(maxsize=1)
        retry = asyncio.create_task(self.writer.retry_loop(), name="records-retry")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._acquire_loop(queue, stop), name="acquire")
                tg.create_task(self._analyse_loop(queue), name="analyse")
        finally:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
            await self.writer.flush()  # a last try for records still in the backlog

    async def use_profile(self, rp: ResolvedProfile) -> None:
        """Set the devices up for ``rp``; on refusal put the previous profile back and raise."""
        try:
            await self.devices.configure(rp, self.config.timeouts.configure_s)
        except Exception:
            previous, self.current = self.current, None  # unknown state until restored
            if previous is not None:
                try:
                    await self.devices.configure(previous, self.config.timeouts.configure_s)
                    self.current = previous
                except Exception as exc:  # noqa: BLE001 - the next part configures afresh
                    log.error("profile.restore_failed", profile=previous.name, error=str(exc))
            raise
        self.current = rp
        log.info("profile.active", profile=rp.name, part_number=rp.profile.part_number)

    # ------------------------------------------------------------------ acquisition
    async def _acquire_loop(self, queue: asyncio.Queue[Acquisition | None], stop: asyncio.Event) -> None:
        try:
            while (part := await self._next_part(stop)) is not None:
                self.state.set(Phase.BUSY)
                try:
                    acq = await self._take(part, stop)
                except Exception as exc:  # a bug before the accept record
                    # not accepted, so no verdict: the robot sees it was not taken (ready.accepted)
                    # and announces the part again
                    log.error("part.not_taken", part_id=part.part_id, error=str(exc), exc_info=True)
                    continue
                if acq is None:
                    break  # stopped while the records refused the part: it stays in the fixture
                await queue.put(acq)
        finally:
            await queue.put(None)  # analysis ends after the parts already queued

    async def _next_part(self, stop: asyncio.Event) -> Part | None:
        """The next part from the robot once the cell may take one, or None once ``stop`` is set.
        A reload asked for while the cell waits is done at once: no part is in hand.

        A request the link resets (link down, bridge restarted) is over: no part answering it
        is ever taken. The cell waits until it is unblocked and offers the fixture again with
        a new request, at once (the link decides when it is up, not a retry timer)."""
        while not stop.is_set():
            if self.state.blocked_reasons:
                await _first(self.state.wait_unblocked(), stop.wait())
                continue
            await self._reload_if_asked()
            self.state.set(Phase.READY)
            requesting = asyncio.create_task(self.link.request_part(self.last_accepted), name="request-part")
            try:
                while True:
                    stopping = asyncio.create_task(stop.wait())
                    reloading = asyncio.create_task(self.reload_requested.wait())
                    await asyncio.wait({requesting, stopping, reloading}, return_when=asyncio.FIRST_COMPLETED)
                    for task in (stopping, reloading):
                        task.cancel()
                    await asyncio.gather(stopping, reloading, return_exceptions=True)
                    if requesting.done():
                        # a part that arrived before the stop is in the fixture: it is inspected
                        return requesting.result()
                    if stop.is_set():
                        return None
                    await self._reload_if_asked()  # the part request stays open meanwhile
            except LinkReset as exc:
                log.info("robot_link.request_again", why=str(exc))
                # a reset without a block (the bridge restarted, the link is up): ask again at once;
                # a link that is down blocks the cell, and if the block is not visible yet, never spin
                await _first(asyncio.sleep(0 if self.link.up else LINK_DOWN_POLL_S), stop.wait())
            except Exception as exc:
                log.error("robot_link.request_failed", error=str(exc), exc_info=True)
                await _first(asyncio.sleep(LINK_RETRY_S), stop.wait())
            finally:
                if not requesting.done():
                    requesting.cancel()
                await asyncio.gather(requesting, return_exceptions=True)
        return None

    async def _reload_if_asked(self) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            await self.reload()

    async def _take(self, part: Part, stop: asyncio.Event) -> Acquisition | None:
        name = part.profile or self.config.default_profile
        boot_id = self.link.boot_id
        seq = await self.writer.accept(self.config.cell_id, part.part_id, name, part.request_id, boot_id, stop)
        if seq is None:
            return None
        self.last_accepted = part.part_id
        log.info("part.accepted", part_id=part.part_id, seq=seq, profile=name, request_id=part.request_id)
        acq = Acquisition(part, name, self.profiles.get(name), seq, time.monotonic(), boot_id)
        try:
            return await self._acquire(acq)
        except Exception as exc:
            log.error("part.error", part_id=part.part_id, seq=seq, profile=name, error=str(exc), exc_info=True)
            acq.fault = acq.fault or Fault.of(acq.step, exc)
            return acq

    async def _acquire(self, acq: Acquisition) -> Acquisition:
        rp = acq.profile
        if rp is None:
            acq.fault = Fault(Step.PROFILE, f"unknown profile {acq.profile_name!r}")
            log.error("part.unknown_profile", **acq.ids())
            return acq
        if rp is not self.current:
            acq.step = Step.PROFILE
            try:
                await self.use_profile(rp)
            except Exception as exc:  # noqa: BLE001 - a refused switch is this part's RECHECK
                acq.fault = Fault(Step.PROFILE, f"switch to {rp.name} refused: {exc}", exc)
                kept = self.current.name if self.current else None
                log.error("profile.refused", **acq.ids(), error=str(exc), kept=kept)
                return acq
        log.info("part.acquire", **acq.ids())
        budget_s = acquisition_budget_s(self.config.timeouts, rp.profile)
        try:
            return await asyncio.wait_for(acquire(self.devices, acq, self.config.timeouts), budget_s)
        except TimeoutError:
            # only a driver that ignores its own deadline gets here (see acquisition_budget_s)
            acq.fault = Fault(acq.step, f"watchdog: acquisition exceeded {budget_s:g} s")
            log.error("acquire.watchdog", **acq.ids(), step=acq.step.value)
            await home_after_fault(self.devices, acq, self.config.timeouts.home_s)
            return acq

    # ------------------------------------------------------------------ analysis
    async def _analyse_loop(self, queue: asyncio.Queue[Acquisition | None]) -> None:
        while (acq := await queue.get()) is not None:
            try:
                result = await analyse(acq, self.inferencers, self.executor, self.config.timeouts.inference_s)
            except Exception as exc:
                log.error(
                    "part.error",
                    **acq.ids(),
                    error=str(exc),
                    exc_info=True,
                )
                fault = Fault.of(Step.DECIDE, exc)
                ids = (acq.seq, acq.part_id, acq.profile_name)
                result = PartResult.not_inspected(*ids, fault, acq.started_s, acq.timings_ms, request_id=acq.request_id)
            try:
                await self.publisher.publish(result)
            except Exception as exc:  # the accept record stays: judged "interrupted" at start
                log.error(
                    "part.publish_failed",
                    **acq.ids(),
                    error=str(exc),
                    exc_info=True,
                )
            if self.capturer is not None:  # after the verdict is on its way: never delays it
                try:
                    self.capturer.offer(acq, result)
                except Exception as exc:
                    log.error("capture.error", **acq.ids(), error=str(exc), exc_info=True)


async def _first(work: Awaitable[object], stopping: Awaitable[object]) -> object | None:
    """The result of ``work``, or None if ``stopping`` completes first (``work`` is then
    cancelled, unless it finished in the same instant: its result wins)."""
    work_task = asyncio.ensure_future(work)
    stop_task = asyncio.ensure_future(stopping)
    await asyncio.wait({work_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    for task in (work_task, stop_task):
        task.cancel()
    await asyncio.gather(work_task, stop_task, return_exceptions=True)
    if work_task.cancelled():
        return None
    return work_task.result()  # raises what the work raised
