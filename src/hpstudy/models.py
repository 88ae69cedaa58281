"""Models: small plain nn.Modules built from torchvision pieces where it has them.

`build_model(name, in_channels, num_outputs, image_size)` is the single entry point; the
task decides `num_outputs` (1 for regression, the class count for classification).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


class ResNetShallow(nn.Module):
    """ResNet_Shallow, the lab's density regressor (1,260,129 parameters for 1 input channel).

    stem:   conv 7x7/2 (in -> 32) + BN + ReLU + max-pool 3x3/2
    stages: one torchvision BasicBlock each, widths 32, 64, 128, 256, strides 1, 2, 2, 2
            (1x1 conv + BN shortcut where the shape changes)
    head:   global average pool -> Linear(256, 128) -> ReLU -> Linear(128, num_outputs)
    """

    widths = (32, 64, 128, 256)

    def __init__(self, in_channels: int = 1, num_outputs: int = 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(self.widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, c_in = [], self.widths[0]
        for i, c_out in enumerate(self.widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != c_out:
                down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(c_out))
            stages.append(BasicBlock(c_in, c_out, stride=stride, downsample=down))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c_in, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _resnet_shallow(in_channels: int, num_outputs: int, image_size: int) -> nn.Module:
    return ResNetShallow(in_channels, num_outputs)


# name -> factory(in_channels, num_outputs, image_size)
MODEL_FACTORIES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet_shallow": _resnet_shallow,
}


def build_model(name: str, in_channels: int, num_outputs: int, image_size: int) -> nn.Module:
    if name not in MODEL_FACTORIES:
        raise ValueError(f"model {name!r} is not available; known: {sorted(MODEL_FACTORIES)}")
    return MODEL_FACTORIES[name](in_channels, num_outputs, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
