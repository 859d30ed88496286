"""The ``cellctl`` command: parse arguments, hand over to the command's module."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from cellctl import __version__
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
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cellctl", description="Controller of an MPI inspection cell for fasteners.")
    ap.add_argument("--version", action="version", version=f"cellctl {__version__}")
    ap.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"],
                    help="default: info (sim on a terminal: warning, the progress line is the display)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate cell configs and part profiles")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")

    p = sub.add_parser("run", help="run the inspection daemon")
    p.add_argument("--config", type=Path, default=Path("/etc/cellctl/cell.yaml"), help="cell config YAML")

    p = sub.add_parser("sim", help="run the simulated cell: daemon + simulated robot, then a summary")
    p.add_argument("--parts", type=int, default=50, help="fasteners to inspect (default 50)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--defect-rate", type=float, default=0.1, help="fraction of defective parts (default 0.1)")
    p.add_argument("--profile", default=None, help="part profile name (default: the config's default_profile)")
    p.add_argument("--time-scale", type=float, default=0.0,
                   help="1 = real-time mechanics and transfers, 0 = none (default 0)")
    p.add_argument("--config", type=Path, default=None, help="cell config (default: the embedded sim cell)")
    p.add_argument("--records", type=Path, default=None, help="keep the SQLite records here (default: temporary)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="instead of running the cell, write labelled renders of --parts parts to DIR "
                        "(DIR/head/{good,defect}, DIR/shank/{good,defect}) for cellctl eval / quantize")

    p = sub.add_parser("eval", help="score the decision path on a folder of labelled images")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--profile", required=True, help="profile name or YAML path")
    p.add_argument("--config", type=Path, default=None, help="cell config whose profiles_dir holds the profile")
    p.add_argument("--model", type=Path, default=None, help="score this ONNX file instead of the profile's")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("quantize", help="INT8 static post-training quantization of an ONNX student")
    p.add_argument("model", type=Path, help="FP32 ONNX file")
    p.add_argument("output", type=Path, help="INT8 ONNX file to write")
    p.add_argument("--calibration", type=Path, required=True, metavar="DIR",
                   help="images in the eval layout (DIR/head/..., DIR/shank/...)")
    p.add_argument("--profile", required=True, help="profile whose preprocessing the model expects")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--max-images", type=int, default=200)
    p = sub.add_parser("devices", help="list the cameras and serial devices the cell config can reach")
    p.add_argument("--config", type=Path, default=None, help="cell config (default: the embedded sim cell)")
    p.add_argument("--cti", type=Path, default=None, help="list the cameras of this GenTL producer instead")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("bench", help="model latency per view and per part, FP32 and INT8 side by side (JSON)")
    p.add_argument("--profile", default="m8x40-hex", help="profile name or YAML path (default m8x40-hex)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--fp32", type=Path, default=None, help="FP32 model to compare (default: beside the INT8 one)")
    p.add_argument("--rounds", type=int, default=50)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # logs go to stderr, so stdout carries only what a command prints (e.g. --json);
    # `run` and `sim` set their own format and default level
    configure("auto", args.log_level or "warning")
    module_name, _, func = COMMANDS[args.command].partition(":")
    return int(getattr(importlib.import_module(module_name), func)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
