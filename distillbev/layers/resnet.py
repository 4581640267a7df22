"""ResNet image backbones with torchvision's parameter names (docs/architectures.md, Camera students).

``resnet18/34/50/101`` build the ImageNet ResNets (v1.5: stride on the 3x3 conv of a Bottleneck) and
``tiny_resnet`` a narrow BasicBlock ResNet for the CPU presets. Parameter and buffer names are exactly
torchvision's (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv2.weight``,
``layer2.0.downsample.0.weight``, ...), so a torchvision ImageNet ``state_dict`` saved to a local file
loads with ``load_torchvision_weights`` under strict key checking. The classifier (``fc``) is not built:
the backbone returns the outputs of the stages listed in ``out_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

ResNetName = Literal["resnet18", "resnet34", "resnet50", "resnet101"]

#: Block type and blocks per stage of the ImageNet ResNets.
RESNET_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs (BN, ReLU) plus a shortcut; ``downsample`` (or identity) on the shortcut."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, inplanes, H, W) -> (B, planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, torchvision v1.5), 1x1 expand x4, plus a shortcut."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, inplanes, H, W) -> (B, 4 * planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) + 4 stages ``layer1..layer4`` (strides 1, 2, 2, 2).

    ``forward`` returns the stage outputs listed in ``out_indices`` (0-based: 2 = stride 16,
    3 = stride 32). ``grad_checkpoint`` recomputes each stage in backward (saves activation memory).
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"],
        blocks: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        out_indices: Sequence[int] = (2, 3),
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or len(widths) != 4:
            raise ValueError(f"ResNet: blocks {tuple(blocks)} and widths {tuple(widths)} need 4 stages each")
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"ResNet: out_indices {tuple(out_indices)} must be stage indices in 0..3")
        block_cls = BasicBlock if block == "basic" else Bottleneck
        self.out_indices = tuple(out_indices)
        self.grad_checkpoint = grad_checkpoint
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_width
        self.out_channels: list[int] = []
        for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
            if i > max(self.out_indices):
                break  # stages after the last requested output are not built (no unused parameters)
            stride = 1 if i == 0 else 2
            layer, inplanes = _make_stage(block_cls, inplanes, planes, n, stride)
            self.add_module(f"layer{i + 1}", layer)
            self.out_channels.append(inplanes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(B, 3, H, W)`` -> the requested stage outputs ``(B, C_i, H / 2^(i+2), W / 2^(i+2))``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(max(self.out_indices) + 1):
            layer = getattr(self, f"layer{i + 1}")
            if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def _make_stage(
    block_cls: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, n: int, stride: int
) -> tuple[nn.Sequential, int]:
    """``n`` blocks; the first carries the stride and a 1x1 conv + BN shortcut when the shape changes."""
    if n < 1:
        raise ValueError(f"ResNet: every stage needs at least one block, got {n}")
    out = planes * block_cls.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [block_cls(inplanes, planes, stride, downsample)]
    layers += [block_cls(out, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers), out


def resnet(name: ResNetName, out_indices: Sequence[int] = (2, 3), grad_checkpoint: bool = False) -> ResNet:
    """An ImageNet ResNet by torchvision name (``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``)."""
    if name not in RESNET_SPECS:
        raise ValueError(f"unknown ResNet {name!r}; expected one of {', '.join(RESNET_SPECS)}")
    block, blocks = RESNET_SPECS[name]
    return ResNet(block, blocks, out_indices=out_indices, grad_checkpoint=grad_checkpoint)  # type: ignore[arg-type]


def tiny_resnet(
    stem_width: int = 16,
    widths: Sequence[int] = (16, 32, 64, 128),
    blocks: Sequence[int] = (1, 1, 1, 1),
    out_indices: Sequence[int] = (2, 3),
    grad_checkpoint: bool = False,
) -> ResNet:
    """A narrow BasicBlock ResNet for CPU presets (T1: stem 16, widths 16/32/64/128, one block each)."""
    return ResNet("basic", blocks, widths, stem_width, out_indices, grad_checkpoint)


def load_torchvision_weights(model: ResNet, path: str | Path) -> None:
    """Load a torchvision ResNet ``state_dict`` from a local file into ``model``, strictly.

    The file holds a plain ``state_dict`` (``torch.save(torchvision_model.state_dict(), path)``) or a
    dict with it under ``"state_dict"``/``"model"``. The classifier keys ``fc.weight``/``fc.bias`` are
    dropped (the backbone has no classifier), as are the stages ``model`` does not build (e.g. ``layer4``
    when the image features are taken at stride 8); any other missing or unexpected key is an error
    that lists them, as is a shape mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    elif isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        blob = blob["model"]
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: expected a state_dict (a mapping of parameter names to tensors)")
    unused = ("fc.",) + tuple(f"layer{i + 1}." for i in range(len(model.out_channels), 4))
    state = {k: v for k, v in blob.items() if not k.startswith(unused)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a matching torchvision ResNet checkpoint; "
            f"missing keys ({len(missing)}): {_preview(missing)}; "
            f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}"
        )
    bad = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if state[k].shape != v.shape
    ]
    if bad:
        raise ValueError(f"{path}: shape mismatch (checkpoint vs model): {_preview(bad)}")
    model.load_state_dict(state, strict=True)


def _preview(keys: list[str], limit: int = 12) -> str:
    text = ", ".join(keys[:limit])
    return text + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "") if keys else "none"
