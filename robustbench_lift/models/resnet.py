"""ResNet-18/34/50 whose every downsampling point is a pool layer.

Following antialiased-cnns (Zhang, ICML 2019), each stride-2 operation becomes a stride-1 operation followed by
the pool, placed after the nonlinearity where the block has one:

* stem (``stem="imagenet"``): ``conv7x7(stride 1) -> BN -> ReLU -> pool`` replaces the strided conv, and a second
  pool replaces the 3x3 max pool; ``stem="cifar"`` is ``conv3x3 -> BN -> ReLU`` with no downsampling.
* basic block: ``conv1(stride 1) -> BN -> ReLU -> pool -> conv2 -> BN``.
* bottleneck: ``conv1x1 -> BN -> ReLU -> conv3x3(stride 1) -> BN -> ReLU -> pool -> conv1x1 -> BN``.
* shortcut of a downsampling block: ``pool -> conv1x1 -> BN``. Pooling before the 1x1 conv (rather than after) is
  antialiased-cnns' choice: it costs 4x less compute and, for the linear pools, is the same function; the pool then
  works on the block's input channels.

So ``pool="stride"`` gives the usual strided ResNet up to where the subsampling happens, and every kind yields the
same spatial sizes (ceil(H / 2) at each step).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import Tensor, nn

from robustbench_lift.models import MODELS, PoolLayer, init_weights

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEMS = ("cifar", "imagenet")


def conv3x3(in_ch: int, out_ch: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, bias=False)


def _shortcut(pool_layer: PoolLayer, in_ch: int, out_ch: int, downsample: bool) -> nn.Module | None:
    if not downsample and in_ch == out_ch:
        return None
    layers: list[nn.Module] = [pool_layer(in_ch)] if downsample else []
    layers += [conv1x1(in_ch, out_ch), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs; with ``downsample`` a pool sits after the first ReLU."""

    expansion = 1

    def __init__(self, pool_layer: PoolLayer, in_ch: int, planes: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.pool = pool_layer(planes) if downsample else nn.Identity()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(pool_layer, in_ch, planes, downsample)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.pool(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); with ``downsample`` a pool sits after the 3x3 conv's ReLU."""

    expansion = 4

    def __init__(self, pool_layer: PoolLayer, in_ch: int, planes: int, downsample: bool) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pool = pool_layer(planes) if downsample else nn.Identity()
        self.conv3 = conv1x1(planes, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(pool_layer, in_ch, out_ch, downsample)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with pool layers at every downsampling point (see the module docstring).

    Args:
        pool_layer: ``pool_layer(channels)`` makes each downsampling module.
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage (4 stages; stages 2-4 start by downsampling).
        num_classes, in_channels: output classes and input channels.
        stem: ``"cifar"`` (3x3 conv, no downsampling; for 28-64 px) or ``"imagenet"`` (7x7 conv + two pools).
        width: channels of the first stage (64 in the paper); stage ``i`` has ``width * 2**i`` (x4 for bottlenecks).
        zero_init_residual: zero the last BN of each block so blocks start as identities.
    """

    def __init__(
        self,
        pool_layer: PoolLayer,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int,
        in_channels: int,
        stem: str = "cifar",
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, padding=3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                pool_layer(width),  # replaces the stride of the 7x7 conv
                pool_layer(width),  # replaces the 3x3 max pool
            )
            self.default_input_size = (224, 224)
            if in_channels == 3:
                self.default_mean_std = (IMAGENET_MEAN, IMAGENET_STD)
        else:
            self.stem = nn.Sequential(
                conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
            self.default_input_size = (32, 32)
        ch = width
        stages: list[nn.Module] = []
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                blocks.append(block(pool_layer, ch, planes, downsample=(i > 0 and j == 0)))
                ch = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.global_pool(self.forward_features(x)).flatten(1))


def _resnet(
    pool_layer: PoolLayer,
    *,
    block: str,
    layers: tuple[int, int, int, int],
    num_classes: int,
    in_channels: int,
    stem: str = "cifar",
    width: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    block_type = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
    return ResNet(
        pool_layer,
        block_type,
        layers,
        num_classes=num_classes,
        in_channels=in_channels,
        stem=stem,
        width=width,
        zero_init_residual=zero_init_residual,
    )


MODELS.add("resnet18", functools.partial(_resnet, block="basic", layers=(2, 2, 2, 2)), family="resnet")
MODELS.add("resnet34", functools.partial(_resnet, block="basic", layers=(3, 4, 6, 3)), family="resnet")
MODELS.add("resnet50", functools.partial(_resnet, block="bottleneck", layers=(3, 4, 6, 3)), family="resnet")
