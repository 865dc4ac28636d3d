"""Pooling layers: the registry (:mod:`.pools`), LiftDownPool/LiftUpPool (:mod:`.lift`), BlurPool (:mod:`.blur`) and
the auxiliary-loss protocol (:mod:`.aux`).

Adding a pool: one module with the layer, one ``@register_pool("name", module="ClassName")`` builder in it (or in
:mod:`.pools`), and an ``aux_loss`` attribute if it has a regulariser; nothing else changes.
"""

from .aux import auxiliary_loss, has_auxiliary_loss
from .blur import BlurPool2d, MaxBlurPool2d, binomial_filter, blur_pool2d
from .lift import LiftDownPool2d, LiftUpPool2d, lift_down_pool2d, lift_up_pool2d, lifting_loss
from .pools import (
    POOLS,
    Subsample2d,
    create_pool,
    is_pool_module,
    list_pools,
    pool_module_names,
    register_pool,
)

__all__ = [
    "POOLS",
    "BlurPool2d",
    "LiftDownPool2d",
    "LiftUpPool2d",
    "MaxBlurPool2d",
    "Subsample2d",
    "auxiliary_loss",
    "binomial_filter",
    "blur_pool2d",
    "create_pool",
    "has_auxiliary_loss",
    "is_pool_module",
    "lift_down_pool2d",
    "lift_up_pool2d",
    "lifting_loss",
    "list_pools",
    "pool_module_names",
    "register_pool",
]
