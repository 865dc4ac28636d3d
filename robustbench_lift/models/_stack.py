"""The plain stack shared by VGG and the small ConvNet: conv-BN-ReLU blocks and pools, then a linear head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustbench_lift.models import PoolLayer, init_weights

__all__ = ["VGG", "conv_bn_relu"]


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> list[nn.Module]:
    """A stride-1 ``conv -> BN -> ReLU`` triple ('same' padding, no conv bias)."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


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
            layers += conv_bn_relu(ch, out)
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
