"""CIFAR-style VGG with batch norm: 3x3 conv-BN-ReLU stacks, each stage closed by a 2x pool.

The five stages downsample 32 px inputs to 1x1; an adaptive average pool makes the classifier independent of the
input size, and the classifier is a single linear layer (the CIFAR variant, not ImageNet's 4096-wide MLP).
"""

from __future__ import annotations

import functools

from robustbench_lift.models import MODELS, PoolLayer
from robustbench_lift.models._stack import VGG, conv_bn_relu

__all__ = ["VGG", "VGG_CONFIGS", "conv_bn_relu"]

#: Channels per conv; ``"P"`` marks a pool. Depth names as in Simonyan & Zisserman (configs A, B, D).
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    "vgg13": (64, 64, "P", 128, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
    "vgg16": (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"),
}


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
