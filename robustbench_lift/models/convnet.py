"""A small VGG-style ConvNet for 28-32 px images, fast enough to train on a CPU.

Three stages of ``(conv3x3 -> BN -> ReLU) x 2 -> pool``, then global average pooling and a linear classifier.
The pool comes after the nonlinearity (where BlurPool and LiftPool are meant to sit).
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_lift.models import PoolLayer, register_model
from robustbench_lift.models._stack import VGG, conv_bn_relu

__all__ = ["ConvNet", "conv_bn_relu"]


class ConvNet(VGG):
    """``len(widths)`` stages of ``convs_per_stage`` conv-BN-ReLU blocks, each stage ending in a 2x pool.

    The same plain stack as :class:`VGG` (a VGG config generated from ``widths``), then global average pooling and
    a linear classifier.

    Args:
        pool_layer: ``pool_layer(channels)`` makes the downsampling module.
        num_classes, in_channels: output classes and input channels.
        widths: channels of each stage.
        convs_per_stage: conv-BN-ReLU blocks per stage.
        dropout: dropout probability before the classifier.

    Shape:
        (N, in_channels, H, W) -> (N, num_classes) for any H, W >= 1.
    """

    def __init__(
        self,
        pool_layer: PoolLayer,
        *,
        num_classes: int,
        in_channels: int,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 2,
        dropout: float = 0.0,
    ) -> None:
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        if isinstance(convs_per_stage, bool) or not isinstance(convs_per_stage, int) or convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be a positive int, got {convs_per_stage!r}")
        config = [item for w in widths for item in [*([w] * convs_per_stage), "P"]]
        super().__init__(
            pool_layer, config, num_classes=num_classes, in_channels=in_channels, dropout=dropout
        )


@register_model("convnet", family="convnet")
def convnet(
    pool_layer: PoolLayer,
    *,
    num_classes: int,
    in_channels: int,
    widths: Sequence[int] = (32, 64, 128),
    convs_per_stage: int = 2,
    dropout: float = 0.0,
) -> ConvNet:
    """Small ConvNet (about 0.29 M parameters with the default widths) for 28-32 px inputs."""
    return ConvNet(
        pool_layer,
        num_classes=num_classes,
        in_channels=in_channels,
        widths=widths,
        convs_per_stage=convs_per_stage,
        dropout=dropout,
    )
