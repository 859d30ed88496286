"""The composition root: builds the cell from its config, starts and stops its parts in order,
and turns signals into stop and reload requests. No per-part logic lives here.

Start order (each teardown is registered before its step, so a start that fails half-way
still undoes what it did): loop-lag monitor, inference thread and models, records, devices
(connect, light off, cameras armed, table homed, default profile), robot link (down until the
bridge is heard), outbox (replay of unacknowledged verdicts, then its task), then the parts a
killed daemon left in the fixture are judged "interrupted". Stop runs the same list
backwards: the outbox drains, the link closes, the light goes off and the devices close, the
records close.

Every start is a new ``boot_id``: readies and verdicts carry it, and the bridge deduplicates
verdicts by (cell, boot, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cellctl.captures.capturer import Capturer
from cellctl.config import CellConfig, ConfigError, ResolvedProfile, cell_relative, load_profiles
from cellctl.devices import CellDevices
from cellctl.drivers import CellError
from cellctl.fault import Fault, Step
from cellctl.inference import OnnxInferencer
from cellctl.inspection import Model
from cellctl.link.client import RobotLink
from cellctl.link.keys import LinkKeys, load_link_keys
from cellctl.loop_lag import LoopLagMonitor
from cellctl.outbox import DRAIN_S, Outbox
from cellctl.pipeline import (
    DurableWriter,
    ModelKey,
    PartResult,
    Pipeline,
    Publisher,
    acquisition_budget_s,
    model_key,
)
from cellctl.records import Records
from cellctl.state import CellState, Phase

log = structlog.get_logger("cellctl.app")

# Signals that would kill the daemon by default but mean nothing to it: logged and ignored.
IGNORED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


CLOSE_BUDGET_S = 10.0  # the four device closes, each bounded by its driver (2-3 s)


def stop_budget_s(config: CellConfig, profiles: dict[str, ResolvedProfile]) -> float:
    """The longest SIGTERM-to-exit can take: the part in hand acquired with every step at its
    deadline (the watchdog's budget), its inference at its deadline, the deliveries drained,
    the devices closed. systemd's ``TimeoutStopSec`` must not be shorter."""
    acquisition = max(acquisition_budget_s(config.timeouts, rp.profile) for rp in profiles.values())
    return acquisition + config.timeouts.inference_s + DRAIN_S + CLOSE_BUDGET_S


@dataclass(frozen=True)
class CellHooks:
    """Seams for the simulator's fault injection; production passes none."""

    wrap_inferencer: Callable[[Model], Model] | None = None
    records_opened: Callable[[Records], None] | None = None


class Cell:
    def __init__(
        self,
        config: CellConfig,
        profiles: dict[str, ResolvedProfile],
        records_path: Path,
        *,
        context: dict[str, Any] | None = None,
        hooks: CellHooks | None = None,
        config_path: Path | None = None,
        keys: LinkKeys | None = None,
    ) -> None:
        """``keys``: the link's CURVE keys (the simulator makes them per run); by default read
        from ``robot.secret_key_file`` (KeyFileError if unusable; None with ``security: none``)."""
        self.config = config
        self.config_path = config_path  # where SIGHUP reloads the profiles from
        self.hooks = hooks or CellHooks()
        self.state = CellState()
        self.devices = CellDevices.build(config, context if context is not None else {})
        self.boot_id = secrets.token_hex(8)  # this run of the daemon
        if keys is None:
            keys = load_link_keys(config.robot, config_path)
        self.link = RobotLink(config.robot, config.cell_id, self.boot_id, self.state, keys)
        self.records = Records(records_path)
        self.outbox = Outbox(self.link, self.records, self.state, config.robot, config.cell_id)
        self.link.on_ack = self.outbox.on_ack
        self.link.on_up = self.outbox.on_link_up
        self.writer = DurableWriter(self.records, self.state)
        self.publisher = Publisher(config.cell_id, self.boot_id, self.writer, self.outbox)
        self.loop_lag = LoopLagMonitor()
        self.inferencers: dict[ModelKey, Model] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.capturer = _capturer(config, config_path)
        self.pipeline = Pipeline(
            config,
            profiles,
            self.inferencers,
            self.devices,
            self.link,
            self.writer,
            self.publisher,
            self.state,
            self._executor,
            self.reload,
            self.capturer,
        )
        self._stack = contextlib.AsyncExitStack()

    @property
    def profiles(self) -> dict[str, ResolvedProfile]:
        return self.pipeline.profiles

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.publisher.counts)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.loop_lag.start()
        self._stack.push_async_callback(self.loop_lag.stop)
        self._stack.callback(self._executor.shutdown, wait=True)
        await self._load_models(self.profiles)
        self._stack.push_async_callback(self.records.close)
        await self.records.open()
        if self.hooks.records_opened is not None:
            self.hooks.records_opened(self.records)
        if self.capturer is not None:
            self._stack.push_async_callback(self.capturer.close)
            try:
                await self.capturer.open()
            except OSError as exc:
                raise CellError(f"captures: cannot use {self.capturer.store.root}: {exc.strerror or exc}") from exc
        self._stack.push_async_callback(self.devices.close)
        await self.devices.connect(self.config.timeouts.connect_s)
        await self.devices.start(self.config.timeouts)
        await self.pipeline.use_profile(self.profiles[self.config.default_profile])
        self._stack.push_async_callback(self.link.close)
        await self.link.connect()
        await self.outbox.replay()
        outbox = asyncio.create_task(self.outbox.run(), name="outbox")
        self._stack.push_async_callback(_cancel, outbox)  # after the drain, which ends it
        self._stack.push_async_callback(self.outbox.drain)
        await self._judge_interrupted()
        self.pipeline.last_accepted = await self.records.last_accepted()
        self.state.set(Phase.READY)
        log.info(
            "cell.started",
            cell_id=self.config.cell_id,
            boot_id=self.boot_id,
            profiles=sorted(self.profiles),
            last_accepted=self.pipeline.last_accepted,
        )

    async def stop(self) -> None:
        self.state.set(Phase.STOPPING)
        await self._stack.aclose()
        log.info("cell.stopped", cell_id=self.config.cell_id, loop_lag_ms=self.loop_lag.summary(), **self.counts)

    async def __aenter__(self) -> Cell:
        try:
            await self.start()
        except BaseException:
            self.state.set(Phase.STOPPING)
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Inspect parts until ``stop`` is set; the part in hand is finished first."""
        await self.pipeline.run(stop)
        self.state.set(Phase.STOPPING)

    def health(self) -> dict[str, Any]:
        return {
            **self.state.health(),
            "devices": self.devices.health(),
            "link": self.link.health(),
            "outbox": self.outbox.health(),
            "records_backlog": len(self.writer.backlog),
            "loop_lag_ms": self.loop_lag.summary(),
            "verdicts": self.counts,
            # since start: views and parts out of distribution, parts RECHECK for a part not
            # located, too little surface covered, a view out of focus or smoothed, or a view
            # that repeats another (cellctl.pipeline.publish.guard_findings)
            "guard": dict(self.publisher.guard),
            "captures": self.capturer.health() if self.capturer is not None else None,
        }

    # ------------------------------------------------------------------ steps
    async def _load_models(self, profiles: dict[str, ResolvedProfile]) -> None:
        """An inferencer per model file not loaded yet (off the loop; hashing 45 MB takes time)."""
        loop = asyncio.get_running_loop()
        for rp in profiles.values():
            if model_key(rp) in self.inferencers:
                continue
            load = functools.partial(
                OnnxInferencer,
                rp.model_path,
                rp.profile.model.sha256,
                self.config.inference_threads,
                input_size_px=rp.profile.preprocess.input_size_px,
            )
            model: Model = await loop.run_in_executor(self._executor, load)
            if self.hooks.wrap_inferencer is not None:
                model = self.hooks.wrap_inferencer(model)
            self.inferencers[model_key(rp)] = model

    async def _judge_interrupted(self) -> None:
        """Parts accepted by a daemon that died before judging them: RECHECK, before any new part."""
        for part in await self.records.unjudged():
            fault = Fault(
                Step.INTERRUPTED, f"the daemon stopped before the part was judged (accepted {part.accepted_at})"
            )
            log.warning(
                "part.interrupted",
                part_id=part.part_id,
                seq=part.seq,
                profile=part.profile,
                accepted_at=part.accepted_at,
                request_id=part.request_id,
                accepted_boot_id=part.boot_id,
            )
            result = PartResult.not_inspected(
                part.seq, part.part_id, part.profile, fault, time.monotonic(), {}, request_id=part.request_id
            )
            await self.publisher.publish(result)

    # ------------------------------------------------------------------ signals and reload
    @contextlib.contextmanager
    def signals(self, stop: asyncio.Event) -> Iterator[None]:
        """SIGTERM/SIGINT: stop after the part in hand. SIGHUP: reload the profiles between
        parts. SIGUSR1/2: logged and ignored. The previous handlers come back on exit."""
        loop = asyncio.get_running_loop()

        def stopping(name: str) -> None:
            log.info("signal.stop", signal=name)
            self.state.set(Phase.STOPPING)
            stop.set()

        def reload() -> None:
            log.info("signal.reload", signal="SIGHUP")
            self.request_reload()

        handlers: dict[signal.Signals, Callable[[], object]] = {
            signal.SIGTERM: lambda: stopping("SIGTERM"),
            signal.SIGINT: lambda: stopping("SIGINT"),
            signal.SIGHUP: reload,
        }
        for sig in IGNORED_SIGNALS:
            handlers[sig] = functools.partial(log.warning, "signal.ignored", signal=sig.name)
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        try:
            yield
        finally:
            for sig in handlers:
                loop.remove_signal_handler(sig)

    def request_reload(self) -> None:
        """Reload the profiles before the next part (at once if the cell is waiting for one)."""
        self.pipeline.reload_requested.set()

    async def reload(self) -> bool:
        """Validate the profile folder again and swap the whole set in, or keep the old one.

        Only profiles are reloaded; a changed cell config (devices, link, storage) needs a
        restart. The devices are set up for the new set's version of the active profile at
        the next part.
        """
        if self.config_path is None:
            log.warning("profiles.reload_unavailable", reason="no config file to reload from")
            return False
        try:
            profiles = await asyncio.to_thread(load_profiles, self.config_path, self.config)
            if self.config.default_profile not in profiles:
                raise ConfigError([])  # load_profiles reports it; defensive
            await self._load_models(profiles)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("profiles.reload_refused", problem=str(problem))
            log.error("profiles.reload_failed", kept=sorted(self.profiles), problems=len(exc.problems))
            return False
        except Exception as exc:  # noqa: BLE001 - a model that will not load: keep the old set
            log.error("profiles.reload_failed", kept=sorted(self.profiles), error=f"{type(exc).__name__}: {exc}")
            return False
        self.pipeline.profiles = profiles
        self.pipeline.current = None  # re-apply the active profile from the new files
        log.info("profiles.reloaded", profiles=sorted(profiles))
        return True


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _capturer(config: CellConfig, config_path: Path | None) -> Capturer | None:
    """The learning loop's capture store, if the cell config asks for one (storage.captures)."""
    settings = config.storage.captures
    if settings is None:
        return None
    root = cell_relative(config_path, settings.dir) if config_path is not None else Path(settings.dir)
    return Capturer(root, settings, config.cell_id)
