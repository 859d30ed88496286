"""Rogue processes for the link faults: a process on the same host without the link's keys.

``python -m cellctl.sim.rogue bind ENDPOINT --seconds S``
    binds a plain ROUTER (no CURVE) on the bridge's endpoint, as a process that takes the port
    while the bridge restarts; answers any ``ready`` with a forged part and any verdict with a
    forged ack. The cell's CURVE handshake with it fails, so it should hear nothing.

``python -m cellctl.sim.rogue connect ENDPOINT --seconds S [--keys wrong --server-key Z85] [--cell-id ID]``
    connects a DEALER that claims to be the cell (its identity), without CURVE or with a key
    pair of its own that no allow-list holds, and sends forged verdicts (PASS for P00001...
    with guessed seqs and boot ids), parts and acks. The bridge's ZAP handler denies the
    key; a plain client fails the handshake.

Both print ``ready`` on stdout once bound/connected, then at exit one JSON line of counts:
``{"mode": ..., "sent": n, "received": n, "handshakes": n}`` (handshakes: CURVE/NULL handshakes
that succeeded with a peer; anything but 0 means a peer talked to a process without the keys).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from cellctl.link.protocol import MAXMSGSIZE, Ack, Bin, Outcome, Part, Ready, Verdict, encode

SEND_EVERY_S = 0.05
GUESSED_SEQS = 40  # forged verdicts for seqs 1..40, all PASS
GUESSED_BOOT_IDS = ("0" * 16, "migrated")


def _forged_verdict(cell_id: str, seq: int, boot_id: str) -> bytes:
    return encode(
        Verdict(
            cell_id=cell_id,
            boot_id=boot_id,
            seq=seq,
            request_id=None,
            part_id=f"P{seq:05d}",
            profile="m8x40-hex",
            verdict=Outcome.PASS,
            bin=Bin.GOOD,
            reason="forged",
            max_score=0.0,
            latency_ms=1.0,
        )
    )


def _monitor(sock: zmq.Socket, counts: dict[str, int]) -> zmq.Socket:
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    counts["handshakes"] = 0
    return mon


def _close(ctx: zmq.Context, sock: zmq.Socket, mon: zmq.Socket) -> None:
    sock.disable_monitor()
    mon.close(linger=0)
    sock.close(linger=0)
    ctx.term()


def _drain_monitor(mon: zmq.Socket, counts: dict[str, int]) -> None:
    while mon.poll(0):
        event = recv_monitor_message(mon)
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            counts["handshakes"] += 1


def bind(endpoint: str, seconds: float) -> dict[str, int]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
    counts = {"sent": 0, "received": 0}
    mon = _monitor(sock, counts)
    sock.bind(endpoint)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            _drain_monitor(mon, counts)
            if not sock.poll(int(min(left, 0.1) * 1000)):
                continue
            identity, *frames = sock.recv_multipart()
            counts["received"] += 1
            try:
                message = json.loads(frames[-1])
            except ValueError:
                continue
            reply: bytes | None = None
            if message.get("type") == "ready":
                reply = encode(Part(request_id=message.get("request_id") or "x", part_id="ROGUE1"))
            elif message.get("type") == "verdict":
                seq = message.get("seq") if isinstance(message.get("seq"), int) else 1
                reply = encode(
                    Ack(
                        cell_id=message.get("cell_id") or "x",
                        boot_id=message.get("boot_id") or "x",
                        seq=seq,
                        bin=Bin.GOOD,
                    )
                )
            if reply is not None:
                sock.send_multipart([identity, reply])
                counts["sent"] += 1
        _drain_monitor(mon, counts)
    finally:
        _close(ctx, sock, mon)
    return counts


def connect(endpoint: str, seconds: float, cell_id: str, wrong_keys: bool, server_key: str | None) -> dict[str, int]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt_string(zmq.IDENTITY, cell_id)  # it claims to be the cell
    if wrong_keys:
        public, secret = zmq.curve_keypair()  # a pair of its own: in no allow-list
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = (server_key or "").encode()
    counts = {"sent": 0, "received": 0}
    mon = _monitor(sock, counts)
    sock.connect(endpoint)
    print("ready", flush=True)
    forged = [_forged_verdict(cell_id, seq, boot) for boot in GUESSED_BOOT_IDS for seq in range(1, GUESSED_SEQS + 1)]
    forged += [
        encode(Ready(cell_id=cell_id, boot_id="0" * 16, request_id="rogue-request", accepted=None)),
        encode(Part(request_id="rogue-request", part_id="ROGUE1")),
        encode(Ack(cell_id=cell_id, boot_id="0" * 16, seq=1, bin=Bin.GOOD)),
    ]
    deadline = time.monotonic() + seconds
    k = 0
    try:
        while (left := deadline - time.monotonic()) > 0:
            _drain_monitor(mon, counts)
            try:
                sock.send(forged[k % len(forged)], zmq.NOBLOCK)
                counts["sent"] += 1
                k += 1
            except zmq.Again:
                pass  # no peer took the connection: nothing queues
            if sock.poll(int(min(left, SEND_EVERY_S) * 1000)):
                sock.recv_multipart()
                counts["received"] += 1
        _drain_monitor(mon, counts)
    finally:
        _close(ctx, sock, mon)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cellctl.sim.rogue", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bind")
    b.add_argument("endpoint")
    b.add_argument("--seconds", type=float, default=2.0)
    c = sub.add_parser("connect")
    c.add_argument("endpoint")
    c.add_argument("--seconds", type=float, default=2.0)
    c.add_argument("--keys", choices=["none", "wrong"], default="none")
    c.add_argument("--server-key", default=None, help="the bridge's public key (public: a rogue may know it)")
    c.add_argument("--cell-id", default="cell-01")
    args = ap.parse_args(argv)
    if args.mode == "bind":
        counts = bind(args.endpoint, args.seconds)
    else:
        counts = connect(args.endpoint, args.seconds, args.cell_id, args.keys == "wrong", args.server_key)
    print(json.dumps({"mode": args.mode, **counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
