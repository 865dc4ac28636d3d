"""CIFAR-style VGG with batch norm: 3x3 conv-BN-ReLU stacks, each stage closed by a 2x pool.

The five stages downsample 32 px inputs to 1x1; an adaptive average pool makes the classifier independent of the
input size, and the classifier is a single linear layer (the CIFAR variant, not ImageNet's 4096-wide MLP).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import Tensor, nn

from robustbench_lift.models import MODELS, PoolLayer, init_weights

__all__ = ["VGG", "VGG_CONFIGS"]

#: Channels per conv; ``"P"`` marks a pool. Depth names as in Simonyan & Zisserman (configs A, B, D).
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    "vgg13": (64, 64, "P", 128, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    "vgg16": (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"),
}


class VGG(nn.Module):
    """VGG with BN from a layer config.

    Args:
        pool_layer: ``pool_layer(channels)`` makes each downsampling module.
        config: channels per conv and ``"P"`` for pools (see :data:`VGG_CONFIGS`).
        num_classes, in_channels: output classes and input channels.
        width_mult: scales every conv's channels (for small test models or slimmer variants).
        dropout: dropout probability before the classifier.
    """

    def __init__(
        self,
        pool_layer: PoolLayer,
        config: Sequence[int | str],
        *,
        num_classes: int,
        in_channels: int,
        width_mult: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        ch = in_channels
        for item in config:
            if item == "P":
                layers.append(pool_layer(ch))
                continue
            out = max(1, int(round(int(item) * width_mult)))
            layers += [
                nn.Conv2d(ch, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            ch = out
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(ch, num_classes)
        self.default_input_size = (32, 32)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.global_pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def _vgg(
    pool_layer: PoolLayer,
    *,
    depth: str,
    num_classes: int,
    in_channels: int,
    width_mult: float = 1.0,
    dropout: float = 0.0,
) -> VGG:
    return VGG(
        pool_layer,
        VGG_CONFIGS[depth],
        num_classes=num_classes,
        in_channels=in_channels,
        width_mult=width_mult,
        dropout=dropout,
    )


for _depth in VGG_CONFIGS:
    MODELS.add(f"{_depth}_bn", functools.partial(_vgg, depth=_depth), family="vgg")
