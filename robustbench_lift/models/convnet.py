"""A small VGG-style ConvNet for 28-32 px images, fast enough to train on a CPU.

Three stages of ``(conv3x3 -> BN -> ReLU) x 2 -> pool``, then global average pooling and a linear classifier.
The pool comes after the nonlinearity (where BlurPool and LiftPool are meant to sit).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustbench_lift.models import PoolLayer, init_weights, register_model

__all__ = ["ConvNet", "conv_bn_relu"]


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> list[nn.Module]:
    """A stride-1 ``conv -> BN -> ReLU`` triple ('same' padding, no conv bias)."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class ConvNet(nn.Module):
    """``len(widths)`` stages of ``convs_per_stage`` conv-BN-ReLU blocks, each stage ending in a 2x pool.

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
        super().__init__()
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        if isinstance(convs_per_stage, bool) or not isinstance(convs_per_stage, int) or convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be a positive int, got {convs_per_stage!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        ch = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers += conv_bn_relu(ch, width)
                ch = width
            layers.append(pool_layer(ch))
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(ch, num_classes)
        self.default_input_size = (32, 32)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.global_pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


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
