"""Training one network on bags of tiles: multiple-instance learning, class balance, optional
distillation, a checkpoint per epoch, a wall-clock budget.

The loss is the daemon's rule turned into a likelihood: a bag (an image, or a part) is as
defective as its highest tile, so the bag's logit is the maximum of its tiles' logits and is
fitted to the item's label (binary cross-entropy). Every tile of a good bag is a clean
negative, so a step draws a few of them; a defective bag brings all its tiles, since which one
shows the indication is not known, unless its mask says (cellctl/train/masks.py): then each
tile the indication lies in is a positive of its own and a few clean tiles of the same image
are negatives; tiles the mask leaves open (an indication cut by the edge, a faint one) are not
trained on.

Class imbalance (defects are rare on a real line): ``sample`` trains each epoch on every
defective bag and a fresh draw of ``negatives_per_positive`` good bags per defective one (a
CPU epoch stays short, and over the epochs the draws cover the good bags); ``weight`` trains
on all bags and weighs the defective ones up (BCE ``pos_weight`` = good / defective);
``none`` does neither.

Distillation (``soft``, the teachers' averaged softened tile outputs, see package.py): the
loss is ``alpha`` x the bag loss above + (1 - ``alpha``) x T^2 x the cross-entropy between
the student's softened tile outputs sigmoid(z / T) and the teachers' (Hinton et al.; T^2
keeps the gradient scale of the soft term independent of T). Teachers score the tiles once,
unaugmented (offline distillation): on 2 CPU cores a teacher forward pass per step would cost
more than the student's training.

Each epoch ends with the validation bags scored (no augmentation) and a checkpoint written
whole (model, optimizer, schedule, random states, history): ``resume`` continues after the
last finished epoch, and a rerun with the same data, config and seed gives the same model. The
network kept is the epoch with the lowest validation loss.
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cellctl.train.augment import augment
from cellctl.train.bags import Bags
from cellctl.train.masks import NEGATIVE, POSITIVE
from cellctl.train.nets import ResNet, build, freeze_batch_norms, load_exported

BALANCES = ("sample", "weight", "none")
SCORE_CHUNK = 64  # tiles per forward pass when scoring


class Refused(Exception):
    """A run that cannot go on as asked (a checkpoint of another config, no defective bag):
    its message is the one line shown."""


@dataclass(frozen=True)
class FitConfig:
    arch: str = "resnet18"
    epochs: int = 6
    lr: float = 1e-3
    weight_decay: float = 1e-4
    bags_per_step: int = 8
    good_tiles_per_bag: int = 4
    balance: str = "sample"
    negatives_per_positive: float = 3.0
    augment: frozenset[str] = frozenset()
    alpha: float = 0.1  # weight of the hard-label loss when distilling
    temperature: float = 4.0
    seed: int = 0
    init: str | None = None  # an exported network to start from (its batch norms stay frozen)
    masks: bool = True  # label tiles of defective images by their masks where they have one

    def key(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        return {k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in asdict(self).items()}


@dataclass
class Budget:
    """Wall-clock seconds for all of a run's training, across resumes; None: no limit."""

    seconds: float | None
    spent: float = 0.0

    def allows(self, next_epoch_s: float) -> bool:
        return self.seconds is None or self.spent + next_epoch_s <= self.seconds


@dataclass
class Fitted:
    net: ResNet
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    stopped: str = "epochs"  # "epochs" | "budget"


