"""The networks: the ResNet-18 student (the seed's deployed layout, torchvision's resnet18
with one logit) and larger ResNet teachers, written here in torch (no torchvision, no
downloaded weights: everything is trained on this machine from the plant's or the
simulator's images).

Every network returns (one logit per input, the last convolutional feature map). The module
names (``stem``, ``layers``, ``fc``) are those of the exported students since the seed: an
exported student can be loaded back (``load_exported``) to fine-tune it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block: Block, depths: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers: list[nn.Module] = []
        cin = 64
        for k, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            for j in range(depth):
                layers.append(block(cin, width, 2 if (j == 0 and k > 0) else 1))
                cin = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.layers(self.stem(x))
        logit = self.fc(features.mean(dim=(2, 3))).squeeze(1)
        return logit, features


Block = type[BasicBlock] | type[Bottleneck]
ARCHS: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet10": (BasicBlock, (1, 1, 1, 1)),  # a small teacher for tests and quick trials
    "resnet18": (BasicBlock, (2, 2, 2, 2)),  # the student (11.2 M parameters)
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
STUDENT = "resnet18"


def build(arch: str) -> ResNet:
    block, depths = ARCHS[arch]
    return ResNet(block, depths)


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


class Exported(nn.Module):
    """What the ONNX file computes: the defect probability and the feature map (the guard
    pools it; a heatmap is the fc weights times it)."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, features = self.net(image)
        return torch.sigmoid(logit), features


def export(net: ResNet, out: Path, size: int) -> None:
    """ONNX: input ``image`` (N x 3 x size x size, RGB in [0, 1]), outputs ``defect_prob`` (N)
    and ``features`` (N x C x h x w)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # the TorchScript exporter on purpose (the dynamo one needs onnxscript): its deprecation
    # notices, and those of the torch internals it calls, are torch's business, not the user's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Exported(net).eval(),
            (torch.zeros(1, 3, size, size),),
            str(out),
            input_names=["image"],
            output_names=["defect_prob", "features"],
            dynamic_axes={"image": {0: "n"}, "defect_prob": {0: "n"}, "features": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )


def conv_bn_pairs(net: ResNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution with the batch norm after it, in the order the forward pass runs
    them (the order the ONNX export writes its Conv nodes in)."""
    stem: Any = net.stem  # module attributes are Module | Tensor to mypy: these are known
    pairs: list[tuple[Any, Any]] = [(stem[0], stem[1])]
    for b in net.layers:
        block: Any = b
        pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if isinstance(block, Bottleneck):
            pairs.append((block.conv3, block.bn3))
        if isinstance(block.down, nn.Sequential):
            pairs.append((block.down[0], block.down[1]))
    return pairs


def load_exported(net: ResNet, path: Path) -> None:
    """Start from an exported network: the export folded each batch norm into its convolution
    (weight and bias), so each conv takes the folded weight and its batch norm becomes a
    shift by the folded bias (scale 1, mean 0, variance 1 - eps); ``freeze_batch_norms`` keeps
    them so in training."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    pairs = conv_bn_pairs(net)
    if len(convs) != len(pairs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the network has {len(pairs)}")
    with torch.no_grad():
        for node, (conv, bn) in zip(convs, pairs, strict=True):
            w, b = weights[node.input[1]], weights[node.input[2]]
            if w.shape != tuple(conv.weight.shape):
                raise ValueError(f"{path}: conv {node.name} is {w.shape}, the network's is {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w.copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b.copy()))
            assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        net.fc.weight.copy_(torch.from_numpy(weights["net.fc.weight"].copy()))
        net.fc.bias.copy_(torch.from_numpy(weights["net.fc.bias"].copy()))


def freeze_batch_norms(net: nn.Module) -> None:
    """Batch norms in eval mode and not trained (after ``load_exported``, or to fine-tune with
    small batches): call after every ``net.train()``."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
            module.requires_grad_(False)
