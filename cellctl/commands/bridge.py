"""``cellctl bridge``: the robot link's server in front of a KUKA KRC (EthernetKRL), until SIGTERM.

    cellctl bridge --endpoint tcp://0.0.0.0:5560 --krc 192.168.1.10:54600 \\
        --secret-key /etc/cellctl/bridge.key_secret --allow /etc/cellctl/cells/ \\
        --dedupe /var/lib/cellctl/bridge-dedupe.db

The cells connect with CURVE; only those whose public key is in ``--allow`` (one
``<cell_id>.key`` per cell) get through. ``--security none`` runs without (a warning at every
start). Only light imports at module level: ``cellctl`` builds its parser from ``add_parser``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellctl.commands.args import existing_dir, existing_file, host_port, output_file, positive_float, zmq_endpoint

if TYPE_CHECKING:  # the parser is built from this module: the server's imports wait for main()
    from typing import Protocol

    from cellctl.bridge.robot import RobotSide
    from cellctl.bridge.server import BridgeServer

    class _Robot(RobotSide, Protocol):
        """What the command needs of the robot client (cellctl.bridge.kuka.KukaRobot)."""

        async def start(self) -> None: ...

        async def close(self) -> None: ...


EXIT_USAGE = 2
EXIT_START_FAILED = 3  # as `cellctl run`: the endpoint or the robot could not be set up


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    p = sub.add_parser("bridge", help="run the robot link's bridge to a KUKA KRC (EthernetKRL), until SIGTERM")
    p.add_argument("--endpoint", type=zmq_endpoint, required=True, help="ZeroMQ endpoint to bind, e.g. tcp://*:5560")
    p.add_argument("--krc", type=host_port, required=True, metavar="HOST:PORT", help="the KRC's EKI server")
    p.add_argument("--secret-key", type=existing_file, default=None, metavar="FILE", help="the bridge's .key_secret")
    p.add_argument("--allow", type=existing_dir, default=None, metavar="DIR", help="one <cell_id>.key per cell")
    p.add_argument(
        "--dedupe",
        type=output_file,
        default=None,
        metavar="FILE",
        help="SQLite file of verdicts acted on (default: in memory)",
    )
    p.add_argument("--security", choices=["curve", "none"], default="curve", help="default curve")
    p.add_argument("--heartbeat-s", type=positive_float, default=1.0, help="heartbeat period, > 0 (default 1)")


class _Usage(Exception):
    """A combination of options that cannot work: one error line, exit 2."""


def main(args: argparse.Namespace) -> int:
    import asyncio

    from cellctl.drivers import CellError
    from cellctl.logs import configure

    configure("auto", args.log_level or "info")
    try:
        server, robot = _build(args)
    except _Usage as exc:
        print(f"error: {exc} (see `cellctl bridge --help`)", file=sys.stderr)
        return EXIT_USAGE
    except CellError as exc:  # a key file or the allow-list: the message names it
        _error(exc)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(server, robot))
    except CellError as exc:  # the endpoint cannot be bound, the dedupe file cannot be opened
        _error(exc)
        return EXIT_START_FAILED


def _error(exc: Exception) -> None:
    from cellctl.text import printable

    print(f"error: {printable(' '.join(str(exc).split()))}", file=sys.stderr)


def _build(args: argparse.Namespace) -> tuple[BridgeServer, _Robot]:
    from cellctl.bridge.auth import BridgeAuth
    from cellctl.bridge.dedupe import Dedupe, SqliteDedupe
    from cellctl.bridge.server import BridgeServer

    auth: BridgeAuth | None = None
    if args.security == "curve":
        if args.secret_key is None or args.allow is None:
            raise _Usage("--secret-key and --allow are required with --security curve")
        auth = BridgeAuth(args.secret_key, args.allow)
        auth.load()  # before anything binds: a bad key is a usage error now, not at start
    elif args.secret_key is not None or args.allow is not None:
        raise _Usage("--secret-key and --allow mean nothing with --security none")
    try:
        from cellctl.bridge.kuka import KukaRobot
    except ImportError as exc:
        raise _Usage(f"the KUKA client cannot be loaded: {exc}") from None
    host, port = args.krc
    robot: _Robot = KukaRobot(host, port, heartbeat_s=args.heartbeat_s)
    dedupe = Dedupe() if args.dedupe is None else SqliteDedupe(Path(args.dedupe))
    return BridgeServer(args.endpoint, robot, auth=auth, heartbeat_s=args.heartbeat_s, dedupe=dedupe), robot


async def _serve(server: BridgeServer, robot: _Robot) -> int:
    import asyncio
    import signal

    import structlog

    from cellctl.bridge.dedupe import SqliteDedupe

    log = structlog.get_logger("cellctl.bridge")
    if not isinstance(server.dedupe, SqliteDedupe):
        log.warning("bridge.dedupe_in_memory", why="without --dedupe a restarted bridge acts again on resent verdicts")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await robot.start()
        try:
            await server.start()
            try:
                await stop.wait()
                log.info("bridge.stopping")
            finally:
                await server.close()
        finally:
            await robot.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0