def fit(
    cfg: FitConfig,
    train: Bags,
    val: Bags,
    checkpoint: Path,
    budget: Budget,
    *,
    soft: np.ndarray | None = None,
    resume: bool = False,
    label: str = "student",
) -> Fitted:
    """Train ``cfg.arch`` on ``train`` (``soft``: per tile of train.x, the teachers' target)."""
    if not train.label.any():
        raise Refused("the training split has no defective item: nothing to learn a defect from")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build(cfg.arch)
    if cfg.init is not None:
        load_exported(net, Path(cfg.init))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(_epoch_bags(train.label, np.random.default_rng(0), cfg)) / cfg.bags_per_step)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps))
    done = Fitted(net)
    best_state: dict[str, torch.Tensor] | None = None
    start = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)  # tensors and plain data: no code runs
        if state["config"] != cfg.key():
            raise Refused(f"{checkpoint} is of another run (its config differs); start afresh without --resume")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        done.history, done.best_epoch, best_state = state["history"], state["best_epoch"], state["best"]
        budget.spent = max(budget.spent, state["spent"])
        start = state["epoch"] + 1
    pos = float(train.label.sum())
    pos_weight = torch.tensor((len(train.label) - pos) / pos) if cfg.balance == "weight" else None
    hard_loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    last_epoch_s = 0.0
    for epoch in range(start, cfg.epochs):
        if not budget.allows(last_epoch_s):
            done.stopped = "budget"
            break
        t0 = time.monotonic()
        order = _epoch_bags(train.label, rng, cfg)
        net.train()
        if cfg.init is not None:
            freeze_batch_norms(net)
        total, count = 0.0, 0
        bar = _bar(steps, f"{label} epoch {epoch + 1}/{cfg.epochs}")
        for i in range(0, len(order), cfg.bags_per_step):
            loss = _step(net, train, order[i : i + cfg.bags_per_step], rng, cfg, hard_loss, soft)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total, count = total + float(loss.detach()), count + 1
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}")
        bar.close()
        figures = validate(net, val)
        last_epoch_s = time.monotonic() - t0
        budget.spent += last_epoch_s
        record = {"epoch": epoch + 1, "loss": round(total / max(count, 1), 5), "s": round(last_epoch_s, 1), **figures}
        done.history.append(record)
        # history holds epochs 1..n in order, resumed ones too; without validation the last is kept
        best = done.history[done.best_epoch - 1]["val_loss"] if done.best_epoch > 0 else None
        if best is None or figures["val_loss"] is None or figures["val_loss"] < best:
            done.best_epoch, best_state = epoch + 1, copy.deepcopy(net.state_dict())
        print(f"{label}: " + "  ".join(f"{k} {v}" for k, v in record.items()), file=sys.stderr, flush=True)
        _save(checkpoint, cfg, epoch, net, opt, sched, rng, done, best_state, budget.spent)
    if best_state is None:
        raise Refused(f"the budget ran out before the {label} trained an epoch (raise --budget-min)")
    net.load_state_dict(best_state)
    return done


def _epoch_bags(label: np.ndarray, rng: np.random.Generator, cfg: FitConfig) -> np.ndarray:
    if cfg.balance != "sample":
        return rng.permutation(len(label))
    pos, neg = np.flatnonzero(label > 0.5), np.flatnonzero(label <= 0.5)
    take = min(len(neg), round(cfg.negatives_per_positive * len(pos)))
    return rng.permutation(np.concatenate([pos, rng.choice(neg, take, replace=False)]))


def _step(
    net: ResNet,
    bags: Bags,
    chosen: np.ndarray,
    rng: np.random.Generator,
    cfg: FitConfig,
    hard_loss: nn.Module,
    soft: np.ndarray | None,
) -> torch.Tensor:
    index, targets = _step_groups(bags, chosen, rng, cfg)
    flat = np.concatenate(index)
    x = augment(_inputs(bags.x[flat]), rng, cfg.augment)
    logits = net(x.contiguous(memory_format=torch.channels_last))[0]
    bounds = np.cumsum([0] + [len(t) for t in index])
    group_logits = torch.stack([logits[a:b].max() for a, b in itertools.pairwise(bounds)])
    loss: torch.Tensor = hard_loss(group_logits, torch.from_numpy(np.asarray(targets, np.float32)))
    if soft is None:
        return loss
    t = cfg.temperature
    target = torch.from_numpy(soft[flat].astype(np.float32))
    distil = nn.functional.binary_cross_entropy_with_logits(logits / t, target) * t * t
    mixed: torch.Tensor = cfg.alpha * loss + (1.0 - cfg.alpha) * distil
    return mixed


