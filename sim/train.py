"""Train the default student (ResNet-18, 224 x 224, binary defect) on simulator renders.

    pip install -e '.[train]'
    python -m cellctl.sim.train --out profiles/models/student-fp32.onnx

Needs torch (the ``train`` extra); the daemon never imports this module. The ONNX graph has
one input ``image`` (N x 3 x 224 x 224, RGB in [0, 1]) and two outputs: ``defect_prob`` (N)
and ``features`` (N x 512 x 7 x 7, the last convolutional map, kept for Grad-CAM: with a
global-average-pool + linear head the class activation map is fc weight x features).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellctl.config import resolve_profile
from cellctl.sim.conditions import PRESETS
from cellctl.sim.dataset import build_tensors
from cellctl.train.nets import ResNet, build, export, freeze_batch_norms, load_exported

DEFAULT_PROFILES = ("m8x40-hex", "m12x80-hex")


def augment(xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Classic augmentation on top of the renders (the seed's data-centric recipe): what
    changes between plants, lamps and lenses and must not change the answer.

    Mirror along and across the axis (a crack has no handedness); +-10 % fluorescence gain and
    contrast; a shift of up to 16 px (the part in its tile); sensor noise up to 1 % of full
    scale. Narrow on purpose: the PLANT renders already vary lamp, film, blur and pose, and a
    wider gain turns an indication labelled relevant (>= the profile's minimum contrast) into
    one below it, teaching the student that faint lines are a coin toss.
    """
    n = len(xb)
    if rng.random() < 0.5:
        xb = xb.flip(3)
    if rng.random() < 0.5:
        xb = xb.flip(2)
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1)).astype(np.float32))
    contrast = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1)).astype(np.float32))
    mean = xb.mean(dim=(1, 2, 3), keepdim=True)
    xb = ((xb - mean) * contrast + mean) * gain
    dy, dx = (int(v) for v in rng.integers(-16, 17, size=2))
    xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
    sigma = torch.from_numpy(rng.uniform(0.0, 0.01, (n, 1, 1, 1)).astype(np.float32))
    return (xb + torch.randn_like(xb) * sigma).clamp(0.0, 1.0)


def epoch_order(y: np.ndarray, rng: np.random.Generator, negatives_per_positive: float | None) -> np.ndarray:
    """The views of one epoch, shuffled: all of them, or every positive with a fresh random
    draw of negatives (``negatives_per_positive`` to each), so a CPU epoch stays short while
    the negatives seen over the epochs cover the set."""
    if negatives_per_positive is None:
        return rng.permutation(len(y))
    pos, neg = np.flatnonzero(y > 0.5), np.flatnonzero(y <= 0.5)
    take = min(len(neg), round(negatives_per_positive * len(pos)))
    return rng.permutation(np.concatenate([pos, rng.choice(neg, take, replace=False)]))


def train(
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    batch: int = 32,
    init: Path | None = None,
    lr: float = 2e-3,
    negatives_per_positive: float | None = None,
) -> ResNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build("resnet18")
    if init is not None:
        load_exported(net, init)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = len(epoch_order(y, np.random.default_rng(0), negatives_per_positive)) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    pos = float(y.sum())
    neg = (len(y) - pos) if negatives_per_positive is None else min(len(y) - pos, negatives_per_positive * pos)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / max(pos, 1.0)))
    net.train()
    if init is not None:  # the folded batch norms stay what the export made them
        freeze_batch_norms(net)
    for epoch in range(epochs):
        order, t0, total = epoch_order(y, rng, negatives_per_positive), time.monotonic(), 0.0
        for i in range(per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            xb = augment(torch.from_numpy(x[idx]), rng).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(net(xb)[0], torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        print(
            json.dumps({"epoch": epoch, "loss": total / per_epoch, "s": round(time.monotonic() - t0, 1)}),
            flush=True,
        )
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profiles-dir", type=Path, default=Path(__file__).resolve().parent.parent / "profiles")
    ap.add_argument("--profiles", nargs="+", default=list(DEFAULT_PROFILES))
    ap.add_argument("--parts", type=int, default=300, help="training parts per profile")
    ap.add_argument("--defect-rate", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, default=None, help="start from this exported student (fine-tune)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument(
        "--negatives-per-positive", type=float, default=None, help="draw this many negatives per positive each epoch"
    )
    ap.add_argument("--conditions", choices=sorted(PRESETS), default="plant", help="simulator preset to render")
    ap.add_argument(
        "--cache", type=Path, default=None, help="keep the rendered tensors in this .npz (render once, train again)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    profiles = [resolve_profile(args.profiles_dir / f"{n}.yaml", verify_model=False) for n in args.profiles]
    t0 = time.monotonic()
    if args.cache is not None and args.cache.exists():
        with np.load(args.cache) as cached:
            x, y, heads = cached["x"], cached["y"], cached["heads"]
    else:
        conditions = PRESETS[args.conditions]
        x, y, heads = build_tensors(profiles, args.seed, args.parts, args.defect_rate, args.threads, conditions)
        if args.cache is not None:
            np.savez(args.cache, x=x, y=y, heads=heads)
    print(
        json.dumps(
            {
                "views": len(y),
                "defect_views": int(y.sum()),
                "head_views": int(heads.sum()),
                "head_defect_views": int(y[heads].sum()),
                "render_s": round(time.monotonic() - t0, 1),
            }
        ),
        flush=True,
    )
    net = train(
        x, y, args.epochs, args.seed, init=args.init, lr=args.lr, negatives_per_positive=args.negatives_per_positive
    )
    export(net, args.out, profiles[0].profile.preprocess.input_size_px)
    meta = {
        "seed": args.seed,
        "parts_per_profile": args.parts,
        "defect_rate": args.defect_rate,
        "conditions": args.conditions,
        "epochs": args.epochs,
        "init": args.init.name if args.init else None,
        "lr": args.lr,
        "negatives_per_positive": args.negatives_per_positive,
        "profiles": args.profiles,
        "views": len(y),
        "defect_views": int(y.sum()),
        "torch": torch.__version__,
        "train_s": round(time.monotonic() - t0, 1),
    }
    args.out.with_suffix(".train.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
