"""Models: small plain nn.Modules built from torchvision pieces where it has them.

`build_model(name, in_channels, num_outputs, image_size)` is the single entry point; the
task decides `num_outputs` (1 for regression, the class count for classification).
`count_parameters`, `model_size_mb` and `flops_per_sample` say what a model costs (the
training metrics and the cost model both ask here).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ResNetShallow(nn.Module):
    """ResNet_Shallow, the lab's density regressor (1,260,129 parameters for 1 input channel).

    stem:   conv 7x7/2 (in -> 32) + BN + ReLU + max-pool 3x3/2
    stages: one torchvision BasicBlock each, widths 32, 64, 128, 256, strides 1, 2, 2, 2
            (1x1 conv + BN shortcut where the shape changes)
    head:   global average pool -> Linear(256, 128) -> ReLU -> Linear(128, num_outputs)
    """

    widths = (32, 64, 128, 256)

    def __init__(self, in_channels: int = 1, num_outputs: int = 1):
        from torchvision.models.resnet import BasicBlock  # lazy: torchvision adds seconds
        # to every job's start-up, and models without its parts need not pay them

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
                down = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )
            stages.append(BasicBlock(c_in, c_out, stride=stride, downsample=down))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _resnet_shallow(in_channels: int, num_outputs: int, image_size: int) -> nn.Module:
    return ResNetShallow(in_channels, num_outputs)


def resnet18_cifar(in_channels: int = 3, num_outputs: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 inputs (11,173,962 parameters for 3 channels and 10 classes).

    torchvision's resnet18 (BasicBlock, layers 2-2-2-2, widths 64-512, fresh weights) with
    the ImageNet stem replaced: conv 3x3 stride 1 (in -> 64) instead of 7x7 stride 2, and no
    max-pool, so a 32x32 image keeps 32x32 resolution in stage 1 and 4x4 in stage 4.
    head: global average pool -> Linear(512, num_outputs).
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_outputs)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class Resize(nn.Module):
    """Bilinear resize to `size` x `size` on the device (a no-op at that size already)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def resnet18_imagenet(
    in_channels: int = 3, num_outputs: int = 1000, upsample_size: int | None = 224
) -> nn.Module:
    """torchvision's ResNet-18 with its ImageNet stem, trained from scratch (no download).

    stem:  [Resize to upsample_size (bilinear, on the device)] -> conv 7x7/2 -> BN -> ReLU
           -> max-pool 3x3/2; a 32x32 CIFAR image is thus upsampled to 224x224 before the
           stem, as in the CIFAR-100 report's follow-up ("an upsampling layer to 224x224").
           Without upsampling a 32x32 input leaves the stem at 8x8 and stage 4 at 1x1.
    body:  BasicBlock stages 2-2-2-2, widths 64-512; head: average pool -> Linear(512, out).
    conv1 takes `in_channels` (11,689,512 parameters for 3 channels and 1000 classes).
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_outputs)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    if upsample_size is None:
        return model
    return nn.Sequential(Resize(upsample_size), model)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity Mappings in Deep Residual
    Networks"): BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the identity (or a 1x1
    conv on the pre-activated input where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 for small images (11,172,170 parameters for 3 channels, 10 classes).

    stem:   conv 3x3/1 (in -> 64), no max-pool (CIFAR stem, like `resnet18`)
    stages: two PreActBlocks each, widths 64, 128, 256, 512, strides 1, 2, 2, 2
    head:   BN -> ReLU (the last block's output is not yet activated) -> global average pool
            -> Linear(512, num_outputs)
    """

    widths = (64, 128, 256, 512)

    def __init__(self, in_channels: int = 3, num_outputs: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, self.widths[0], 3, stride=1, padding=1, bias=False)
        blocks, c_in = [], self.widths[0]
        for i, c_out in enumerate(self.widths):
            for j in range(2):
                blocks.append(PreActBlock(c_in, c_out, stride=2 if i > 0 and j == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class LeNet(nn.Module):
    """LeNet-5 with ReLU and max-pooling (LeCun et al. 1998, modernised as usual).

    conv 5x5 (in -> 6) -> ReLU -> max-pool 2 -> conv 5x5 (6 -> 16) -> ReLU -> max-pool 2
    -> flatten -> Linear(16*s*s, 120) -> ReLU -> Linear(120, 84) -> ReLU -> Linear(84, out),
    where s = ((image_size - 4) // 2 - 4) // 2 (5 for 32x32 inputs, 4 for MNIST's 28x28).
    62,006 parameters for 3x32x32 inputs and 10 classes (61,706 for 1x32x32).
    """

    def __init__(self, in_channels: int = 1, num_outputs: int = 10, image_size: int = 28):
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(
                f"lenet needs images of at least 16x16 pixels (config.MIN_IMAGE_SIZE), got "
                f"{image_size}; set dataset.image_size larger"
            )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """Multi-layer perceptron on the flattened image.

    flatten (in * image_size^2) -> Linear(., 512) -> ReLU -> Linear(512, 256) -> ReLU
    -> Linear(256, num_outputs); 535,818 parameters for 1x28x28 inputs and 10 classes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 10,
        image_size: int = 28,
        hidden: tuple[int, ...] = (512, 256),
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# name -> factory(in_channels, num_outputs, image_size); `image_size` is the side the model
# sees: the prepared images' side, or `upsample_size` when the config sets one.
MODEL_FACTORIES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet_shallow": _resnet_shallow,
    "resnet18": lambda c, n, size: resnet18_cifar(c, n),
    "resnet18_imagenet": lambda c, n, size: resnet18_imagenet(c, n, size),
    "preact_resnet18": lambda c, n, size: PreActResNet18(c, n),
    "lenet": lambda c, n, size: LeNet(c, n, size),
    "mlp": lambda c, n, size: MLP(c, n, size),
}


def build_model(name: str, in_channels: int, num_outputs: int, image_size: int) -> nn.Module:
    if name not in MODEL_FACTORIES:
        raise ValueError(f"model {name!r} is not available; known: {sorted(MODEL_FACTORIES)}")
    return MODEL_FACTORIES[name](in_channels, num_outputs, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_size_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def flops_per_sample(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Forward and forward+backward FLOPs of one sample (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    x = example[:2].detach().clone()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    forward = counter.get_total_flops()
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    del out
    return {
        "flops_forward_per_sample": forward / len(x),
        "flops_train_per_sample": counter.get_total_flops() / len(x),
    }