def _step_groups(
    bags: Bags, chosen: np.ndarray, rng: np.random.Generator, cfg: FitConfig
) -> tuple[list[np.ndarray], list[float]]:
    """The tiles a step scores, in groups whose highest logit is fitted to the group's target.

    A good bag: a few of its tiles, target 0 (any tile of it is a negative). A defective bag
    whose mask labels tiles: each positive tile alone, target 1, and a few of its clean tiles
    alone, target 0 (the hardest negatives there are: the same part, lamp and film as the
    indication). A defective bag without a mask: all its tiles, target 1 (which one shows the
    indication is not known).
    """
    groups: list[np.ndarray] = []
    targets: list[float] = []
    for b in chosen:
        tiles = np.arange(bags.start[b], bags.start[b] + bags.count[b])
        if bags.label[b] < 0.5:
            if len(tiles) > cfg.good_tiles_per_bag:
                tiles = np.sort(rng.choice(tiles, cfg.good_tiles_per_bag, replace=False))
            groups.append(tiles)
            targets.append(0.0)
            continue
        labels = bags.tile_label[tiles]
        positive = tiles[labels == POSITIVE] if cfg.masks else tiles[:0]
        if not len(positive):
            groups.append(tiles)
            targets.append(1.0)
            continue
        clean = tiles[labels == NEGATIVE]
        if len(clean) > cfg.good_tiles_per_bag:
            clean = np.sort(rng.choice(clean, cfg.good_tiles_per_bag, replace=False))
        groups += [np.array([t]) for t in positive] + [np.array([t]) for t in clean]
        targets += [1.0] * len(positive) + [0.0] * len(clean)
    return groups, targets


@torch.no_grad()
def tile_logits(net: ResNet, bags: Bags) -> np.ndarray:
    """The logit of every tile of ``bags`` (in ``tile_index`` order), unaugmented, in eval mode."""
    net.eval()
    index = bags.tile_index()
    out = [net(_inputs(bags.x[index[i : i + SCORE_CHUNK]]))[0] for i in range(0, len(index), SCORE_CHUNK)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _inputs(tiles: np.ndarray) -> torch.Tensor:
    """uint8 tiles -> the model's input, [0, 1] floats, in the layout the CPU convolutions prefer."""
    return torch.from_numpy(tiles).float().div_(255.0).contiguous(memory_format=torch.channels_last)


def bag_max(bags: Bags, values: np.ndarray) -> np.ndarray:
    """Per bag, the highest of ``values`` (one per tile, in ``tile_index`` order)."""
    ends = np.cumsum(bags.count)
    return np.array([values[e - c : e].max() for e, c in zip(ends, bags.count, strict=True)])


def validate(net: ResNet, val: Bags) -> dict[str, Any]:
    """Validation loss (bag BCE), ROC AUC, and escapes / false rejects at 0.5, per item."""
    if len(val) == 0:
        return {"val_loss": None, "val_auc": None, "val_escapes": None, "val_false_rejects": None}
    z = bag_max(val, tile_logits(net, val))
    y = val.label
    loss = float(nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y)))
    p = 1.0 / (1.0 + np.exp(-z))
    return {
        "val_loss": round(loss, 5),
        "val_auc": auc(p, y),
        "val_escapes": int(((y > 0.5) & (p < 0.5)).sum()),
        "val_false_rejects": int(((y < 0.5) & (p >= 0.5)).sum()),
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties count half); None without both classes."""
    pos, neg = scores[labels > 0.5], scores[labels < 0.5]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return round(float(wins / (len(pos) * len(neg))), 4)


def _save(
    path: Path,
    cfg: FitConfig,
    epoch: int,
    net: ResNet,
    opt: torch.optim.Optimizer,
    sched: Any,
    rng: np.random.Generator,
    done: Fitted,
    best: dict[str, torch.Tensor] | None,
    spent: float,
) -> None:
    state = {
        "config": cfg.key(),
        "epoch": epoch,
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": done.history,
        "best_epoch": done.best_epoch,
        "best": best,
        "spent": spent,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)  # a crash mid-write leaves the previous checkpoint whole


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False, disable=None)
