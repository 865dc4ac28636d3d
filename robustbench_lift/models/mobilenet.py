"""MobileNetV2 (Sandler et al., 2018) whose every downsampling point is a pool layer.

A strided 3x3 depthwise conv becomes ``depthwise conv(stride 1) -> BN -> ReLU6 -> pool``, the pool after the
nonlinearity as antialiased-cnns does; the stem's strided conv becomes ``conv(stride 1) -> BN -> ReLU6 -> pool``.
``stem="cifar"`` (the default, for 28-64 px) drops the stem's downsampling and the 24-channel stage's stride,
as the common CIFAR ports do (8x total downsampling instead of 32x).
"""

from __future__ import annotations

import functools

from torch import Tensor, nn

from robustbench_lift.models import MODELS, PoolLayer, init_weights
from robustbench_lift.models.resnet import IMAGENET_MEAN, IMAGENET_STD, STEMS

__all__ = ["InvertedResidual", "MobileNetV2"]

#: (expansion t, channels c, repeats n, first stride s) as in the paper's Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below 90 % of it (the reference rounding)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def conv_bn_relu6(in_ch: int, out_ch: int, kernel_size: int = 3, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (-> pool when downsampling) -> project 1x1; residual when shapes match."""

    def __init__(
        self, pool_layer: PoolLayer, in_ch: int, out_ch: int, downsample: bool, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_residual = not downsample and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += conv_bn_relu6(in_ch, hidden, kernel_size=1)
        layers += conv_bn_relu6(hidden, hidden, groups=hidden)
        if downsample:
            layers.append(pool_layer(hidden))
        layers += [nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 with pool layers at every downsampling point.

    Args:
        pool_layer: ``pool_layer(channels)`` makes each downsampling module.
        num_classes, in_channels: output classes and input channels.
        stem: ``"cifar"`` or ``"imagenet"`` (see the module docstring).
        width_mult: channel multiplier (channels rounded to multiples of 8).
        dropout: dropout probability before the classifier (0.2 in the reference).
    """

    def __init__(
        self,
        pool_layer: PoolLayer,
        *,
        num_classes: int,
        in_channels: int,
        stem: str = "cifar",
        width_mult: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if not width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        imagenet = stem == "imagenet"
        ch = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = conv_bn_relu6(in_channels, ch)
        if imagenet:
            layers.append(pool_layer(ch))
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out = make_divisible(c * width_mult)
            stride = 1 if (not imagenet and c == 24) else s
            for i in range(n):
                layers.append(
                    InvertedResidual(pool_layer, ch, out, downsample=(i == 0 and stride == 2), expand_ratio=t)
                )
                ch = out
        layers += conv_bn_relu6(ch, last, kernel_size=1)
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        self.default_input_size = (224, 224) if imagenet else (32, 32)
        if imagenet and in_channels == 3:
            self.default_mean_std = (IMAGENET_MEAN, IMAGENET_STD)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.global_pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


MODELS.add("mobilenet_v2", functools.partial(MobileNetV2), family="mobilenet")
