import pytest
import torch
from torch import nn

from robustbench_lift.layers import (
    LiftDownPool2d,
    auxiliary_loss,
    create_pool,
    is_pool_module,
    lifting_loss,
    pool_module_names,
    register_pool,
)
from robustbench_lift.layers.pools import POOLS


class _PenalisedPool(nn.Module):
    """A third-party pool with its own regulariser: the mean of its input squared."""

    def __init__(self, channels: int, weight: float = 0.5) -> None:
        super().__init__()
        self.weight = weight
        self.aux_loss = None

    def forward(self, x):
        self.aux_loss = self.weight * x.pow(2).mean() if self.training else None
        return nn.functional.avg_pool2d(x, 2, ceil_mode=True)


@pytest.fixture
def penalised_pool():
    register_pool("penalised_test", module="_PenalisedPool")(_PenalisedPool)
    yield "penalised_test"
    POOLS._items.pop("penalised_test")
    POOLS._meta.pop("penalised_test")


def test_auxiliary_loss_sums_any_pool_that_declares_one(penalised_pool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    model = nn.Sequential(create_pool(penalised_pool, 3), LiftDownPool2d(3), create_pool("max", 3)).train()
    model(x)
    expected = 0.5 * x.pow(2).mean() + model[1].aux_loss
    assert torch.allclose(auxiliary_loss(model), expected)
    assert torch.equal(lifting_loss(model), auxiliary_loss(model))
    model.eval()
    model(x)
    assert float(auxiliary_loss(model)) == 0.0


def test_auxiliary_loss_zero_on_models_without_and_type_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3).double())
    loss = auxiliary_loss(model)
    assert loss.dtype == torch.float64 and float(loss) == 0.0
    assert float(auxiliary_loss(nn.Identity())) == 0.0
    with pytest.raises(TypeError, match="nn.Module"):
        auxiliary_loss("model")


def test_registered_module_names_are_pooling_layers(penalised_pool):
    names = pool_module_names()
    assert {
        "MaxPool2d",
        "AvgPool2d",
        "BlurPool2d",
        "MaxBlurPool2d",
        "LiftDownPool2d",
        "_PenalisedPool",
    } <= names
    assert is_pool_module(create_pool(penalised_pool, 2)) and not is_pool_module(nn.Conv2d(1, 1, 1))
