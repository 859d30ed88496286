"""The ``cellctl`` command: parse arguments, hand over to the command's module.

Every path ends in one clear line: a usage error is ``error: ...`` and exit 2 (no usage
dump), a config error one ``error: file:line: field: message`` per problem and exit 2, an
unexpected exception ``error: internal error: ...`` and exit 70, Ctrl-C exit 130, the reader
of stdout gone (``| head``) a quiet exit 141 as a shell reports SIGPIPE. Exit codes (README,
"CLI"): 0 ok, 1 check/devices found problems or sim lost verdicts, 2 usage or config error,
3 a device failed at run start, 70 internal error, 130 interrupted, 141 stdout closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from cellctl import __version__
from cellctl.commands.args import (
    existing_dir,
    existing_file,
    fraction,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
)
from cellctl.commands.bridge import add_parser as add_bridge_parser
from cellctl.commands.captures import add_parser as add_captures_parser
from cellctl.commands.guard import add_parser as add_guard_parser
from cellctl.commands.promote import add_parser as add_promote_parser
from cellctl.commands.train import add_parser as add_train_parser
from cellctl.commands.verdict import add_parser as add_verdict_parser
from cellctl.logs import configure

# command -> "module:function(args) -> exit code"; imported only when used
COMMANDS = {
    "check": "cellctl.commands.check:main",
    "run": "cellctl.commands.run:main",
    "sim": "cellctl.sim.run:main",
    "eval": "cellctl.commands.evaluate:main",
    "quantize": "cellctl.commands.quantize:main",
    "devices": "cellctl.commands.devices:main",
    "bench": "cellctl.commands.bench:main",
    "pod": "cellctl.sim.pod:main",
    "bridge": "cellctl.commands.bridge:main",
    "keys": "cellctl.commands.keys:main",
    "guard": "cellctl.commands.guard:main",
    "verdict": "cellctl.commands.verdict:main",
    "captures": "cellctl.commands.captures:main",
    "train": "cellctl.commands.train:main",
    "promote": "cellctl.commands.promote:main",
}


EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line with a hint, exit 2 (subparsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        # argparse turns only ValueError/TypeError/ArgumentTypeError of a type function into a
        # usage error; a value out of any range (OverflowError) or a path the OS refuses
        # (OSError) is the user's too, so it gets the same one line instead of a traceback
        try:
            return super()._get_value(action, arg_string)
        except (ArithmeticError, OSError) as exc:
            name = "/".join(action.option_strings) or str(action.metavar or action.dest)
            reason = " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
            self.error(f"argument {name}: cannot use {arg_string!r}: {reason}")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="cellctl", description="Controller of an MPI inspection cell for fasteners.")
    ap.add_argument("--version", action="version", version=f"cellctl {__version__}")
    ap.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: info (sim on a terminal: warning, the progress line is the display)",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate cell configs and part profiles")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")

    p = sub.add_parser("run", help="run the inspection daemon")
    p.add_argument("--config", type=Path, default=Path("/etc/cellctl/cell.yaml"), help="cell config YAML")

    p = sub.add_parser("sim", help="run the simulated cell: daemon + simulated robot, then a summary")
    p.add_argument("--parts", type=positive_int, default=50, help="fasteners to inspect, >= 1 (default 50)")
    p.add_argument("--seed", type=non_negative_int, default=1, help="simulator seed, >= 0 (default 1)")
    p.add_argument(
        "--defect-rate", type=fraction, default=0.1, help="fraction of defective parts, in [0, 1] (default 0.1)"
    )
    p.add_argument("--profile", default=None, help="part profile name (default: the config's default_profile)")
    p.add_argument(
        "--conditions",
        choices=["seed", "plant"],
        default=None,
        help="simulator preset (sim/conditions.py): seed, what the shipped student was trained on "
        "(the default), or plant: grain, edge build-up, faint indications, pose, blur, glare, dimming",
    )
    p.add_argument(
        "--time-scale",
        type=non_negative_float,
        default=0.0,
        help="1 = real-time mechanics and transfers, 0 = none (default 0)",
    )
    p.add_argument("--config", type=existing_file, default=None, help="cell config (default: the embedded sim cell)")
    p.add_argument(
        "--records", type=output_file, default=None, help="keep the SQLite records here (default: temporary)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--captures",
        type=output_dir,
        default=None,
        metavar="DIR",
        help="keep the learning loop's captures in DIR (storage.captures on, its other fields from the config)",
    )
    p.add_argument(
        "--captures-budget-mb",
        type=positive_float,
        default=None,
        metavar="MB",
        help="with --captures: the store's disk budget (default: the config's, else 2048)",
    )
    p.add_argument(
        "--faults",
        default="",
        metavar="NAME[,NAME...]",
        help="inject these named faults at random parts, deterministic for --seed "
        "(e.g. camera-timeout,disk-full; see README)",
    )
    p.add_argument(
        "--via-bridge",
        action="store_true",
        help="the bridge talks KUKA EKI over TCP to a simulated KRC (daemon -> bridge -> KRC)",
    )
    p.add_argument(
        "--export",
        type=output_dir,
        default=None,
        metavar="DIR",
        help="instead of running the cell, write labelled renders of --parts parts to DIR in both layouts "
        "of cellctl eval: per image (DIR/head/{good,defect}, DIR/shank/{good,defect}) and per part "
        "(DIR/parts/{good,defect}/<part_id>/head<angle>.png, strip.png)",
    )

    p = sub.add_parser(
        "eval",
        help="run the daemon's decision path (locate, tile, guard, decide) on labelled images: "
        "PASS / REJECT / RECHECK against the truth",
    )
    p.add_argument(
        "dir",
        type=existing_dir,
        metavar="DIR",
        help="labelled images: DIR/{head,shank}/{good,defect}/*.png, one outcome per image; with --parts "
        "DIR/parts/{good,defect}/<part_id>/{head<angle>.png...,strip.png}, one outcome per part",
    )
    p.add_argument("--profile", required=True, help="profile name or YAML path")
    p.add_argument(
        "--config", type=existing_file, default=None, help="cell config whose profiles_dir holds the profile"
    )
    p.add_argument("--model", type=existing_file, default=None, help="score this ONNX file instead of the profile's")
    p.add_argument(
        "--parts",
        action="store_true",
        help="judge whole parts (every head frame of the profile's head positions and the strip) as the daemon does",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (figures, unreadable files, every item's views)"
    )

    p = sub.add_parser("quantize", help="INT8 static post-training quantization of an ONNX student")
    p.add_argument("model", type=existing_file, help="FP32 ONNX file")
    p.add_argument("output", type=output_file, help="INT8 ONNX file to write")
    p.add_argument(
        "--calibration",
        type=existing_dir,
        required=True,
        metavar="DIR",
        help="images in the eval layout (DIR/head/..., DIR/shank/...)",
    )
    p.add_argument("--profile", required=True, help="profile whose preprocessing the model expects")
    p.add_argument("--config", type=existing_file, default=None)
    p.add_argument("--max-images", type=positive_int, default=200, help="calibration images, >= 1 (default 200)")
    p.add_argument(
        "--keep-float",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="blocks that may stay float where quantizing them changes decisions on the calibration views "
        "(default 2; 0: all quantized)",
    )
    p.add_argument("--threads", type=positive_int, default=2, help="onnxruntime threads (default 2)")
    p = sub.add_parser(
        "pod",
        help="probability of detection (MIL-HDBK-1823A): inject graded indications into simulated good parts, "
        "judge them on the decision path, fit a50/a90/a90-95 per view kind, and the false-call rate",
    )
    p.add_argument("--profile", required=True, help="profile name or YAML path")
    p.add_argument(
        "--config", type=existing_file, default=None, help="cell config whose profiles_dir holds the profile"
    )
    p.add_argument("--parts", type=positive_int, default=80, help="good parts, >= 1: injections per sweep (default 80)")
    p.add_argument("--seed", type=non_negative_int, default=1, help="simulator seed, >= 0 (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--plot", type=output_file, default=None, metavar="FILE.png", help="write the POD curves here")
    p = sub.add_parser("devices", help="list the cameras and serial devices the cell config can reach")
    p.add_argument("--config", type=existing_file, default=None, help="cell config (default: the embedded sim cell)")
    p.add_argument("--cti", type=existing_file, default=None, help="list the cameras of this GenTL producer instead")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("bench", help="model latency per view and per part, FP32 and INT8 side by side (JSON)")
    p.add_argument("--profile", default="m8x40-hex", help="profile name or YAML path (default m8x40-hex)")
    p.add_argument("--config", type=existing_file, default=None)
    p.add_argument(
        "--fp32", type=existing_file, default=None, help="FP32 model to compare (default: beside the INT8 one)"
    )
    p.add_argument("--rounds", type=positive_int, default=50, help="timed rounds, >= 1 (default 50)")
    add_bridge_parser(sub)
    add_guard_parser(sub)
    add_verdict_parser(sub)
    add_captures_parser(sub)
    add_train_parser(sub)
    add_promote_parser(sub)
    p = sub.add_parser("keys", help="CURVE key pairs of the robot link (ZeroMQ certificate files)")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (0600); print the public key")
    k.add_argument("name", metavar="NAME", help="the key pair's name, e.g. the cell_id or 'bridge'")
    k.add_argument(
        "--dir",
        type=output_dir,
        required=True,
        metavar="DIR",
        help="folder to write the two files in (created 0700 if missing)",
    )
    k.add_argument("--force", action="store_true", help="replace an existing key pair of that name")
    k = keys.add_parser("show", help="print the public key of a certificate file (.key or .key_secret)")
    k.add_argument("file", type=existing_file, metavar="FILE")
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # --help and --version leave by SystemExit: their text is flushed here too
            sys.stdout.flush()  # here, not at exit, where a closed pipe can no longer be caught
    except BrokenPipeError:
        # the reader went away (`cellctl verdict --json | head`): not an error of ours, and
        # Python would print one at exit when it flushes stdout again, so point stdout at
        # /dev/null (the recipe of the signal module's docs) and leave as `yes | head` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE


def _main(argv: list[str] | None) -> int:
    try:  # a type function's own bug must end in one line too, not in a traceback
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - SystemExit (usage errors, --help) passes through
        return _failed(exc, "debug" in (sys.argv[1:] if argv is None else argv))
    # logs go to stderr, so stdout carries only what a command prints (e.g. --json);
    # `run` and `sim` set their own format and default level
    configure("auto", args.log_level or "warning")
    module_name, _, func = COMMANDS[args.command].partition(":")
    try:
        return int(getattr(importlib.import_module(module_name), func)(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return _failed(exc, args.log_level == "debug")


def _failed(exc: Exception, debug: bool) -> int:
    from cellctl.commands.common import report
    from cellctl.config import ConfigError
    from cellctl.drivers import CellError
    from cellctl.text import printable

    if isinstance(exc, ConfigError):  # a command that did not catch its own
        report(exc)
        return EXIT_USAGE
    if debug:
        traceback.print_exc()
    if isinstance(exc, CellError):  # raised on purpose: its message is for the user
        print(f"error: {printable(' '.join(str(exc).split()))}", file=sys.stderr)
        return EXIT_USAGE
    detail = printable(" ".join(str(exc).split()))[:300]
    print(
        f"error: internal error: {type(exc).__name__}: {detail} "
        "(please report; run with --log-level debug for details)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
